//! `strata build`: the command line of a build, parsed into a typed
//! [`BuildRequest`] (every flag validated, errors naming the flag), then
//! handed to [`crate::pipeline`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;

use super::GlobalOpts;
use super::not_yet::not_supported;
use crate::options::{
    BuildRequest, DockerfileSource, OutputKind, OutputSpec, parse_build_args, parse_labels,
    parse_sandbox_flag,
};
use crate::progress::Mode;

/// `strata build`'s arguments. The flags live behind a box so the verb
/// enum stays small (clippy's large_enum_variant).
#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub flags: Box<BuildFlags>,
}

#[derive(Debug, Args)]
pub struct BuildFlags {
    /// The build context directory, or `-`: a context tar (plain or
    /// compressed) or a lone Dockerfile read from standard input.
    #[arg(value_name = "CONTEXT")]
    pub context: PathBuf,
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` reads it from stdin).
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<String>,
    /// Name the image (repeatable): `name[:tag]`.
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub tags: Vec<String>,
    /// Set a build argument: `KEY=VALUE`, or `KEY` to take it from the environment.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Build this stage (by name) instead of the last one.
    #[arg(long)]
    pub target: Option<String>,
    /// Run every step, ignoring the cache (results are still recorded).
    #[arg(long)]
    pub no_cache: bool,
    /// Ignore the cache for these stages only (repeatable).
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// Resolve base images again instead of using the local store.
    #[arg(long)]
    pub pull: bool,
    /// Import cache: `type=local,src=DIR`, `type=registry,ref=REF` or an image reference.
    #[arg(long = "cache-from", value_name = "SPEC")]
    pub cache_from: Vec<String>,
    /// Export cache: `type=local,dest=DIR[,mode=min|max]`,
    /// `type=registry,ref=REF[,mode=min|max]` or a bare REF (max, the
    /// default: every step; min: the final image's steps), or `type=inline`
    /// (in the image config). `ignore-error=true`: a failed export only warns.
    #[arg(long = "cache-to", value_name = "SPEC")]
    pub cache_to: Vec<String>,
    /// Output: `type=docker|oci|tar|local|image|registry[,dest=FILE|-][,name=…][,compression=gzip|zstd|uncompressed]`
    /// (`dest=-`: the tarball on standard output).
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    pub output: Vec<String>,
    /// Push the image to its registry after the build.
    #[arg(long)]
    pub push: bool,
    /// Set an image label `KEY=VALUE` (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Expose a secret to RUN --mount=type=secret: `id=ID,src=PATH` or `id=ID,env=VAR`.
    #[arg(long = "secret", value_name = "SPEC")]
    pub secrets: Vec<String>,
    /// Forward an SSH agent or keys: `default` or `ID=PATH[,PATH]`.
    #[arg(long = "ssh", value_name = "SPEC")]
    pub ssh: Vec<String>,
    /// Network for RUN: default, none or host.
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// Progress output: auto, tty, plain, json or quiet.
    #[arg(long, default_value = "auto", value_name = "MODE")]
    pub progress: String,
    /// Write the image id to this file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Write build metadata (JSON) to this file.
    #[arg(long = "metadata-file", value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Print only the image id.
    #[arg(short, long)]
    pub quiet: bool,
    /// How many steps may run at once (default: the number of CPUs).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// The target platform (only the native one is supported).
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    /// A named context: `NAME=DIR`, `NAME=docker-image://REF` or `NAME=oci-layout://PATH`.
    #[arg(long = "build-context", value_name = "NAME=SOURCE")]
    pub build_contexts: Vec<String>,
    /// Say, for every step that ran, why the cache missed.
    #[arg(long)]
    pub explain_cache: bool,
    /// How step root filesystems are made: auto, overlay or native.
    #[arg(long, default_value = "auto", value_name = "KIND")]
    pub snapshotter: String,
    /// User namespace: auto, single (only your uid) or subuid (/etc/subuid ranges).
    #[arg(long, default_value = "auto", value_name = "MODE")]
    pub userns: String,
    /// How RUN steps are isolated: auto, userns (a user namespace per step) or
    /// chroot (no namespace, no mount: for CI containers that refuse unshare;
    /// the container is then the security boundary). auto picks chroot only
    /// when no user namespace can be made and strata is root with CAP_SYS_CHROOT.
    #[arg(long, default_value = "auto", value_name = "MODE")]
    pub isolation: String,
    #[command(flatten)]
    pub compat: super::build_compat::CompatFlags,
    /// Run the build checks (BuildKit's lint rules) instead of building,
    /// as `docker build --check` does; see `strata check`.
    #[arg(long)]
    pub check: bool,
}

/// `host`, `host.domain`, `localhost` or any of them with `:port`.
fn is_registry_host(h: &str) -> bool {
    let (name, port) = match h.split_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (h, None),
    };
    if port.is_some_and(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_digit())) {
        return false;
    }
    name.contains('.') || name == "localhost" || port.is_some()
}

/// A minimal check of an image name (`-t`): lower-case repository path,
/// optional `:tag` of at most 128 `[A-Za-z0-9_.-]`. The store's reference
/// parser does the full job when the image is named.
fn check_tag(t: &str) -> anyhow::Result<()> {
    let bad =
        |why: &str| anyhow::anyhow!("-t/--tag {t:?}: {why}; use name[:tag], e.g. -t myapp:1.0");
    if t.is_empty() {
        return Err(bad("empty name"));
    }
    if t.contains('@') {
        return Err(bad("a digest cannot be a tag"));
    }
    let last_slash = t.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (repo, tag) = match t[last_slash..].rfind(':') {
        Some(i) => (&t[..last_slash + i], Some(&t[last_slash + i + 1..])),
        None => (t, None),
    };
    if let Some(tag) = tag
        && (tag.is_empty()
            || tag.len() > 128
            || !tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)))
    {
        return Err(bad("invalid tag"));
    }
    let path = repo
        .split_once('/')
        .filter(|(h, _)| is_registry_host(h))
        .map(|(_, p)| p)
        .unwrap_or(repo);
    if path.is_empty()
        || !path
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c))
    {
        return Err(bad(
            "repository names are lower-case letters, digits and . _ - /",
        ));
    }
    Ok(())
}

fn parse_all<T: std::str::FromStr<Err = anyhow::Error>>(
    items: &[String],
) -> anyhow::Result<Vec<T>> {
    items.iter().map(|i| i.parse()).collect()
}

impl BuildFlags {
    /// `-` as the context: reads the tar (or Dockerfile) on standard input
    /// into a scratch directory, which becomes the context, kept alive for
    /// the build.
    fn take_stdin_context(&mut self) -> anyhow::Result<Option<std::sync::Arc<tempfile::TempDir>>> {
        if self.context == Path::new("-") {
            if self.file.as_deref() == Some("-") {
                bail!(
                    "-f - and the context - both read standard input: give the context as a directory, or pipe a tar holding the Dockerfile"
                );
            }
            let s = super::stdin_context::read()?;
            self.context = s.context.clone();
            if let Some(df) = &s.dockerfile {
                self.file = Some(df.display().to_string());
            } else if let Some(f) = &self.file {
                // In a context tar, -f names a file of the tar.
                let inside = s.context.join(f.trim_start_matches('/'));
                if inside.is_file() {
                    self.file = Some(inside.display().to_string());
                }
            }
            return Ok(Some(std::sync::Arc::new(s.dir)));
        }
        Ok(None)
    }

    /// Validates every option into a [`BuildRequest`].
    pub fn into_request(mut self, g: &GlobalOpts) -> anyhow::Result<BuildRequest> {
        let root = g.root()?;
        let compat = std::mem::take(&mut self.compat).validate()?;
        let stdin_context = self.take_stdin_context()?;
        if !self.context.is_dir() {
            bail!(
                "the build context {} is not a directory: pass the directory holding your sources (often `.`), or - to read a tar or a Dockerfile from standard input",
                self.context.display()
            );
        }
        let dockerfile = match self.file.as_deref() {
            Some("-") => DockerfileSource::Stdin,
            Some(p) => DockerfileSource::Path(PathBuf::from(p)),
            None => DockerfileSource::Path(self.context.join("Dockerfile")),
        };
        if let DockerfileSource::Path(p) = &dockerfile
            && !p.is_file()
        {
            bail!(
                "-f/--file: cannot find the Dockerfile {}: check the path or pass -f PATH",
                p.display()
            );
        }
        for t in &self.tags {
            check_tag(t)?;
        }
        check_platform(self.platform.as_deref())?;
        let jobs = match self.jobs {
            Some(0) => bail!("--jobs: must be at least 1"),
            Some(n) => n,
            None => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        };
        let mut outputs: Vec<OutputSpec> = parse_all(&self.output)?;
        if self.push {
            if self.tags.is_empty() {
                bail!("--push needs an image name: add -t REGISTRY/NAME:TAG");
            }
            outputs.push(OutputSpec {
                kind: OutputKind::Registry,
                dest: None,
                name: None,
                compression: None,
                push: true,
            });
        }
        if outputs
            .iter()
            .any(|o| matches!(o.kind, OutputKind::Registry) || o.push)
            && self.tags.is_empty()
            && outputs.iter().all(|o| o.name.is_none())
        {
            bail!("--output type=registry needs an image name: add -t REGISTRY/NAME:TAG or name=…");
        }
        let quiet = self.quiet;
        let progress: Mode = if quiet {
            Mode::Quiet
        } else {
            self.progress
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--progress: {e}"))?
        };
        let context = std::fs::canonicalize(&self.context)
            .with_context(|| format!("cannot resolve the context {}", self.context.display()))?;
        Ok(BuildRequest {
            root,
            context,
            stdin_context,
            dockerfile,
            tags: self.tags,
            build_args: parse_build_args(&self.build_args, |k| std::env::var(k).ok())?,
            target: self.target,
            no_cache: self.no_cache,
            no_cache_filter: self
                .no_cache_filter
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            pull: self.pull,
            cache_from: parse_all(&self.cache_from)?,
            cache_to: parse_all(&self.cache_to)?,
            outputs,
            labels: parse_labels(&self.labels)?,
            secrets: parse_all(&self.secrets)?,
            ssh: parse_all(&self.ssh)?,
            network: parse_sandbox_flag("--network", self.network.as_deref().unwrap_or(""))?,
            progress,
            iidfile: self.iidfile,
            metadata_file: self.metadata_file,
            quiet,
            jobs,
            build_contexts: parse_all(&self.build_contexts)?,
            explain_cache: self.explain_cache,
            snapshotter: parse_sandbox_flag("--snapshotter", &self.snapshotter)?,
            userns: parse_sandbox_flag("--userns", &self.userns)?,
            isolation: parse_sandbox_flag("--isolation", &self.isolation)?,
            verbose: g.verbose,
            step_sandbox: compat.sandbox,
            annotations: compat.annotations,
            load: compat.load,
            insecure_registries: compat.insecure_registries,
        })
    }
}

pub fn run(g: &GlobalOpts, args: BuildArgs) -> anyhow::Result<ExitCode> {
    let check = args.flags.check;
    let req = args.flags.into_request(g)?;
    if check {
        return check_only(&req);
    }
    crate::pipeline::build(&req)?;
    Ok(ExitCode::SUCCESS)
}

/// `--check`: the build's Dockerfile, context and arguments through the
/// checks, nothing built.
fn check_only(req: &BuildRequest) -> anyhow::Result<ExitCode> {
    let (name, text, path) = match &req.dockerfile {
        DockerfileSource::Stdin => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .context("reading the Dockerfile from stdin")?;
            ("-".to_string(), s, None)
        }
        DockerfileSource::Path(p) => {
            let bytes = std::fs::read(p)
                .with_context(|| format!("cannot read the Dockerfile {}", p.display()))?;
            let text = String::from_utf8_lossy(&bytes).into_owned();
            (p.display().to_string(), text, Some(p.as_path()))
        }
    };
    let opts = frontend::BuildOptions {
        build_args: req.build_args.clone(),
        target: req.target.clone(),
        file_name: name.clone(),
        ..crate::platform::host_build_options()
    };
    super::check::check(&req.context, path, &name, &text, &opts)
}

/// `--platform`: only the native one (no emulation).
fn check_platform(platform: Option<&str>) -> anyhow::Result<()> {
    if let Some(p) = platform {
        let want: frontend::graph::Platform =
            p.parse().map_err(|e| anyhow::anyhow!("--platform: {e}"))?;
        let native = crate::platform::host();
        if want.os != native.os || want.architecture != native.architecture {
            return Err(not_supported(&format!(
                "--platform {want}: strata builds only for the native platform {native} (no emulation)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        for ok in [
            "app",
            "app:1.0",
            "127.0.0.1:5000/library/busybox:latest",
            "a/b-c_d.e:x_Y",
        ] {
            check_tag(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "App", "app:", "app@sha256:00", "app:t/x", "app:bad tag"] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
    }
}
