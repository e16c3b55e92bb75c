//! Processes: fork, wait, signals, exec, and the process attributes set
//! between fork and exec. These keep libc's convention (-1 and errno on
//! failure) so callers can report the error with [`errno_msg`].

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use super::*;

/// This process's pid.
pub fn getpid() -> libc::pid_t {
    rustix::process::getpid().as_raw_nonzero().get()
}

/// The real uid.
pub fn getuid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// The real gid.
pub fn getgid() -> u32 {
    rustix::process::getgid().as_raw()
}

/// The effective uid.
pub fn geteuid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// `fork(2)`: the child's pid in the parent, 0 in the child, -1 on failure.
///
/// The child is a copy of a possibly multi-threaded process: until it execs
/// or leaves with [`exit_now`] it may only make system calls and allocate
/// (glibc's malloc is fork-safe); it must not take a lock another thread may
/// have held (stdout, a `Mutex`, the environment). Every caller in this
/// crate keeps to that; see the module doc.
pub fn fork() -> libc::pid_t {
    // SAFETY: fork has no memory-safety preconditions of its own; the
    // child-side rule above is what every caller follows.
    unsafe { libc::fork() }
}

/// `kill(2)`: 0 on success (`sig` 0 only checks that `pid` exists).
pub fn kill(pid: libc::pid_t, sig: libc::c_int) -> libc::c_int {
    // SAFETY: kill takes no pointers.
    unsafe { libc::kill(pid, sig) }
}

/// `killpg(2)`.
pub fn killpg(group: libc::pid_t, sig: libc::c_int) -> libc::c_int {
    // SAFETY: killpg takes no pointers.
    unsafe { libc::killpg(group, sig) }
}

/// One `waitpid(2)` (no EINTR retry; see [`wait_pid`] for that).
pub fn waitpid(pid: libc::pid_t, status: &mut libc::c_int, flags: libc::c_int) -> libc::pid_t {
    // SAFETY: status is a valid out pointer for the call.
    unsafe { libc::waitpid(pid, status, flags) }
}

/// `poll(2)` over `fds`.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: libc::c_int) -> libc::c_int {
    // SAFETY: the pointer and length describe `fds`, which outlives the call.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) }
}

/// `setsid(2)`.
pub fn setsid() -> libc::pid_t {
    // SAFETY: setsid takes no arguments.
    unsafe { libc::setsid() }
}

/// `prctl(PR_SET_CHILD_SUBREAPER, 1)`: orphans below this process are
/// re-parented to it, so it can reap them.
pub fn set_child_subreaper() -> libc::c_int {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }
}

/// `prctl(PR_SET_PDEATHSIG, SIGKILL)`.
pub fn kill_with_parent() -> libc::c_int {
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    }
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`.
pub fn no_new_privs() -> libc::c_int {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }
}

/// Restores the default disposition of `sig`.
pub fn default_signal(sig: libc::c_int) {
    // SAFETY: SIG_DFL installs no handler of ours.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
}

/// Empties the signal mask of the calling thread.
pub fn unblock_all_signals() {
    // SAFETY: sigset_t is plain data; all-zero is a valid value.
    let mut empty: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid set pointers; the old mask is not asked for.
    unsafe {
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

/// Marks every descriptor from `first` up close-on-exec.
pub fn close_on_exec_from(first: u32) {
    // SAFETY: close_range with integer arguments only.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
}

/// `execve(2)`; returns only on failure (errno set).
pub fn execve(prog: &CStr, argv: &[CString], env: &[CString]) {
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut env_p: Vec<*const libc::c_char> = env.iter().map(|c| c.as_ptr()).collect();
    env_p.push(std::ptr::null());
    // SAFETY: NULL-terminated arrays of C strings that outlive the call.
    unsafe { libc::execve(prog.as_ptr(), argv_p.as_ptr(), env_p.as_ptr()) };
}

/// `dup2(2)`.
pub fn dup2(old: RawFd, new: RawFd) -> libc::c_int {
    // SAFETY: integer arguments; a bad fd is EBADF, not UB. `new` is one of
    // 0..=2, which the caller means to replace.
    unsafe { libc::dup2(old, new) }
}

/// Points descriptor 0 at `/dev/null`.
pub fn stdin_from_dev_null() -> io::Result<()> {
    let null = open(c"/dev/null", libc::O_RDONLY)?;
    if null.as_raw_fd() == 0 {
        // Descriptor 0 was closed, so /dev/null landed there: keep it open.
        let _ = std::os::fd::IntoRawFd::into_raw_fd(null);
        return Ok(());
    }
    if dup2(null.as_raw_fd(), 0) < 0 {
        return Err(last_os_error());
    }
    Ok(())
}

/// `umask(2)`.
pub fn umask(mask: libc::mode_t) {
    // SAFETY: integer argument only.
    unsafe { libc::umask(mask) };
}
