//! The build graph: what the builder executes. This is the contract between
//! the frontend and the solver.
//!
//! [`crate::lower()`] turns a parsed Dockerfile into a [`BuildGraph`]: the
//! stages the target needs, in dependency order, each with its base, its
//! filesystem steps ([`Op::Exec`] for RUN, [`Op::File`] for COPY/ADD and
//! WORKDIR creation), its final [`ImageConfig`] and its own history entries.
//!
//! Everything here is plain data, serializable with serde: `strata graph
//! --format json` prints it, and the builder hashes a step's serialized
//! definition for its cache key. Metadata-only instructions (ENV, LABEL,
//! CMD, ...) do not appear as steps: their effect is already folded into
//! [`Stage::config`] and recorded in [`Stage::history`]. They do change
//! later steps' definitions where it matters (an ENV changes RUN's `env`),
//! which is what cache keys must see.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::config::ImageConfig;
use crate::diagnostic::Diagnostic;

/// An OS/architecture pair, as in `--platform linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// `linux/amd64`. The frontend does not know the machine it runs on: the
/// builder passes the host platform (the store's table,
/// `cache::platform::Platform::host`) in [`BuildOptions`]; this default is
/// for tools and tests that do not care.
impl Default for Platform {
    fn default() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = String;

    /// Parses `os/arch[/variant]` (lower-cased; `arm64/v8` keeps its
    /// variant as written). A bare `os` is rejected: strata needs both.
    fn from_str(s: &str) -> Result<Platform, String> {
        let parts: Vec<String> = s
            .split('/')
            .map(|p| p.trim().to_ascii_lowercase())
            .collect();
        let bad =
            || format!("invalid platform {s:?}: expected os/arch[/variant], e.g. linux/amd64");
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.clone(),
                architecture: normalize_arch(arch),
                variant: None,
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(Platform {
                    os: os.clone(),
                    architecture: normalize_arch(arch),
                    variant: Some(variant.clone()),
                })
            }
            _ => Err(bad()),
        }
    }
}

/// Maps common aliases to the OCI architecture names.
fn normalize_arch(arch: &str) -> String {
    match arch {
        "x86_64" | "x86-64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        "i386" | "i686" => "386".into(),
        other => other.into(),
    }
}

/// What the caller asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildOptions {
    /// `--build-arg KEY=VALUE`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build (name, case-insensitive); the last
    /// stage when `None`.
    pub target: Option<String>,
    /// The platform the image is for (`TARGETPLATFORM`).
    pub platform: Platform,
    /// The platform the build runs on (`BUILDPLATFORM`), given by the
    /// caller: the frontend has no host-platform table of its own.
    pub build_platform: Platform,
    /// The Dockerfile's name, for diagnostics.
    pub file_name: String,
    /// The `--build-context` names (lowercase) that `COPY --from=` may
    /// read when no stage has that name.
    pub named_contexts: std::collections::BTreeSet<String>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            build_args: BTreeMap::new(),
            target: None,
            platform: Platform::default(),
            build_platform: Platform::default(),
            file_name: "Dockerfile".into(),
            named_contexts: Default::default(),
        }
    }
}

/// A base image as the resolver found it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedImage {
    /// The manifest digest (`sha256:...`), for cache keys.
    pub digest: String,
    /// The image's runtime config (its ONBUILD triggers included).
    pub config: ImageConfig,
}

/// Hands over base-image metadata. The frontend does no I/O: the builder
/// implements this with its registry client and store; tests use a fake.
///
/// [`crate::lower()`] calls it once for every `FROM <image>` in a stage the
/// target needs (never for `scratch` or a stage reference), with the
/// reference after ARG expansion and the stage's platform. The returned
/// config becomes the stage's starting config, and its `OnBuild` triggers
/// run right after the FROM.
pub trait ImageResolver {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String>;

    /// The platform the image `reference` resolved to for `platform`, when
    /// the resolver knows it (for BuildKit's InvalidBaseImagePlatform
    /// check); `None` (the default) skips the check.
    fn resolved_platform(&self, _reference: &str, _platform: &Platform) -> Option<Platform> {
        None
    }
}

/// A resolver for tools that only need the graph's shape (`strata graph`,
/// `strata check`, benchmarks): every image has an empty config and no
/// digest.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyResolver;

impl ImageResolver for EmptyResolver {
    fn resolve(&self, _reference: &str, _platform: &Platform) -> Result<ResolvedImage, String> {
        Ok(ResolvedImage::default())
    }
}

/// The stages to build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildGraph {
    /// Only the stages the target needs, every stage after the stages it
    /// depends on.
    pub stages: Vec<Stage>,
    /// Index into `stages` of the stage to export.
    pub target: usize,
    /// Non-fatal findings (unused build args, parser warnings).
    pub warnings: Vec<Diagnostic>,
    /// `SOURCE_DATE_EPOCH` from the build args or a global ARG default,
    /// resolved; `None` when not set. A stage it names is in `stages` even
    /// when the target does not need it.
    pub source_date_epoch: Option<SourceDateEpoch>,
}

/// Where the reproducible-build timestamp comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceDateEpoch {
    /// Unix seconds, as given.
    Seconds { seconds: i64 },
    /// `context`: the newest modification time in the build context.
    Context,
    /// A source-only stage (`FROM scratch`, only `ADD <url>`): the time of
    /// its downloaded content (HTTP `Last-Modified`, git commit time).
    Stage { id: usize, sources: Vec<String> },
}

impl BuildGraph {
    /// The stage whose original index (`FROM` number, 0-based) is `id`.
    pub fn stage(&self, id: usize) -> Option<&Stage> {
        self.stages.iter().find(|s| s.id == id)
    }

    /// The target stage.
    pub fn target_stage(&self) -> Option<&Stage> {
        self.stages.get(self.target)
    }

    /// The history stage `id` contributes on top of its base *image*: the
    /// entries of every ancestor stage (`FROM <stage>` chains), oldest
    /// first, then its own. Prepend the base image's history when
    /// exporting.
    pub fn full_history(&self, id: usize) -> Vec<History> {
        let mut chain = Vec::new();
        let mut cur = self.stage(id);
        while let Some(s) = cur {
            chain.push(s);
            cur = match s.base {
                Base::Stage { id } if !chain.iter().any(|c| c.id == id) => self.stage(id),
                _ => None,
            };
        }
        chain
            .iter()
            .rev()
            .flat_map(|s| s.history.iter().cloned())
            .collect()
    }
}

/// One `FROM` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// The stage's position among all `FROM`s (0-based), pruned or not. Stage
    /// references ([`Base::Stage`], [`CopySource::Stage`], `deps`) use it.
    pub id: usize,
    /// `AS name`, lower-cased as BuildKit compares it.
    pub name: Option<String>,
    /// Where the root filesystem starts.
    pub base: Base,
    /// The platform this stage builds for (`FROM --platform`, else the
    /// target platform).
    pub platform: Platform,
    /// Filesystem-changing steps, in order (ONBUILD triggers of the base
    /// come first).
    pub steps: Vec<Step>,
    /// The final config: the base's, then this stage's instructions. For a
    /// `FROM <stage>` base it starts from that stage's final config.
    pub config: ImageConfig,
    /// `MAINTAINER`, else the base stage's author.
    pub author: Option<String>,
    /// This stage's own history entries, in order (the base image's history
    /// is not included; for `FROM <stage>` the parent stage's entries are
    /// not repeated either: prepend them when exporting).
    pub history: Vec<History>,
    /// Ids of the stages this one needs (its base stage and every
    /// `--from`), without duplicates, ascending.
    pub deps: Vec<usize>,
    /// Line and column of the `FROM`.
    pub line: usize,
    pub column: usize,
}

/// Where a stage's filesystem starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Base {
    /// `FROM scratch`: empty.
    Scratch,
    /// A registry image (reference after expansion).
    Image {
        reference: String,
        /// The digest the resolver returned (may be empty for fakes).
        digest: String,
        platform: Platform,
    },
    /// An earlier stage, by id.
    Stage { id: usize },
}

/// One entry of an image's history, as Docker records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub created_by: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    /// `true` for metadata-only instructions (no layer).
    #[serde(default)]
    pub empty_layer: bool,
}

/// One filesystem-changing step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Where the instruction is (for a trigger from a base image's ONBUILD,
    /// the child's FROM line).
    pub line: usize,
    pub column: usize,
    /// The instruction as written (BuildKit's `Original`), for progress
    /// output such as `[stage 2/5] RUN make`.
    pub original: String,
    /// The history text, as BuildKit records it
    /// (`RUN /bin/sh -c make # buildkit`).
    pub created_by: String,
    pub op: Op,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Op {
    /// Run a process (RUN).
    Exec(ExecOp),
    /// Copy files or make a directory (COPY, ADD, WORKDIR).
    File(FileOp),
}

impl Op {
    /// The op's definition as canonical JSON, for cache keys: everything
    /// that changes the result, and nothing that does not (the proxy
    /// environment is left out, as BuildKit leaves it out). Field order is
    /// the declaration order, so the text is stable.
    pub fn definition_json(&self) -> String {
        let mut v = match serde_json::to_value(self) {
            Ok(v) => v,
            // Plain data with string keys always serializes.
            Err(e) => return format!("{{\"unserializable\":{:?}}}", e.to_string()),
        };
        if let Some(obj) = v.as_object_mut() {
            obj.remove("proxy_env");
        }
        v.to_string()
    }
}

/// A process to run on the stage's current root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecOp {
    /// The command; the shell form is already wrapped with the current
    /// SHELL (`["/bin/sh", "-c", "make"]`).
    pub argv: Vec<String>,
    /// The environment: the config's Env, then the build args in scope
    /// (an ENV of the same name wins). Proxy args are not here.
    pub env: Vec<(String, String)>,
    /// Proxy build args (`http_proxy`, ...) to give the process. They are
    /// kept out of history and must be kept out of cache keys.
    pub proxy_env: Vec<(String, String)>,
    /// The working directory (absolute; `/` when unset).
    pub cwd: String,
    /// `user[:group]` as written, expanded; `None` means root.
    pub user: Option<String>,
    pub mounts: Vec<crate::runmount::RunMount>,
    pub network: Option<NetworkMode>,
    pub security: Option<Security>,
    /// Files the step needs that come from the Dockerfile itself: a
    /// `RUN <<EOF` heredoc that starts with `#!` is written to `path`
    /// (under `/dev/pipes/`, mounted read-only) and executed.
    pub inline_files: Vec<InlineFile>,
}

/// `RUN --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

/// `RUN --security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    Sandbox,
    Insecure,
}

/// A file whose content comes from the Dockerfile (a heredoc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InlineFile {
    /// For COPY/ADD: the heredoc name (`EOF`), treated like a source path
    /// of that name: `COPY <<EOF /etc/motd` writes `/etc/motd`, while
    /// `COPY <<EOF /etc/` writes `/etc/EOF`. For RUN: the absolute path the
    /// script is placed at.
    pub path: String,
    /// The body, tabs stripped for `<<-`, variables expanded unless the
    /// heredoc word was quoted.
    pub content: String,
    /// Permission bits (0o644 for COPY without --chmod, 0o755 for RUN
    /// scripts).
    pub mode: u32,
}

/// COPY, ADD, or the directory WORKDIR creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileOp {
    pub kind: FileKind,
    /// Where sources are read from.
    pub from: CopySource,
    /// Source paths/URLs, expanded, as written: wildcards are not expanded
    /// (the builder matches them against the source).
    pub sources: Vec<String>,
    /// Heredoc sources (`COPY <<EOF /dst`).
    pub inline: Vec<InlineFile>,
    /// The destination, absolute (resolved against WORKDIR). A trailing `/`
    /// is kept: it means "into this directory".
    pub dest: String,
    pub chown: Option<String>,
    /// As written (octal like `0755`, or symbolic like `u+x`); validated
    /// octal values are also in `chmod_bits`.
    pub chmod: Option<String>,
    pub chmod_bits: Option<u32>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    /// ADD --checksum (`sha256:...`).
    pub checksum: Option<String>,
    /// ADD --keep-git-dir.
    pub keep_git_dir: bool,
    /// ADD --unpack: `None` means the default (unpack local archives,
    /// not remote ones).
    pub unpack: Option<bool>,
}

/// Which instruction a [`FileOp`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Copy,
    Add,
    /// WORKDIR: create `dest` (with parents) if it is missing, owned by the
    /// current USER.
    Mkdir,
}

/// Where a [`FileOp`] reads from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CopySource {
    /// The build context.
    Context,
    /// An earlier stage's final filesystem, by id.
    Stage { id: usize },
    /// `--from=<image>` that names no stage: a registry image.
    Image { reference: String },
    /// `--from=<name>` of a `--build-context` the caller named (a
    /// directory or an image; the caller knows which).
    Named { name: String },
    /// ADD of URLs to download (the op's `sources`), checked against its
    /// `checksum`.
    Http,
    /// ADD of a git repository at a ref, optionally one directory of it.
    Git {
        repository: String,
        reference: Option<String>,
        subdir: Option<String>,
    },
    /// Nothing to read (Mkdir, heredoc-only COPY).
    None,
}
