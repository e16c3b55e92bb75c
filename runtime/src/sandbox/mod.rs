//! Running one build step in a rootless sandbox.
//!
//! [`Sandbox::new`] detects once what the host allows and picks the
//! isolation ([`isolation`]: a user namespace, or chroot where none can be
//! made) and the id mapping; [`Sandbox::run`] then runs a [`RunSpec`] on a
//! [`RootfsSpec`]. In a user namespace: prepare the RUN mounts and
//! mount-point stubs outside the rootfs, fork the namespace chain
//! ([`namespaces`]), stream output, wait, clean up; see `namespaces.rs` for
//! the process tree and why nothing outlives the caller. In chroot
//! isolation [`chroot`] does the same without a namespace or a mount.
//!
//! ```no_run
//! use std::path::PathBuf;
//! use runtime::sandbox::{
//!     IsolationRequest, Network, OutputStream, RunSpec, Sandbox, SandboxOptions, UsernsMode,
//! };
//! use runtime::sandbox::run_mounts::{CacheMount, CacheSharing, RunMount};
//! use runtime::RootfsSpec;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let root = PathBuf::from("/home/me/.local/share/strata");
//! // Once per build: detection, id mapping choice, a probe.
//! let sandbox = Sandbox::new(SandboxOptions {
//!     isolation: IsolationRequest::Auto,
//!     userns: UsernsMode::Auto,
//!     state_dir: root.join("tmp/sandbox"),    // not on overlayfs
//!     cache_dir: Some(root.join("cache-mounts")), // RUN --mount=type=cache
//! })?;
//! eprintln!("{}\n{}", sandbox.isolation_reason(), sandbox.mapping_reason());
//!
//! // Per RUN step.
//! let rootfs = RootfsSpec::Overlay {
//!     lowers: vec![root.join("snapshots/2/fs"), root.join("snapshots/1/fs")], // topmost first
//!     upper: root.join("snapshots/3/fs"),
//!     work: root.join("snapshots/3/work"),
//! };
//! let mut spec = RunSpec::new(rootfs, vec!["/bin/sh".into(), "-c".into(), "make".into()]);
//! spec.env = vec![("PATH".into(), "/usr/bin:/bin".into())];
//! spec.cwd = "/src".into();
//! spec.user = Some("nobody".into());
//! spec.network = Network::None;
//! spec.mounts.push(RunMount::Cache(CacheMount {
//!     id: None, target: "/root/.cache".into(), sharing: CacheSharing::Locked,
//!     from: None, source: None, mode: None, uid: None, gid: None, readonly: false,
//! }));
//! let out = sandbox.run(&spec, &mut |stream, line| {
//!     let tag = if stream == OutputStream::Stderr { "err" } else { "out" };
//!     println!("[{tag}] {}", String::from_utf8_lossy(line));
//! })?;
//! if !out.exit.success() {
//!     eprintln!("step failed: {}{}", out.exit, out.hint.map(|h| format!("\n{h}")).unwrap_or_default());
//! }
//! # Ok(()) }
//! ```

pub(crate) mod chroot;
pub(crate) mod chroot_fs;
pub mod idmap;
pub(crate) mod inroot;
pub mod isolation;
pub mod limits;
pub(crate) mod mounts;
pub(crate) mod namespaces;
pub mod network;
pub(crate) mod overlay;
pub(crate) mod process;
pub(crate) mod procfs;
pub mod run_mounts;
pub(crate) mod rundir;
pub(crate) mod shared_userns;
pub mod stubs;
pub(crate) mod supervise;
pub(crate) mod sys;
pub mod user;
pub mod userns;
pub(crate) mod volatile;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::detect::HostCapabilities;
use crate::rootfs::RootfsSpec;
use crate::sandbox::userns::{PipeCodec, UsernsError};
use run_mounts::{MountContext, RunMount};

pub use idmap::{IdMapping, UsernsMode};
pub use isolation::{Isolation, IsolationRequest};
pub use network::Network;
pub use process::DEFAULT_PATH;
pub use procfs::ProcMode;
pub use stubs::{MountPoint, sandbox_mount_points};

use mounts::{MountPlan, RootPlan};
use namespaces::ChildPlan;
use process::ExecPlan;
use supervise::Stopped;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The host cannot run rootless sandboxes (the message says why and how
    /// to fix it).
    #[error("{0}")]
    Unsupported(String),
    /// The step's description is unusable (missing secret, bad mount, …).
    #[error("{0}")]
    InvalidSpec(String),
    /// Building the sandbox failed before the command started.
    #[error("sandbox setup failed: {0}")]
    Setup(String),
    /// The command could not be started: not found, not executable, unknown
    /// USER, ids not mapped.
    #[error("{0}")]
    Exec(String),
    #[error("the step timed out after {0:?} and was killed")]
    Timeout(Duration),
    #[error("the step was cancelled")]
    Cancelled,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    fn from_wait(status: i32) -> ExitStatus {
        if libc::WIFSIGNALED(status) {
            ExitStatus::Signal(libc::WTERMSIG(status))
        } else {
            ExitStatus::Code(libc::WEXITSTATUS(status))
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOutcome {
    pub exit: ExitStatus,
    /// Wall time from the start of setup to the end of teardown.
    pub duration: Duration,
    /// For a failed step in single-id mode: how to get a subordinate id
    /// range (a failing `chown`/`useradd` is the usual cause). Show it with
    /// the step's error.
    pub hint: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// A flag another thread sets to stop a running step (the whole process
/// tree is killed within ~50 ms).
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// One step to run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub rootfs: RootfsSpec,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Absolute path inside the rootfs; created when missing.
    pub cwd: String,
    /// `user[:group]`, names or numbers; `None` = root.
    pub user: Option<String>,
    pub network: Network,
    pub mounts: Vec<RunMount>,
    pub hostname: String,
    /// /etc/hosts content; `None` = localhost entries plus the hostname.
    pub hosts: Option<String>,
    /// `--add-host`: (name, address) lines added to /etc/hosts.
    pub extra_hosts: Vec<(String, String)>,
    /// Size of the /dev/shm tmpfs in bytes (`--shm-size`).
    pub shm_size: u64,
    /// Resource limits set in the step's process (`--ulimit`).
    pub ulimits: Vec<limits::Ulimit>,
    /// /etc/resolv.conf content; `None` = the host's.
    pub resolv_conf: Option<String>,
    pub timeout: Option<Duration>,
    pub cancel: Option<CancelToken>,
}

impl RunSpec {
    /// The step's /etc/hosts: `hosts`, or localhost entries plus the
    /// hostname, then the `extra_hosts`.
    pub(crate) fn hosts_text(&self) -> String {
        let mut hosts = self.hosts.clone().unwrap_or_else(|| {
            format!(
                "127.0.0.1\tlocalhost {h}\n::1\tlocalhost ip6-localhost ip6-loopback {h}\n",
                h = self.hostname
            )
        });
        for (name, addr) in &self.extra_hosts {
            hosts.push_str(&format!("{addr}\t{name}\n"));
        }
        hosts
    }

    pub fn new(rootfs: RootfsSpec, argv: Vec<String>) -> RunSpec {
        RunSpec {
            rootfs,
            argv,
            env: Vec::new(),
            cwd: "/".into(),
            user: None,
            network: Network::Host,
            mounts: Vec::new(),
            hostname: "strata".into(),
            hosts: None,
            extra_hosts: Vec::new(),
            shm_size: limits::DEFAULT_SHM_SIZE,
            ulimits: Vec::new(),
            resolv_conf: None,
            timeout: None,
            cancel: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// `--isolation`: a user namespace, chroot, or the first that works.
    pub isolation: IsolationRequest,
    /// The id mapping a user namespace uses.
    pub userns: UsernsMode,
    /// Scratch space for per-step directories (mount points, rw bind uppers).
    /// Must not be on overlayfs. Inside the store's `tmp/`, typically.
    pub state_dir: PathBuf,
    /// Where `type=cache` mounts live (in the store, never in a layer).
    pub cache_dir: Option<PathBuf>,
}

/// A configured sandbox runner; cheap to share between threads.
#[derive(Debug)]
pub struct Sandbox {
    host: HostCapabilities,
    isolation: Isolation,
    isolation_reason: String,
    mapping_reason: String,
    proc_mode: ProcMode,
    /// Why steps share strata's pid namespace, when they do.
    proc_reason: Option<String>,
    state_dir: PathBuf,
    cache_dir: Option<PathBuf>,
    durable_overlay: bool,
}

impl Sandbox {
    /// Detects the host and chooses the isolation and id mapping. A user
    /// namespace is proved with a real probe: a knob that looks
    /// restrictive (e.g. AppArmor's, with a profile that allows strata)
    /// does not stop a host where namespaces do work, and its explanation
    /// is given when they do not.
    pub fn new(opts: SandboxOptions) -> Result<Sandbox, SandboxError> {
        let host = HostCapabilities::detect();
        let choice = Isolation::choose(opts.isolation, opts.userns, &host)
            .map_err(SandboxError::Unsupported)?;
        fs::create_dir_all(&opts.state_dir).map_err(|e| {
            SandboxError::Setup(format!(
                "creating state dir {}: {e}",
                opts.state_dir.display()
            ))
        })?;
        // Scratch dirs of steps whose strata was killed (best effort).
        rundir::remove_stale(&opts.state_dir, choice.isolation.mapping());
        let (proc_mode, proc_reason) = match choice.isolation.mapping() {
            Some(m) => procfs::probe(m),
            None => (ProcMode::Fresh, None),
        };
        Ok(Sandbox {
            host,
            isolation: choice.isolation,
            isolation_reason: choice.reason,
            mapping_reason: choice.mapping_reason,
            proc_mode,
            proc_reason,
            state_dir: opts.state_dir,
            cache_dir: opts.cache_dir,
            durable_overlay: false,
        })
    }

    /// `true`: mount overlay rootfs without `volatile`, so that the kernel syncs the
    /// whole upper file system when the step's mount namespace goes away.
    /// Off by default: that syncfs flushes every dirty page of the file
    /// system (not just the step's files) and cost 5-25 ms per step here;
    /// the store fsyncs the layer blobs it keeps, and a snapshot interrupted
    /// by a crash is garbage anyway. After a crash overlayfs refuses to reuse
    /// a volatile work dir (`work/incompat/volatile`), so use a fresh one.
    pub fn set_durable_overlay(&mut self, durable: bool) {
        self.durable_overlay = durable;
    }

    /// The id mapping of user-namespace isolation; `None` in chroot
    /// isolation, where ids are real.
    pub fn mapping(&self) -> Option<&IdMapping> {
        self.isolation.mapping()
    }

    pub fn isolation(&self) -> &Isolation {
        &self.isolation
    }

    /// One sentence: which isolation and why (for verbose output).
    pub fn isolation_reason(&self) -> &str {
        &self.isolation_reason
    }

    /// One sentence: which mapping and why (for verbose output).
    pub fn mapping_reason(&self) -> &str {
        &self.mapping_reason
    }

    /// See [`Isolation::as_owner`]: `f` with full rights over the store's
    /// files (in the user namespace, or a plain call in chroot isolation).
    pub fn as_owner<T, E, F>(&self, f: F) -> Result<T, UsernsError>
    where
        T: PipeCodec,
        E: std::fmt::Display,
        F: FnOnce() -> Result<T, E>,
    {
        self.isolation.as_owner(f)
    }

    /// See [`Isolation::in_child`]: like [`Sandbox::as_owner`], always in a
    /// forked child (for a closure that mounts or chroots).
    pub fn in_child<T, E, F>(&self, f: F) -> Result<T, UsernsError>
    where
        T: PipeCodec,
        E: std::fmt::Display,
        F: FnOnce() -> Result<T, E>,
    {
        self.isolation.in_child(f)
    }

    /// In single-id mode, the sentence to show next to a failed step (its
    /// `chown` or `useradd` most likely hit an unmapped id); `None` with a
    /// subordinate range or in chroot isolation.
    pub fn single_mapping_hint(&self) -> Option<&'static str> {
        self.mapping()
            .is_some_and(|m| !m.is_range())
            .then_some(idmap::NEED_RANGE_HINT)
    }

    /// How steps get their /proc, and why not their own when they do not.
    pub fn proc_mode(&self) -> (ProcMode, Option<&str>) {
        (self.proc_mode, self.proc_reason.as_deref())
    }

    pub fn host(&self) -> &HostCapabilities {
        &self.host
    }

    /// Runs the step, calling `output` for each line (without the newline) as
    /// it arrives. A non-zero exit is `Ok` with that status; `Err` means the
    /// command did not run to completion (setup, exec, timeout, cancel).
    pub fn run(
        &self,
        spec: &RunSpec,
        output: &mut dyn FnMut(OutputStream, &[u8]),
    ) -> Result<RunOutcome, SandboxError> {
        let start = Instant::now();
        let run = rundir::create(&self.state_dir).map_err(SandboxError::Setup)?;
        let run_dir = run.path.clone();
        let res = match &self.isolation {
            Isolation::Userns(mapping) => {
                let mut dir_stubs = None;
                let res = self.run_in(spec, mapping, &run_dir, &mut dir_stubs, output);
                if let Some(s) = dir_stubs {
                    stubs::DirStubs::remove(s);
                }
                res
            }
            Isolation::Chroot(caps) => chroot::run(
                spec,
                &chroot::Env {
                    caps: *caps,
                    run_dir: &run_dir,
                    cache_dir: self.cache_dir.as_deref(),
                },
                output,
            ),
        };
        // rw bind mounts may have left files owned by subordinate ids.
        rundir::remove(&run_dir, self.mapping());
        drop(run);
        res.map(|exit| RunOutcome {
            exit,
            duration: start.elapsed(),
            hint: if exit.success() {
                None
            } else {
                self.single_mapping_hint()
            },
        })
    }

    fn run_in(
        &self,
        spec: &RunSpec,
        mapping: &IdMapping,
        run_dir: &Path,
        dir_stubs: &mut Option<stubs::DirStubs>,
        output: &mut dyn FnMut(OutputStream, &[u8]),
    ) -> Result<ExitStatus, SandboxError> {
        let invalid = SandboxError::InvalidSpec;
        let setup = SandboxError::Setup;
        if spec.argv.is_empty() {
            return Err(invalid("the step has an empty command line".into()));
        }
        let ctx = MountContext {
            cache_dir: self.cache_dir.as_deref(),
            run_dir,
            mapping: Some(mapping),
            exclusive_caches: false,
        };
        let prepared = run_mounts::prepare(&spec.mounts, &ctx).map_err(invalid)?;
        let points = sandbox_mount_points(&spec.mounts);

        let mkdir =
            |p: &Path| fs::create_dir(p).map_err(|e| setup(format!("mkdir {}: {e}", p.display())));
        let merged = run_dir.join("merged");
        let secrets_dir = run_dir.join("secrets");
        mkdir(&merged)?;
        mkdir(&secrets_dir)?;
        let root = match &spec.rootfs {
            RootfsSpec::Overlay {
                lowers,
                upper,
                work,
            } => {
                if !self.durable_overlay {
                    volatile::prepare_work_dir(work).map_err(setup)?;
                }
                let stub_layer = run_dir.join("stubs");
                mkdir(&stub_layer)?;
                stubs::build_stub_layer(&stub_layer, &points).map_err(setup)?;
                // The stub layer goes at the very bottom (see `stubs`).
                let mut all = lowers.clone();
                all.push(stub_layer);
                RootPlan::Overlay(
                    overlay::OverlaySpec::new(all, Some((upper, work)), !self.durable_overlay)
                        .map_err(invalid)?,
                )
            }
            RootfsSpec::Dir(dir) => {
                *dir_stubs = Some(stubs::create_in_dir(dir, &points).map_err(setup)?);
                RootPlan::Dir {
                    source: dir.clone(),
                }
            }
        };

        let hosts = spec.hosts_text();
        let resolv = match &spec.resolv_conf {
            Some(r) => r.clone(),
            None => fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        };
        let mut etc_files = Vec::new();
        for (name, content, target) in [
            ("hosts", hosts, "/etc/hosts"),
            ("resolv.conf", resolv, "/etc/resolv.conf"),
            ("hostname", format!("{}\n", spec.hostname), "/etc/hostname"),
        ] {
            let p = run_dir.join(name);
            fs::write(&p, content).map_err(|e| setup(format!("writing {}: {e}", p.display())))?;
            etc_files.push((p, target));
        }

        let mut env = spec.env.clone();
        env.extend(prepared.env.iter().cloned());
        let (max_uid, max_gid) = mapping.max_ids();
        let plan = ChildPlan {
            map: mapping.plan().map_err(setup)?,
            network: spec.network,
            mounts: MountPlan {
                root,
                merged,
                network: spec.network,
                proc: self.proc_mode,
                etc_files,
                shm_size: spec.shm_size,
                mounts: prepared.mounts,
                secrets_dir,
            },
            exec: ExecPlan {
                argv: spec.argv.clone(),
                env,
                cwd: spec.cwd.clone(),
                user: spec.user.clone(),
                hostname: spec.hostname.clone(),
                set_hostname: true,
                range: mapping.is_range(),
                max_uid,
                max_gid,
                stdout: -1,
                stderr: -1,
                ulimits: spec.ulimits.clone(),
            },
        };
        let spawned = namespaces::spawn(plan, mapping).map_err(setup)?;
        let sup = supervise::supervise(spawned, spec.timeout, spec.cancel.as_ref(), output);
        drop(prepared.locks);
        outcome(&sup, spec)
    }
}

/// How a supervised step ended, from its control frames.
fn outcome(sup: &supervise::Supervised, spec: &RunSpec) -> Result<ExitStatus, SandboxError> {
    let setup = SandboxError::Setup;
    match sup.stopped {
        Some(Stopped::Timeout) => {
            return Err(SandboxError::Timeout(spec.timeout.unwrap_or_default()));
        }
        Some(Stopped::Cancelled) => return Err(SandboxError::Cancelled),
        None => {}
    }
    let text = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
    if let Some((_, m)) = sup.frames.iter().find(|(t, _)| *t == sys::frame::EXEC) {
        return Err(SandboxError::Exec(text(m)));
    }
    if let Some((_, m)) = sup.frames.iter().find(|(t, _)| *t == sys::frame::ERROR) {
        return Err(setup(text(m)));
    }
    if let Some((_, s)) = sup.frames.iter().find(|(t, _)| *t == sys::frame::STATUS)
        && let Ok(b) = <[u8; 4]>::try_from(s.as_slice())
    {
        return Ok(ExitStatus::from_wait(i32::from_le_bytes(b)));
    }
    Err(setup(format!(
        "the sandbox process ended without reporting a status ({})",
        sup.c1_status
            .map(|s| ExitStatus::from_wait(s).to_string())
            .unwrap_or_else(|| "not reaped".into())
    )))
}

// The builder runs steps from several threads on one `Sandbox`.
const _: fn() = || {
    fn shareable<T: Send + Sync>() {}
    shareable::<Sandbox>();
    shareable::<RunSpec>();
};
