//! `strata build`'s options as typed values. The command line hands over
//! strings; everything here parses and validates them once, so the rest of
//! the build never sees a malformed value, and every error names the flag
//! and says what a correct value looks like.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail};

use crate::progress::Mode;

mod cache_flags;
mod output;

use cache_flags::cache_items;
pub use cache_flags::{CacheFrom, CacheTo};
pub use output::{Compression, OutputKind, OutputSpec};

fn split_kv(flag: &str, item: &str) -> anyhow::Result<(String, String)> {
    match item.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_ascii_lowercase(), v.to_string())),
        _ => bail!("{flag}: expected key=value, got {item:?}"),
    }
}

fn parse_bool(flag: &str, key: &str, v: &str) -> anyhow::Result<bool> {
    match v {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => bail!("{flag}: {key}= takes true or false, got {v:?}"),
    }
}

/// `--secret id=…,src=…|env=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    pub id: String,
    pub source: SecretSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

impl std::str::FromStr for SecretSpec {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<SecretSpec> {
        const FLAG: &str = "--secret";
        let m = cache_items(FLAG, s)?;
        let id = m
            .get("id")
            .cloned()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| {
                anyhow!("{FLAG}: id= is required, e.g. --secret id=npmrc,src=$HOME/.npmrc")
            })?;
        if let Some(t) = m.get("type").map(String::as_str)
            && t != "file"
            && t != "env"
        {
            bail!("{FLAG}: type={t:?}: use file or env");
        }
        let src = m.get("src").or_else(|| m.get("source"));
        let source = match (src, m.get("env")) {
            (Some(_), Some(_)) => bail!("{FLAG} id={id}: give either src= or env=, not both"),
            (Some(p), None) => SecretSource::File(PathBuf::from(p)),
            (None, Some(e)) => SecretSource::Env(e.clone()),
            // Docker's default: an env variable named like the id.
            (None, None) if m.get("type").map(String::as_str) == Some("file") => {
                bail!("{FLAG} id={id}: type=file needs src=PATH")
            }
            (None, None) => SecretSource::Env(id.clone()),
        };
        for k in m.keys() {
            if !["id", "src", "source", "env", "type"].contains(&k.as_str()) {
                bail!("{FLAG}: unknown key {k:?}: use id, src, env or type");
            }
        }
        Ok(SecretSpec { id, source })
    }
}

impl SecretSpec {
    /// The secret's bytes, read now from its file or variable.
    pub fn value(&self) -> anyhow::Result<Vec<u8>> {
        let id = &self.id;
        match &self.source {
            SecretSource::File(p) => std::fs::read(p).map_err(|e| {
                anyhow!(
                    "--secret id={id}: cannot read {}: {}",
                    p.display(),
                    crate::io_reason(&e)
                )
            }),
            SecretSource::Env(v) => std::env::var(v)
                .map(String::into_bytes)
                .map_err(|_| anyhow!("--secret id={id}: the environment variable {v} is not set")),
        }
    }
}

/// `--ssh default|id=path,…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSpec {
    pub id: String,
    /// Agent socket or key paths; empty = `$SSH_AUTH_SOCK`.
    pub paths: Vec<PathBuf>,
}

impl SshSpec {
    /// The agent socket or key this id stands for: its first path, or the
    /// caller's `$SSH_AUTH_SOCK`.
    pub fn agent_or_key(&self) -> Option<PathBuf> {
        self.paths
            .first()
            .cloned()
            .or_else(|| std::env::var_os("SSH_AUTH_SOCK").map(Into::into))
    }
}

impl std::str::FromStr for SshSpec {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<SshSpec> {
        let (id, rest) = s.split_once('=').unwrap_or((s, ""));
        if id.is_empty() {
            bail!("--ssh: expected default or ID=PATH[,PATH], got {s:?}");
        }
        Ok(SshSpec {
            id: id.to_string(),
            paths: rest
                .split(',')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
        })
    }
}

/// The sandbox's settings are the runtime's own types: `--network`,
/// `--snapshotter`, `--userns` and `--isolation` parse straight into them.
pub use runtime::sandbox::{IsolationRequest, Network, UsernsMode};
pub use runtime::snapshot::SnapshotterRequest;

/// Parses a sandbox flag's value into the runtime's type, naming the flag
/// in the error (`--network` also takes an empty value, the default).
pub fn parse_sandbox_flag<T>(flag: &str, value: &str) -> anyhow::Result<T>
where
    T: std::str::FromStr<Err = String>,
{
    let value = if value.is_empty() { "default" } else { value };
    value.parse().map_err(|e| anyhow!("{flag}: {e}"))
}

/// `--build-context name=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedContext {
    pub name: String,
    pub source: NamedContextSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContextSource {
    Dir(PathBuf),
    Image(String),
    OciLayout(PathBuf),
    /// A git repository (`https://…/repo.git#ref:dir`, `git@…`): checked
    /// out when the build starts, then read like a directory.
    Git(crate::context::git::GitSource),
}

impl std::str::FromStr for NamedContext {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<NamedContext> {
        const FLAG: &str = "--build-context";
        let (name, v) = s
            .split_once('=')
            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
            .ok_or_else(|| anyhow!("{FLAG}: expected NAME=DIR, NAME=docker-image://REF, NAME=oci-layout://PATH or NAME=GIT-URL, got {s:?}"))?;
        let source = if let Some(r) = v.strip_prefix("docker-image://") {
            NamedContextSource::Image(r.to_string())
        } else if let Some(p) = v.strip_prefix("oci-layout://") {
            NamedContextSource::OciLayout(PathBuf::from(p))
        } else if frontend::source::is_git(v) {
            NamedContextSource::Git(crate::context::git::GitSource::parse(v))
        } else if v.contains("://") {
            return Err(crate::not_supported(&format!(
                "{FLAG} source {v:?}: an HTTP file as a context (use a directory, a git repository, docker-image:// or oci-layout://)"
            )));
        } else {
            NamedContextSource::Dir(PathBuf::from(v))
        };
        Ok(NamedContext {
            name: name.to_ascii_lowercase(),
            source,
        })
    }
}

/// What RUN steps get besides their Dockerfile settings: `--add-host`
/// entries, the `/dev/shm` size and `--ulimit`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSandbox {
    /// (host, address) lines added to /etc/hosts.
    pub extra_hosts: Vec<(String, String)>,
    /// Bytes of the /dev/shm tmpfs.
    pub shm_size: u64,
    pub ulimits: Vec<runtime::sandbox::limits::Ulimit>,
}

impl Default for StepSandbox {
    fn default() -> StepSandbox {
        StepSandbox {
            extra_hosts: Vec::new(),
            shm_size: runtime::sandbox::limits::DEFAULT_SHM_SIZE,
            ulimits: Vec::new(),
        }
    }
}

impl StepSandbox {
    /// What a RUN step's cache key adds (nothing for the defaults, so keys
    /// of builds without these flags stay as they were): a step may print
    /// its limits or hosts into a file.
    pub fn key_part(&self) -> Option<serde_json::Value> {
        (*self != StepSandbox::default()).then(|| {
            serde_json::json!({
                "hosts": self.extra_hosts,
                "shm": self.shm_size,
                "ulimits": self.ulimits.iter()
                    .map(|u| format!("{}={}:{}", u.name(), u.soft, u.hard))
                    .collect::<Vec<_>>(),
            })
        })
    }
}

/// `--build-arg K=V` / `--build-arg K` (value from the environment; like
/// Docker, a K that is not set in the environment is left out).
pub fn parse_build_args(
    items: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for i in items {
        let (k, v) = match i.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (i.as_str(), env(i)),
        };
        if k.is_empty() || k.contains(char::is_whitespace) {
            bail!("--build-arg: expected NAME=VALUE or NAME, got {i:?}");
        }
        if let Some(v) = v {
            out.insert(k.to_string(), v);
        }
    }
    Ok(out)
}

/// `--label K=V`.
pub fn parse_labels(items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|i| match i.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("--label: expected KEY=VALUE, got {i:?}"),
        })
        .collect()
}

/// Where the Dockerfile comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerfileSource {
    Path(PathBuf),
    Stdin,
}

/// A fully validated build request.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub root: PathBuf,
    pub context: PathBuf,
    /// `strata build -`: the context (or Dockerfile) read from standard
    /// input, unpacked into a directory that must live as long as the build.
    pub stdin_context: Option<std::sync::Arc<tempfile::TempDir>>,
    pub dockerfile: DockerfileSource,
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub no_cache_filter: Vec<String>,
    pub pull: bool,
    pub cache_from: Vec<CacheFrom>,
    pub cache_to: Vec<CacheTo>,
    pub outputs: Vec<OutputSpec>,
    pub labels: BTreeMap<String, String>,
    pub secrets: Vec<SecretSpec>,
    pub ssh: Vec<SshSpec>,
    pub network: Network,
    pub progress: Mode,
    pub iidfile: Option<PathBuf>,
    pub metadata_file: Option<PathBuf>,
    pub quiet: bool,
    pub jobs: usize,
    pub build_contexts: Vec<NamedContext>,
    pub explain_cache: bool,
    pub snapshotter: SnapshotterRequest,
    pub userns: UsernsMode,
    pub isolation: IsolationRequest,
    pub verbose: u8,
    /// `--add-host`, `--shm-size`, `--ulimit`.
    pub step_sandbox: StepSandbox,
    /// `--annotation`: manifest annotations.
    pub annotations: BTreeMap<String, String>,
    /// `--load`: load the image into docker or podman.
    pub load: bool,
    /// `--insecure-registry`: hosts spoken to over plain HTTP, on top of
    /// `STRATA_INSECURE_REGISTRIES` (given to the registry client, never
    /// written into the environment).
    pub insecure_registries: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs() {
        let o: OutputSpec = "type=docker,dest=out.tar,compression=zstd".parse().unwrap();
        assert_eq!(o.kind, OutputKind::Docker);
        assert_eq!(o.dest, Some(PathBuf::from("out.tar")));
        assert_eq!(o.compression, Some(Compression::Zstd));
        let o: OutputSpec = "dir".parse().unwrap();
        assert_eq!(o.kind, OutputKind::Local);
        for bad in [
            "type=docker",
            "type=floppy,dest=x",
            "dest=x",
            "type=oci,dest=x,color=red",
            "type=local,dest=-",
        ] {
            let e = bad.parse::<OutputSpec>().unwrap_err().to_string();
            assert!(e.starts_with("--output"), "{bad}: {e}");
        }
    }

    #[test]
    fn caches_and_secrets() {
        assert_eq!(
            "ex.com/cache".parse::<CacheFrom>().unwrap(),
            CacheFrom::Registry {
                reference: "ex.com/cache".into()
            }
        );
        assert_eq!(
            "type=registry,ref=r/c,mode=max".parse::<CacheTo>().unwrap(),
            CacheTo::Registry {
                reference: "r/c".into(),
                max: true,
                ignore_error: false
            }
        );
        // max unless min is asked for.
        assert_eq!(
            "type=local,dest=d".parse::<CacheTo>().unwrap(),
            CacheTo::Local {
                dest: "d".into(),
                max: true,
                ignore_error: false
            }
        );
        assert_eq!(
            "type=local,dest=d,mode=min".parse::<CacheTo>().unwrap(),
            CacheTo::Local {
                dest: "d".into(),
                max: false,
                ignore_error: false
            }
        );
        assert!(
            "type=registry"
                .parse::<CacheTo>()
                .unwrap_err()
                .to_string()
                .contains("ref=")
        );
        assert_eq!(
            "id=tok".parse::<SecretSpec>().unwrap(),
            SecretSpec {
                id: "tok".into(),
                source: SecretSource::Env("tok".into())
            }
        );
        assert!("src=x".parse::<SecretSpec>().is_err());
        assert!("id=a,src=x,env=Y".parse::<SecretSpec>().is_err());
    }

    #[test]
    fn cache_to_as_buildx_reads_it() {
        // A bare reference is a registry cache.
        assert_eq!(
            "reg.example/app:cache".parse::<CacheTo>().unwrap(),
            CacheTo::Registry {
                reference: "reg.example/app:cache".into(),
                max: true,
                ignore_error: false
            }
        );
        let c: CacheTo = "type=registry,ref=r/c,ignore-error=true".parse().unwrap();
        assert!(c.ignores_errors());
        assert_eq!(
            "type=registry,ref=r/c,ignore-errors=true"
                .parse::<CacheTo>()
                .unwrap_err()
                .to_string(),
            "--cache-to: unknown key \"ignore-errors\": use type, ref, mode, ignore-error"
        );
        assert_eq!(
            "type=local,src=d,color=red"
                .parse::<CacheFrom>()
                .unwrap_err()
                .to_string(),
            "--cache-from: unknown key \"color\": use type, src"
        );
        assert_eq!(
            "type=registry,ref=r/c,compression=zstd"
                .parse::<CacheTo>()
                .unwrap_err()
                .to_string(),
            "not supported yet: --cache-to compression="
        );
        assert_eq!(
            "type=registry,ref=r/c"
                .parse::<CacheFrom>()
                .unwrap()
                .to_string(),
            "type=registry,ref=r/c"
        );
    }

    #[test]
    fn build_args_from_env_are_skipped_when_unset() {
        let args = vec!["A=1".to_string(), "B".to_string(), "C".to_string()];
        let m = parse_build_args(&args, |k| (k == "B").then(|| "fromenv".to_string())).unwrap();
        assert_eq!(m.get("A").map(String::as_str), Some("1"));
        assert_eq!(m.get("B").map(String::as_str), Some("fromenv"));
        assert!(!m.contains_key("C"));
        assert!(parse_build_args(&["=x".to_string()], |_| None).is_err());
    }

    #[test]
    fn named_contexts() {
        let c: NamedContext = "base=docker-image://alpine:3".parse().unwrap();
        assert_eq!(c.source, NamedContextSource::Image("alpine:3".into()));
        assert!(
            "x=https://example.com/a.tar"
                .parse::<NamedContext>()
                .unwrap_err()
                .to_string()
                .contains("not supported yet")
        );
        let g: NamedContext = "Src=https://git.example/r.git#v1:sub".parse().unwrap();
        assert_eq!(g.name, "src");
        assert_eq!(
            g.source,
            NamedContextSource::Git(crate::context::git::GitSource {
                url: "https://git.example/r.git".into(),
                reference: Some("v1".into()),
                subdir: Some("sub".into()),
            })
        );
        let d: NamedContext = "d=vendor/r.git".parse().unwrap();
        assert_eq!(d.source, NamedContextSource::Dir("vendor/r.git".into()));
    }
}
