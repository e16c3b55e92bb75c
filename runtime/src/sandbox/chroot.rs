//! Running one step in chroot isolation: no namespace, no mount.
//!
//! ```text
//! supervisor (caller's thread)
//!   └─ reaper: PR_SET_CHILD_SUBREAPER; fork; waits for the step, then kills
//!      │       every process left (its process group, and every orphan,
//!      │       which is re-parented to the reaper) and reports the step's
//!      │       wait status; stops early when told to (cancel, timeout) or
//!      │       when the supervisor's end of the stop pipe closes (strata died)
//!      └─ step: setsid; chroot(tree); chdir; setgroups/setgid/setuid; exec
//! ```
//!
//! The root is a directory tree (the tree snapshotter's working tree);
//! /dev, /proc, the /etc files and the RUN mounts are placed into it as
//! plain files for the step and taken away afterwards ([`super::chroot_fs`]).
//! What needs a namespace or a mount fails with "not possible in chroot
//! isolation: …" rather than running differently than asked.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use crate::RootfsSpec;
use crate::sandbox::chroot_fs::{Content, Placed, mount_content};
use crate::sandbox::isolation::ChrootCaps;
use crate::sandbox::namespaces::Spawned;
use crate::sandbox::network::Network;
use crate::sandbox::process::{ExecPlan, exec_step};
use crate::sandbox::run_mounts::{self, MountContext};
use crate::sandbox::sys::{self, frame};
use crate::sandbox::{ExitStatus, OutputStream, RunSpec, SandboxError, outcome, supervise};

/// What the runner needs from the sandbox.
pub(crate) struct Env<'a> {
    pub caps: ChrootCaps,
    pub run_dir: &'a Path,
    pub cache_dir: Option<&'a Path>,
}

/// The error for something chroot isolation cannot do.
fn impossible(what: &str) -> SandboxError {
    SandboxError::Unsupported(format!("not possible in chroot isolation: {what}"))
}

/// Refuses what cannot be honoured without namespaces.
fn check(spec: &RunSpec) -> Result<&Path, SandboxError> {
    if spec.network == Network::None {
        return Err(impossible(
            "RUN --network=none (and --network none) need a network namespace, which this \
             environment does not allow; drop the option, or build where user namespaces work \
             (--isolation userns)",
        ));
    }
    if spec.shm_size != crate::sandbox::limits::DEFAULT_SHM_SIZE {
        return Err(impossible(
            "--shm-size needs a tmpfs mounted on /dev/shm; drop the option, or build where user \
             namespaces work (--isolation userns)",
        ));
    }
    if spec.argv.is_empty() {
        return Err(SandboxError::InvalidSpec(
            "the step has an empty command line".into(),
        ));
    }
    match &spec.rootfs {
        RootfsSpec::Dir(dir) => Ok(dir),
        RootfsSpec::Overlay { .. } => Err(impossible(
            "an overlay root file system needs a mount; use --snapshotter auto or native",
        )),
    }
}

/// Shown in a step's output when /dev holds plain files: a step that reads
/// more than they hold gets a short read, not an error, so it must be said.
const STAND_IN_NOTE: &str = "strata: no device nodes can be made here (mknod refused): /dev/zero \
     is a 1 GiB file of zeros and /dev/random and /dev/urandom are 1 MiB files of random \
     bytes; a read past their end ends early (run strata as container root with CAP_MKNOD \
     for real devices)";

/// Whether /dev in `tree` holds stand-in files rather than device nodes.
fn device_stand_ins(tree: &Path) -> bool {
    fs::symlink_metadata(tree.join("dev/urandom")).is_ok_and(|m| m.file_type().is_file())
}

/// Runs `spec` chrooted into its directory root.
pub(crate) fn run(
    spec: &RunSpec,
    env: &Env<'_>,
    output: &mut dyn FnMut(OutputStream, &[u8]),
) -> Result<ExitStatus, SandboxError> {
    let tree = check(spec)?;
    let ctx = MountContext {
        cache_dir: env.cache_dir,
        run_dir: env.run_dir,
        mapping: None,
        exclusive_caches: true,
    };
    let prepared = run_mounts::prepare(&spec.mounts, &ctx).map_err(SandboxError::InvalidSpec)?;
    let stash = stash_dir(tree)?;
    let mut placed = Placed::new(tree, stash).map_err(SandboxError::Setup)?;
    let res = place_all(&mut placed, spec, env, &prepared.mounts).and_then(|()| {
        if device_stand_ins(tree) {
            output(OutputStream::Stderr, STAND_IN_NOTE.as_bytes());
        }
        run_placed(spec, tree, prepared.env.clone(), output)
    });
    // Every process of the step is gone: take the placed files away.
    let restored = placed.restore().map_err(SandboxError::Setup);
    drop(prepared.locks);
    let status = res?;
    restored?;
    Ok(status)
}

/// A fresh directory beside the tree (same file system, so displaced
/// objects move by rename), named after it.
fn stash_dir(tree: &Path) -> Result<std::path::PathBuf, SandboxError> {
    let name = tree
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rootfs".into());
    let parent = tree.parent().unwrap_or(tree);
    let stash = parent.join(format!(".{name}.step-stash"));
    if fs::symlink_metadata(&stash).is_ok() {
        crate::sandbox::userns::remove_tree(&stash).map_err(|e| {
            SandboxError::Setup(format!("removing a stale {}: {e}", stash.display()))
        })?;
    }
    Ok(stash)
}

fn place_all(
    placed: &mut Placed,
    spec: &RunSpec,
    env: &Env<'_>,
    mounts: &[run_mounts::PreparedMount],
) -> Result<(), SandboxError> {
    let setup = SandboxError::Setup;
    let hosts = spec.hosts_text();
    let resolv = match &spec.resolv_conf {
        Some(r) => r.clone(),
        None => fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    };
    let hostname = format!("{}\n", spec.hostname);
    placed
        .place(
            "/dev",
            Content::Dev {
                mknod: env.caps.mknod,
            },
        )
        .map_err(setup)?;
    placed.place("/proc", Content::Proc).map_err(setup)?;
    for (target, text) in [
        ("/etc/hosts", hosts.as_bytes()),
        ("/etc/resolv.conf", resolv.as_bytes()),
        ("/etc/hostname", hostname.as_bytes()),
    ] {
        placed
            .place(target, Content::File(text, 0o644, 0, 0))
            .map_err(setup)?;
    }
    for m in mounts {
        let content = mount_content(m).map_err(SandboxError::Unsupported)?;
        let target = format!("/{}", m.target.join("/"));
        placed.place(&target, content).map_err(|e| {
            if e.starts_with("not possible") {
                SandboxError::Unsupported(e)
            } else {
                setup(e)
            }
        })?;
    }
    Ok(())
}

fn run_placed(
    spec: &RunSpec,
    tree: &Path,
    mount_env: Vec<(String, String)>,
    output: &mut dyn FnMut(OutputStream, &[u8]),
) -> Result<ExitStatus, SandboxError> {
    let mut env = spec.env.clone();
    env.extend(mount_env);
    let plan = ExecPlan {
        argv: spec.argv.clone(),
        env,
        cwd: spec.cwd.clone(),
        user: spec.user.clone(),
        hostname: spec.hostname.clone(),
        set_hostname: false,
        range: setgroups_allowed(),
        max_uid: u32::MAX,
        max_gid: u32::MAX,
        stdout: -1,
        stderr: -1,
        ulimits: spec.ulimits.clone(),
    };
    let root = sys::cpath(tree).map_err(SandboxError::Setup)?;
    let spawned = spawn(plan, &root).map_err(SandboxError::Setup)?;
    let sup = supervise::supervise(spawned, spec.timeout, spec.cancel.as_ref(), output);
    outcome(&sup, spec)
}

fn io_err(e: std::io::Error) -> String {
    format!("pipe: {e}")
}

/// Forks the reaper. On `Err` no child is left running.
fn spawn(mut plan: ExecPlan, root: &std::ffi::CStr) -> Result<Spawned, String> {
    let (out_r, out_w) = sys::pipe().map_err(io_err)?;
    let (err_r, err_w) = sys::pipe().map_err(io_err)?;
    let (ctl_r, ctl_w) = sys::pipe().map_err(io_err)?;
    let (stop_r, stop_w) = sys::pipe().map_err(io_err)?;
    plan.stdout = out_w.as_raw_fd();
    plan.stderr = err_w.as_raw_fd();
    // The child runs only `reaper` and _exits (see `sys::fork`).
    let pid = sys::fork();
    if pid < 0 {
        return Err(sys::errno_msg("fork"));
    }
    if pid == 0 {
        drop((out_r, err_r, ctl_r, stop_w));
        reaper(&plan, root, out_w, err_w, ctl_w, stop_r);
    }
    drop((out_w, err_w, ctl_w, stop_r));
    Ok(Spawned {
        c1: pid,
        stdout: out_r,
        stderr: err_r,
        ctl: ctl_r,
        stop: Some(stop_w),
    })
}

fn reaper(
    plan: &ExecPlan,
    root: &std::ffi::CStr,
    out_w: OwnedFd,
    err_w: OwnedFd,
    ctl_w: OwnedFd,
    stop_r: OwnedFd,
) -> ! {
    let ctl = ctl_w.as_raw_fd();
    sys::close_fds_except(&[
        out_w.as_raw_fd(),
        err_w.as_raw_fd(),
        ctl,
        stop_r.as_raw_fd(),
    ]);
    sys::set_child_subreaper();
    let me = sys::getpid();
    // The child runs only `step` and execs or _exits.
    let pid = sys::fork();
    if pid < 0 {
        frame::send(
            ctl,
            frame::ERROR,
            sys::errno_msg("fork of the step").as_bytes(),
        );
        sys::exit_now(1);
    }
    if pid == 0 {
        drop(stop_r);
        step(plan, root, me, ctl);
    }
    drop((out_w, err_w));
    let status = wait_or_stop(pid, &stop_r);
    kill_descendants(me, pid);
    if let Some(status) = status {
        frame::send(ctl, frame::STATUS, &status.to_le_bytes());
    }
    sys::exit_now(0)
}

/// The step's process: enters the root and execs.
fn step(plan: &ExecPlan, root: &std::ffi::CStr, reaper: libc::pid_t, ctl: i32) -> ! {
    sys::die_with_parent(reaper);
    // A session (and process group) of its own, for the reaper to kill.
    sys::setsid();
    let entered = sys::chroot(root) == 0 && sys::chdir(c"/") == 0;
    if !entered {
        let msg = sys::errno_msg(format!("chroot into {}", root.to_string_lossy()));
        frame::send(ctl, frame::ERROR, msg.as_bytes());
        sys::exit_now(1);
    }
    let (tag, msg) = exec_step(plan);
    frame::send(ctl, tag, msg.as_bytes());
    sys::exit_now(127)
}

/// Waits for the step's process, reaping orphans meanwhile; `None` when
/// told to stop first.
fn wait_or_stop(pid: libc::pid_t, stop_r: &OwnedFd) -> Option<i32> {
    loop {
        let mut p = libc::pollfd {
            fd: stop_r.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ready = sys::poll(std::slice::from_mut(&mut p), 20);
        if ready > 0 && p.revents != 0 {
            return None;
        }
        loop {
            let mut st = 0;
            let r = sys::waitpid(-1, &mut st, libc::WNOHANG | libc::__WALL);
            if r == pid {
                return Some(st);
            }
            if r <= 0 {
                break;
            }
        }
    }
}

/// Kills and reaps every process below the reaper: the step's process
/// group, and round after round the reaper's children. Orphans are
/// re-parented to the reaper (subreaper), so that reaches processes that
/// left the group too.
fn kill_descendants(me: libc::pid_t, group: libc::pid_t) {
    let mut idle = 0;
    for _ in 0..100_000 {
        sys::killpg(group, libc::SIGKILL);
        let kids = children_of(me);
        for k in &kids {
            sys::kill(*k, libc::SIGKILL);
        }
        let mut st = 0;
        let flags = if kids.is_empty() { libc::WNOHANG } else { 0 };
        let r = sys::waitpid(-1, &mut st, flags | libc::__WALL);
        if r < 0 {
            return; // ECHILD: nothing left
        }
        if r == 0 {
            // A child we cannot see in /proc: give it a moment, not forever.
            idle += 1;
            if idle > 200 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// The children of `pid`, from /proc (its `children` list, or a scan of
/// every process' parent where the kernel lacks that list).
fn children_of(pid: libc::pid_t) -> Vec<libc::pid_t> {
    let list = format!("/proc/{pid}/task/{pid}/children");
    if let Ok(text) = fs::read_to_string(list) {
        return text
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect();
    }
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<libc::pid_t>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// Whether this process may call setgroups: not in a user namespace whose
/// `setgroups` file says `deny` (a single-id map made by an unprivileged
/// user, such as `unshare -r`). There the step keeps the caller's groups,
/// as the user-namespace sandbox does with its single mapping.
fn setgroups_allowed() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").map_or(true, |s| s.trim() != "deny")
}
