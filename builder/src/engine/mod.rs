//! The build engine: executes one step against the store and the sandbox and
//! turns it into a layer. The solver decides *what* runs and *when* (cache
//! keys, parallelism, progress); the engine only knows *how*.
//!
//! # How to call it
//!
//! ```text
//! use builder::engine::{CopyRequest, Engine, EngineOptions, ImageRequest, RunInputs, StepFailed};
//!
//! let store = Arc::new(cache::store::Store::open(root)?);
//! let engine = Engine::new(store.clone(), EngineOptions::default())?;  // once per build; Sync
//!
//! // FROM: local tag/digest, else the registry (manifest + config only; layers
//! // are fetched when first needed); also docker-archive:PATH, oci-layout:PATH[:tag]
//! let base = engine.base_image("127.0.0.1:5000/library/busybox:latest")?;
//! //   base.manifest_digest (cache keys), base.config (raw bytes), base.stack
//! let mut stack = base.stack.clone();          // FROM scratch: LayerStack::scratch()
//! let mut steps: Vec<LayerResult> = vec![];     // one per frontend Step, in order
//!
//! // RUN (frontend::ExecOp as lowered); each output line goes to the callback
//! let r = engine.run(&stack, &exec_op, &RunInputs { context_dir, stages, images, secrets, ssh_sockets },
//!                    &mut |line| progress.line(line))?;
//! //   Err(e): e.downcast_ref::<StepFailed>() has the exit code and last 10 lines
//! stack = r.stack.clone(); steps.push(r);
//!
//! // COPY/ADD of files the context module selected (host paths); Docker's rules
//! // against `dest` (FileOp::dest, trailing '/' kept). CopyItem::At places a path exactly.
//! let req = CopyRequest::new(vec![ctx.join("src")], "/app/").chown(1000, 1000).chmod(0o640)
//!     .unpack_archives(is_add);
//! let r = engine.copy(&stack, &req)?;
//! // WORKDIR (FileKind::Mkdir): owner = the current USER, resolved to ids
//! let r = engine.mkdir(&stack, "/app", (uid, gid))?;    // r.empty if it already exists
//!
//! // The image (config digest = image id), written and tagged in the store:
//! let image = engine.assemble(&ImageRequest {
//!     base_config: Some(&base.config),     // None for scratch; for FROM <stage>, that stage's config
//!     config: &stage.config, history: &stage.history, author: stage.author.as_deref(),
//!     platform: &stage.platform, steps: &steps, stack: &stack, tags: &["app:latest".into()],
//! })?;
//! // export: cache::transport::docker_archive::save(&store, &[SaveItem { name, image }], dest)
//! ```
//!
//! Also: [`Engine::lowers`] (a stack's unpacked layer directories, topmost
//! first, e.g. for `RUN --mount=from=`), [`snapshot_key`] (the snapshot
//! names a cache entry must list in `CacheRefs::snapshots`).
//!
//! Every step returns a [`LayerResult`]: the new [`LayerStack`] (parent plus
//! the layer, or the parent unchanged when the step changed nothing —
//! `empty`, which the image records as an `empty_layer` history entry, as
//! BuildKit does). Layer blobs go into the store as they are written; a
//! layer's snapshot directory (`<root>/snapshots/sha256-<chain id hex>/layer`,
//! overlay form) is made when the layer is created or, for base layers, the
//! first time a step needs it as a lower ([`Engine::lowers`]). Those names are
//! what a cache entry should list in `CacheRefs::snapshots` (see
//! [`snapshot_key`]) so `prune` keeps them.
//!
//! Steps of different stages may run at the same time on one engine; two
//! strata processes sharing a root coordinate snapshot creation with file
//! locks (the first unpacks, the second waits and reuses).
//!
//! # Why the user namespace everywhere
//! With a subordinate id range, files in snapshots belong to host ids the
//! caller cannot read or chown. Unpacking, diffing, tarring a step's changes
//! and reading another stage's files therefore happen in a forked child
//! inside the build's user namespace (`runtime::run_in_userns`). That child
//! writes layers *uncompressed* (no thread pool: a forked child has none)
//! into this process's scratch directory, and the parent compresses them
//! into the blob store.

mod base;
mod changes;
mod copy;
mod image;
mod layer_blob;
mod lookup;
mod mounts;
mod run;
mod snapshots;
mod stack;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Context as _;
use cache::image::ManifestFormat;
use cache::layer::Compression;
use cache::platform::Platform;
use cache::store::Store;
use cache::transport::registry::RegistryClient;
use runtime::sandbox::{Sandbox, SandboxOptions, UsernsMode};
use runtime::snapshot::{Snapshotter, SnapshotterKind, SnapshotterRequest, choose};

pub use base::BaseImage;
pub use copy::{CopyItem, CopyRequest};
pub use image::ImageRequest;
pub use mounts::RunInputs;
pub use run::StepFailed;
pub use snapshots::snapshot_key;
pub use stack::{LayerStack, StackLayer};

/// How the engine builds.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// `--userns`: a subordinate id range when the host offers one.
    pub userns: UsernsMode,
    /// `--snapshotter`: overlayfs when it works, else copies.
    pub snapshotter: SnapshotterRequest,
    /// Layer compression (gzip level 6 by default, what Docker writes).
    pub compression: Compression,
    /// Manifest media types. Docker schema 2 by default, so that `docker
    /// load` keeps every field.
    pub manifest_format: ManifestFormat,
    /// `SOURCE_DATE_EPOCH`: clamps layer mtimes and is the image's
    /// `created`. [`EngineOptions::default`] reads it from the environment.
    pub source_date_epoch: Option<i64>,
    /// The platform base images are resolved for.
    pub platform: Platform,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            userns: UsernsMode::Auto,
            snapshotter: SnapshotterRequest::Auto,
            compression: Compression::default(),
            manifest_format: ManifestFormat::Docker,
            source_date_epoch: std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|v| v.trim().parse().ok()),
            platform: Platform::host(),
        }
    }
}

/// What one step produced.
#[derive(Debug, Clone)]
pub struct LayerResult {
    /// The root filesystem after the step.
    pub stack: LayerStack,
    /// The new layer (`None` when the step changed nothing).
    pub layer: Option<StackLayer>,
    /// The new layer's snapshot directory in overlay form (`None` if empty).
    pub snapshot_dir: Option<PathBuf>,
    /// The step changed nothing: no layer, an `empty_layer` history entry.
    pub empty: bool,
}

impl LayerResult {
    /// The result of a step that changed nothing.
    pub(crate) fn unchanged(stack: &LayerStack) -> LayerResult {
        LayerResult {
            stack: stack.clone(),
            layer: None,
            snapshot_dir: None,
            empty: true,
        }
    }
}

/// One build's engine: the store, the sandbox (id mapping) and the
/// snapshotter, shared by every step.
pub struct Engine {
    store: Arc<Store>,
    sandbox: Sandbox,
    snapshotter: Box<dyn Snapshotter>,
    snapshotter_reason: String,
    opts: EngineOptions,
    registry: OnceLock<RegistryClient>,
    /// Registry bases whose layers are not all in the store yet; tagged
    /// locally once they are (see `base.rs`).
    pending_tags: Mutex<Vec<base::PendingTag>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("root", &self.store.root())
            .field("snapshotter", &self.snapshotter.kind())
            .field("opts", &self.opts)
            .finish()
    }
}

impl Engine {
    /// Detects what the host allows (user namespace, id mapping, overlayfs)
    /// and prepares the store's directories. Fails with the runtime's
    /// explanation when rootless sandboxes cannot work here.
    pub fn new(store: Arc<Store>, opts: EngineOptions) -> anyhow::Result<Engine> {
        let root = store.root().to_path_buf();
        let sandbox = Sandbox::new(SandboxOptions {
            userns: opts.userns,
            state_dir: store.scratch_dir().join("sandbox"),
            cache_dir: Some(root.join("cache-mounts")),
        })
        .context("setting up the rootless sandbox")?;
        let choice =
            choose(&store.snapshots_dir(), opts.snapshotter).context("choosing a snapshotter")?;
        let engine = Engine {
            store,
            sandbox,
            snapshotter: choice.snapshotter,
            snapshotter_reason: choice.reason,
            opts,
            registry: OnceLock::new(),
            pending_tags: Mutex::new(Vec::new()),
        };
        engine.clean_stale_temp();
        Ok(engine)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// The sandbox (its id mapping is the build's).
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Which snapshotter runs steps, and one sentence saying why.
    pub fn snapshotter(&self) -> (SnapshotterKind, &str) {
        (self.snapshotter.kind(), &self.snapshotter_reason)
    }

    /// The time the engine stamps on what it creates (the image's
    /// `created`, directories COPY and WORKDIR make): SOURCE_DATE_EPOCH,
    /// else now, so a reproducible build stays reproducible.
    pub(crate) fn build_time(&self) -> i64 {
        self.opts.source_date_epoch.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        })
    }

    /// The registry client, made on first use from the environment
    /// (`docker login` credentials, `STRATA_INSECURE_REGISTRIES`).
    fn registry(&self) -> anyhow::Result<&RegistryClient> {
        if let Some(c) = self.registry.get() {
            return Ok(c);
        }
        let client = RegistryClient::from_env().context("configuring the registry client")?;
        Ok(self.registry.get_or_init(|| client))
    }
}

#[cfg(test)]
mod tests {
    /// The solver runs steps of several stages at once on one engine.
    #[test]
    fn engine_is_shareable_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<super::Engine>();
        shareable::<super::LayerResult>();
    }
}
