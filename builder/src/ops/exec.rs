//! Exec ops: RUN in the runtime's rootless sandbox.
//!
//! The step's lower layers are unpacked once each into
//! `<root>/snapshots/layer-<diff_id>` (overlay form, inside the user
//! namespace so subordinate owners are real), a snapshot is prepared over
//! them, the command runs, and the snapshot's committed directory becomes
//! the new layer, moved into place by [`super::commit`] (no tar is written,
//! nothing is compressed) and kept as the lower of later steps. In chroot
//! isolation the same calls run in-process (strata is real root there) on
//! the tree snapshotter's working tree (`Sandbox::as_owner` hides the
//! difference).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{anyhow, bail};
use cache::layer::{UnpackOptions, WhiteoutMode};
use cache::store::Store;
use cache::transport::registry::RegistryClient;
use runtime::snapshot::{Choice, SnapshotterRequest};
use runtime::{Network, OutputStream, RunSpec, Sandbox, SandboxOptions, sandbox_mount_points};

use super::Layer;
use super::pull_unpack::{Streamed, fetch_and_unpack};
use super::source::{ensure_blob, layer_dir, layer_dir_ready};

/// The sandbox and snapshotter, made on first use (a build with no RUN, or
/// a fully cached one, never probes user namespaces). It is the build's
/// worker: it holds the store it works on.
pub struct Executor<'s> {
    store: &'s Store,
    root: PathBuf,
    /// This process's scratch directory in the store (`Store::scratch_dir`):
    /// locked while the build runs, so another strata process opening the
    /// store never sweeps the sandbox state or a layer tar being written.
    scratch: PathBuf,
    userns: runtime::sandbox::UsernsMode,
    isolation: runtime::sandbox::IsolationRequest,
    snapshotter: SnapshotterRequest,
    /// `-v`: say which isolation, id mapping and snapshotter were chosen.
    verbose: bool,
    state: OnceLock<Result<(Sandbox, Choice), String>>,
    /// One lock per layer being unpacked, so parallel steps on the same
    /// base wait for one unpack instead of racing.
    unpacking: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Cancels every running step when one fails, so a failed build stops
    /// promptly instead of waiting for its parallel siblings.
    cancel: runtime::sandbox::CancelToken,
    /// `--add-host`, `--shm-size`, `--ulimit` for every RUN step.
    pub step_sandbox: crate::options::StepSandbox,
    /// The command's registry client (`--insecure-registry` included).
    pub registry: Arc<crate::Registry>,
}

impl Drop for Executor<'_> {
    /// `-v` for a build that never needed a sandbox: say so, instead of
    /// leaving the promised choice unexplained.
    fn drop(&mut self) {
        if self.verbose && self.state.get().is_none() {
            eprintln!(
                "isolation: none chosen: no step needed a sandbox (no RUN step ran, or every \
                 one was cached)"
            );
        }
    }
}

/// Makes temp names unique between threads of one process.
pub(super) static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl<'s> Executor<'s> {
    pub fn new(
        store: &'s Store,
        userns: runtime::sandbox::UsernsMode,
        isolation: runtime::sandbox::IsolationRequest,
        snapshotter: SnapshotterRequest,
        verbose: u8,
    ) -> Executor<'s> {
        Executor {
            store,
            root: store.root().to_path_buf(),
            scratch: store.scratch_dir().to_path_buf(),
            userns,
            isolation,
            verbose: verbose > 0,
            snapshotter,
            state: OnceLock::new(),
            unpacking: Mutex::new(HashMap::new()),
            cancel: runtime::sandbox::CancelToken::new(),
            step_sandbox: Default::default(),
            registry: Arc::new(crate::Registry::new(&[])),
        }
    }

    /// The sandbox (its id mapping) and the snapshotter, for the other ops
    /// that work inside the build's user namespace.
    pub(super) fn get(&self) -> anyhow::Result<&(Sandbox, Choice)> {
        let r = self.state.get_or_init(|| {
            let state_dir = self.scratch.join("run");
            std::fs::create_dir_all(&state_dir)
                .map_err(|e| format!("creating {}: {e}", state_dir.display()))?;
            let sandbox = Sandbox::new(SandboxOptions {
                isolation: self.isolation,
                userns: self.userns,
                state_dir,
                cache_dir: Some(self.root.join("cache-mounts")),
            })
            .map_err(|e| e.to_string())?;
            let steps = self.root.join("snapshots/steps");
            let choice = if sandbox.isolation().is_chroot() {
                runtime::snapshot::choose_for_chroot(&steps, self.snapshotter)
            } else {
                runtime::snapshot::choose(&steps, self.snapshotter)
            }
            .map_err(|e| e.to_string())?;
            cache::store::spread_subdirs(&steps);
            if self.verbose {
                eprintln!("isolation: {}", sandbox.isolation_reason());
                eprintln!("id mapping: {}", sandbox.mapping_reason());
                eprintln!("snapshotter: {}", choice.reason);
                if let (_, Some(why)) = sandbox.proc_mode() {
                    eprintln!("/proc: {why}");
                }
            }
            Ok((sandbox, choice))
        });
        r.as_ref()
            .map_err(|e| anyhow!("cannot run RUN steps here: {e}"))
    }

    /// The registry client of this command: the environment's settings
    /// plus the `--insecure-registry` hosts.
    pub fn registry(&self) -> anyhow::Result<&RegistryClient> {
        self.registry.client()
    }

    /// Stops every step that is running now or starts later.
    /// Returns whether this call was the first to cancel (the step that
    /// failed on its own, not one stopped because of another).
    pub fn cancel_all(&self) -> bool {
        let first = !self.cancel.is_cancelled();
        self.cancel.cancel();
        first
    }

    /// Unpacks a layer into its shared directory once (temp dir + rename);
    /// a layer whose blob is not here yet is unpacked while it downloads.
    fn materialize(&self, layer: &Layer) -> anyhow::Result<PathBuf> {
        self.unpack_layer(layer).map(|(dir, _)| dir)
    }

    /// Downloads (if needed) and unpacks a base layer a RUN will need;
    /// true when it was unpacked while it downloaded.
    pub(crate) fn fetch_unpacked(&self, layer: &Layer) -> anyhow::Result<bool> {
        self.unpack_layer(layer).map(|(_, streamed)| streamed)
    }

    /// [`Self::materialize`], saying whether the layer was unpacked while
    /// it downloaded.
    fn unpack_layer(&self, layer: &Layer) -> anyhow::Result<(PathBuf, bool)> {
        let store = self.store;
        let dir = layer_dir(store, layer);
        if layer_dir_ready(&dir) {
            return Ok((dir, false));
        }
        let lock = {
            let mut m = crate::lock(&self.unpacking);
            Arc::clone(m.entry(layer.diff_id.to_string()).or_default())
        };
        let _held = crate::lock(&lock);
        if layer_dir_ready(&dir) {
            return Ok((dir, false));
        }
        let (sandbox, _) = self.get()?;
        let parent = dir
            .parent()
            .ok_or_else(|| anyhow!("bad layer dir"))?
            .to_path_buf();
        std::fs::create_dir_all(&parent)?;
        let tmp = parent.join(format!(
            ".tmp-{}-{}-{}",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed),
            layer.diff_id.hex()
        ));
        if !store.blobs().has(&layer.desc.digest) {
            let isolation = sandbox.isolation().clone();
            let streamed = fetch_and_unpack(
                self.registry()?,
                store,
                layer,
                tmp.clone(),
                dir.clone(),
                move |job| {
                    isolation
                        .as_owner(move || job.run())
                        .map_err(|e| e.to_string())
                },
            )?;
            if let Streamed::Done = streamed {
                return Ok((dir, true));
            }
        }
        ensure_blob(store, self.registry()?, layer)?;
        let blob = store.blobs().path(&layer.desc.digest);
        let (t, d) = (tmp.clone(), dir.clone());
        sandbox
            .as_owner(move || -> Result<(), String> {
                let _ = std::fs::remove_dir_all(&t);
                std::fs::create_dir_all(&t).map_err(|e| e.to_string())?;
                let f = std::fs::File::open(&blob).map_err(|e| e.to_string())?;
                let opts = UnpackOptions {
                    whiteouts: WhiteoutMode::Overlay,
                    ..Default::default()
                };
                cache::layer::unpack(f, &t, &opts).map_err(|e| e.to_string())?;
                match std::fs::rename(&t, &d) {
                    Ok(()) => Ok(()),
                    // Another build unpacked it first.
                    Err(_) if d.is_dir() => {
                        runtime::sandbox::userns::remove_tree(&t).map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                }
            })
            .map_err(|e| anyhow!("unpacking layer {}: {e}", layer.desc.digest))?;
        Ok((dir, false))
    }

    /// The layer directories of `layers` (bottom first), topmost first as
    /// snapshotters want them, each unpacked once.
    pub(super) fn lowers(&self, layers: &[Layer]) -> anyhow::Result<Vec<PathBuf>> {
        layers.iter().rev().map(|l| self.materialize(l)).collect()
    }

    /// The store this worker works on.
    pub fn store(&self) -> &'s Store {
        self.store
    }

    /// A snapshot name no other step of any process on this store uses.
    pub(super) fn snapshot_key(&self, key: &str) -> String {
        format!(
            "{}-{}-{}",
            key.trim_start_matches("sha256:"),
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Deletes a snapshot (inside the user namespace, where its files are
    /// ours); a failure only leaves a directory `strata prune` removes.
    pub(super) fn remove_snapshot(&self, key: &str) {
        if let Ok((sandbox, choice)) = self.get() {
            let _ = sandbox.as_owner(|| choice.snapshotter.remove(key));
        }
    }

    /// Runs one RUN on `layers`, streaming output lines to `output`; returns
    /// the new layer (none when nothing changed).
    #[allow(clippy::too_many_arguments)] // each is a distinct input of the step
    pub fn run(
        &self,
        layers: &[Layer],
        op: &frontend::ExecOp,
        network: Network,
        mounts: Vec<runtime::sandbox::run_mounts::RunMount>,
        key: &str,
        epoch: Option<i64>,
        output: &mut dyn FnMut(&str),
    ) -> anyhow::Result<Option<Layer>> {
        let store = self.store;
        if matches!(op.security, Some(frontend::Security::Insecure)) {
            return Err(crate::not_supported("RUN --security=insecure"));
        }
        // Kept until the step is done: the mount reads from it.
        let pipes = super::pipes::Pipes::write(store, &op.inline_files)?;
        let mut mounts = mounts;
        mounts.extend(pipes.as_ref().map(|p| p.mount()));
        let lowers = self.lowers(layers)?;
        let (sandbox, choice) = self.get()?;
        let snap = &choice.snapshotter;
        let snap_key = self.snapshot_key(key);
        let l2 = lowers.clone();
        let k2 = snap_key.clone();
        let active = sandbox
            .as_owner(|| snap.prepare(&k2, &l2))
            .map_err(|e| anyhow!("preparing the step's root filesystem: {e}"))?;
        let net = match (op.network, network) {
            (Some(frontend::NetworkMode::None), _) => Network::None,
            (None, network) => network,
            _ => Network::Host,
        };
        let mut spec = RunSpec::new(active.rootfs.clone(), op.argv.clone());
        spec.env = op.env.iter().chain(op.proxy_env.iter()).cloned().collect();
        spec.cwd = op.cwd.clone();
        spec.user = op.user.clone();
        spec.network = net;
        spec.mounts = mounts;
        spec.cancel = Some(self.cancel.clone());
        spec.extra_hosts = self.step_sandbox.extra_hosts.clone();
        spec.shm_size = self.step_sandbox.shm_size;
        spec.ulimits = self.step_sandbox.ulimits.clone();
        // The sandbox hands over whole lines (without the newline) as they
        // come, so each is shown at once.
        let outcome = sandbox.run(&spec, &mut |_s: OutputStream, line: &[u8]| {
            output(String::from_utf8_lossy(line).trim_end_matches('\r'));
        });
        let cleanup = |k: &str| {
            let _ = sandbox.as_owner(|| snap.remove(k));
        };
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                cleanup(&snap_key);
                bail!("{e}");
            }
        };
        if !outcome.exit.success() {
            cleanup(&snap_key);
            bail!("{}", super::exit::failed_process(&op.argv, outcome.exit));
        }
        let excludes: Vec<PathBuf> = sandbox_mount_points(&spec.mounts)
            .into_iter()
            .map(|m| PathBuf::from(m.path))
            .collect();
        let a2 = active.clone();
        let changes = sandbox
            .as_owner(|| snap.diff(&a2, &excludes))
            .map_err(|e| anyhow!("reading what the step changed: {e}"))?;
        if changes.is_empty() {
            cleanup(&snap_key);
            return Ok(None);
        }
        let a3 = active.clone();
        sandbox
            .as_owner(|| snap.commit(&a3, &changes).map(|_| ()))
            .map_err(|e| anyhow!("committing the step's changes: {e}"))?;
        let src = active.layer_dir();
        let layer = self.commit_dir(src.clone(), epoch);
        if let Ok(l) = &layer {
            // The tree snapshotter's parked tree names the committed
            // directory; tell it where the layer now lives.
            let shared = layer_dir(store, l);
            if layer_dir_ready(&shared) {
                snap.layer_stored_as(&src, &shared);
            }
        }
        cleanup(&snap_key);
        layer.map(Some)
    }
}
