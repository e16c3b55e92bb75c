//! The process chain of one step:
//!
//! ```text
//! supervisor (caller's thread)
//!   └─ C1: PDEATHSIG; unshare(USER|NS|PID|IPC|UTS[|NET]); id maps; setresuid(0);
//!          lo up; fork; reports pid 1's host pid and wait status; never execs
//!        └─ C2 = pid 1 of the new pid namespace: PDEATHSIG; builds the root,
//!               pivot_root, execs the step
//! ```
//!
//! CLONE_NEWPID only applies to children, hence two forks. Death propagates
//! down: if the supervisor dies, C1 gets SIGKILL (PDEATHSIG); C1's death
//! SIGKILLs C2; and when pid 1 of a pid namespace dies the kernel kills every
//! other process in it. Mounts exist only in the private mount namespace.
//!
//! Where no procfs can be mounted ([`ProcMode::BindCaller`]) there is no pid
//! namespace: C1 is then a child subreaper, C2 leads a session of its own
//! (so a timeout kills its process group), and after C2 ends C1 kills what
//! is left of the tree before it reports C2's status.

use std::os::fd::{AsRawFd, OwnedFd};

use crate::sandbox::idmap::{IdMapping, MapPlan};
use crate::sandbox::mounts::{MountPlan, build_root};
use crate::sandbox::network::{Network, bring_up_loopback};
use crate::sandbox::process::{ExecPlan, exec_step};
use crate::sandbox::procfs::{self, ProcMode};
use crate::sandbox::sys::{self, frame};

pub(crate) struct ChildPlan {
    pub map: MapPlan,
    pub network: Network,
    pub mounts: MountPlan,
    pub exec: ExecPlan,
}

/// The supervisor's ends of a started step.
pub(crate) struct Spawned {
    pub c1: libc::pid_t,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub ctl: OwnedFd,
    /// Chroot isolation: writing here tells the reaper to kill the step's
    /// processes and report (there is no pid namespace to kill at once).
    pub stop: Option<OwnedFd>,
}

fn io_err(e: std::io::Error) -> String {
    format!("pipe: {e}")
}

/// Forks the chain. On `Err` no child is left running.
pub(crate) fn spawn(mut plan: ChildPlan, mapping: &IdMapping) -> Result<Spawned, String> {
    let (out_r, out_w) = sys::pipe().map_err(io_err)?;
    let (err_r, err_w) = sys::pipe().map_err(io_err)?;
    let (ctl_r, ctl_w) = sys::pipe().map_err(io_err)?;
    plan.exec.stdout = out_w.as_raw_fd();
    plan.exec.stderr = err_w.as_raw_fd();
    let parent = sys::getpid();
    // The child runs only `c1` and _exits (see `sys::fork`).
    let pid = sys::fork();
    if pid < 0 {
        return Err(sys::errno_msg("fork"));
    }
    if pid == 0 {
        drop((out_r, err_r, ctl_r));
        c1(&plan, parent, out_w, err_w, ctl_w);
    }
    drop((out_w, err_w, ctl_w));
    let ChildPlan { map, .. } = plan;
    if let Err(e) = map.parent_side(mapping, pid) {
        sys::kill(pid, libc::SIGKILL);
        let _ = sys::wait_pid(pid);
        return Err(e);
    }
    Ok(Spawned {
        c1: pid,
        stdout: out_r,
        stderr: err_r,
        ctl: ctl_r,
        stop: None,
    })
}

fn c1(plan: &ChildPlan, parent: libc::pid_t, out_w: OwnedFd, err_w: OwnedFd, ctl_w: OwnedFd) -> ! {
    sys::die_with_parent(parent);
    let ctl = ctl_w.as_raw_fd();
    let mut keep = vec![out_w.as_raw_fd(), err_w.as_raw_fd(), ctl];
    keep.extend(plan.map.child_fds());
    sys::close_fds_except(&keep);
    let fail = |msg: String| -> ! {
        frame::send(ctl, frame::ERROR, msg.as_bytes());
        sys::exit_now(1)
    };
    let pid_ns = plan.mounts.proc.new_pid_namespace();
    let flags = libc::CLONE_NEWNS
        | if pid_ns { libc::CLONE_NEWPID } else { 0 }
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | plan.network.clone_flag();
    if let Err(e) = plan.map.enter(flags) {
        fail(e);
    }
    if plan.network == Network::None
        && let Err(e) = bring_up_loopback()
    {
        fail(e);
    }
    if !pid_ns && sys::set_child_subreaper() != 0 {
        fail(sys::errno_msg("PR_SET_CHILD_SUBREAPER"));
    }
    // C2 watches this pipe: EOF means C1 died before C2 armed PDEATHSIG.
    let (alive_r, alive_w) = match sys::pipe() {
        Ok(p) => p,
        Err(e) => fail(format!("pipe: {e}")),
    };
    // The child runs only `c2` and _exits or execs.
    let pid = sys::fork();
    if pid < 0 {
        fail(sys::errno_msg("fork of the sandbox's pid 1"));
    }
    if pid == 0 {
        drop(alive_w);
        c2(plan, alive_r, ctl);
    }
    drop(alive_r);
    drop((out_w, err_w));
    frame::send(ctl, frame::PID1, &pid.to_le_bytes());
    let waited = sys::wait_pid(pid);
    if !pid_ns {
        procfs::kill_leftovers();
    }
    match waited {
        Ok(status) => frame::send(ctl, frame::STATUS, &status.to_le_bytes()),
        Err(e) => frame::send(
            ctl,
            frame::ERROR,
            format!("waiting for the sandbox's pid 1: {e}").as_bytes(),
        ),
    }
    drop(alive_w);
    sys::exit_now(0)
}

fn c2(plan: &ChildPlan, alive_r: OwnedFd, ctl: i32) -> ! {
    sys::kill_with_parent();
    let mut pfd = libc::pollfd {
        fd: alive_r.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    if sys::poll(std::slice::from_mut(&mut pfd), 0) != 0 {
        sys::exit_now(1); // C1 is already gone
    }
    drop(alive_r);
    if plan.mounts.proc == ProcMode::BindCaller {
        sys::setsid();
    }
    if let Err(e) = build_root(&plan.mounts) {
        frame::send(ctl, frame::ERROR, e.as_bytes());
        sys::exit_now(1);
    }
    let (tag, msg) = exec_step(&plan.exec);
    frame::send(ctl, tag, msg.as_bytes());
    sys::exit_now(127)
}
