//! The crate's one audited syscall surface: every raw `libc` call and every
//! `unsafe` block of `runtime` is here, each with a `// SAFETY:` note, and
//! the rest of the crate calls these safe, thin, allocation-light wrappers
//! (or `rustix`, where it has the call: the new mount API, `pivot_root`,
//! ids). Wrappers keep libc's convention (-1 and errno) where callers report
//! errno themselves, as forked children do.
//!
//! The forked children run in a copy of a possibly multi-threaded process, so
//! they stick to plain syscalls plus glibc's fork-safe malloc; nothing here
//! takes a Rust std lock (no stdout, no env access).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The calling thread's errno as an `io::Error`.
pub fn last_os_error() -> io::Error {
    io::Error::last_os_error()
}

/// The text of an OS error without Rust's ` (os error N)` suffix, for
/// messages a user reads.
pub fn os_error_text(e: &io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

/// `"<what>: <strerror>"` for the current errno.
pub fn errno_msg(what: impl std::fmt::Display) -> String {
    format!("{what}: {}", last_os_error())
}

/// A path as a C string; paths with NUL bytes cannot reach the kernel.
pub fn cpath(p: impl AsRef<Path>) -> Result<CString, String> {
    let p = p.as_ref();
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| format!("path {} contains a NUL byte", p.display()))
}

pub fn cstr(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"))
}

/// `pipe2(O_CLOEXEC)`: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(last_os_error());
    }
    // SAFETY: pipe2 returned two fresh descriptors that we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Writes all of `buf`, retrying on EINTR and short writes.
pub fn write_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: buf is a valid slice.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// One `read(2)`, retrying on EINTR. Returns 0 at end of file.
pub fn read_some(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is a valid mutable slice.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Closes every descriptor except `keep` (and 0..=2, which exec replaces).
///
/// The intermediate sandbox process never execs, so without this it would
/// hold copies of pipes that other threads opened at the moment of fork (other
/// concurrent steps' output pipes), and their readers would never see EOF.
pub fn close_fds_except(keep: &[RawFd]) {
    let mut keep: Vec<u32> = keep.iter().filter(|&&f| f > 2).map(|&f| f as u32).collect();
    keep.sort_unstable();
    let mut from = 3u32;
    for k in keep {
        if k > from {
            // SAFETY: closing descriptors nobody in this process uses.
            unsafe { libc::syscall(libc::SYS_close_range, from, k - 1, 0) };
        }
        from = k + 1;
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, from, u32::MAX, 0) };
}

/// Framed messages from the sandbox processes to the supervisor over one pipe:
/// a tag byte, a little-endian u32 length, the payload. Each frame is written
/// with a single write below PIPE_BUF, so frames from two processes never
/// interleave.
pub mod frame {
    use super::*;

    /// Setup failed before exec; payload is the message.
    pub const ERROR: u8 = b'E';
    /// exec failed (command not found, permission); payload is the message.
    pub const EXEC: u8 = b'X';
    /// Host pid of the namespace's pid 1, 4 bytes.
    pub const PID1: u8 = b'P';
    /// Raw wait status of pid 1, 4 bytes.
    pub const STATUS: u8 = b'S';
    /// Result payload of `run_in_userns` (may be large; written in pieces).
    pub const DATA: u8 = b'D';

    const MAX_ATOMIC: usize = 4000;

    pub fn send(fd: RawFd, tag: u8, payload: &[u8]) {
        if tag != DATA && payload.len() > MAX_ATOMIC {
            return send(fd, tag, &payload[..MAX_ATOMIC]);
        }
        let mut buf = Vec::with_capacity(payload.len() + 5);
        buf.push(tag);
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(payload);
        let _ = write_all(fd, &buf);
    }

    /// Splits a complete stream into frames; a truncated tail is ignored
    /// (its writer died mid-frame).
    pub fn parse(mut data: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while data.len() >= 5 {
            let len = u32::from_le_bytes([data[1], data[2], data[3], data[4]]) as usize;
            if data.len() < 5 + len {
                break;
            }
            out.push((data[0], data[5..5 + len].to_vec()));
            data = &data[5 + len..];
        }
        out
    }
}

/// Terminates a forked child immediately: no destructors, no atexit handlers,
/// no unwinding into the caller's stack (which belongs to the parent's logic).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no shared state.
    unsafe { libc::_exit(code) }
}

/// `waitpid` retrying on EINTR; returns the raw status.
pub fn wait_pid(pid: libc::pid_t) -> io::Result<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r == pid {
            return Ok(status);
        }
        let e = last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Sets SIGKILL as the parent-death signal and exits if the parent (expected
/// to be `parent`) is already gone, closing the race between fork and prctl.
pub fn die_with_parent(parent: libc::pid_t) {
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    // SAFETY: getppid cannot fail.
    if unsafe { libc::getppid() } != parent {
        exit_now(1);
    }
}

/// Writes a small file in /proc (uid_map and friends) with one write(2), as
/// those files require.
pub fn write_proc_file(path: &std::ffi::CStr, content: &[u8]) -> Result<(), String> {
    // SAFETY: path is NUL-terminated.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(errno_msg(format!("open {}", path.to_string_lossy())));
    }
    // SAFETY: fd was just opened by us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: content is a valid slice.
    let n = unsafe { libc::write(fd.as_raw_fd(), content.as_ptr().cast(), content.len()) };
    if n != content.len() as isize {
        return Err(errno_msg(format!(
            "write {:?} to {}",
            String::from_utf8_lossy(content),
            path.to_string_lossy()
        )));
    }
    Ok(())
}

/// Reads everything available on a non-blocking fd; `true` at end of file.
pub fn read_available(fd: &OwnedFd, chunk: &mut [u8], mut sink: impl FnMut(&[u8])) -> bool {
    loop {
        match read_some(fd.as_raw_fd(), chunk) {
            Ok(0) => return true,
            Ok(n) => sink(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

pub fn set_nonblocking(fd: &OwnedFd) {
    // SAFETY: fcntl on our own descriptor.
    unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

// ---------------------------------------------------------------------------
// Mounts. Each call acts only on the caller's mount namespace; the sandbox
// makes every mount inside a private one that dies with its pid 1.

fn opt_c(s: Option<&str>) -> Result<Option<CString>, String> {
    s.map(cstr).transpose()
}

/// `mount(2)`; `None` passes a null pointer (a bind or remount has no
/// source type, most mounts no data).
pub fn mount(
    src: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), String> {
    let (s, f, d) = (opt_c(src)?, opt_c(fstype)?, opt_c(data)?);
    let t = cpath(target)?;
    if mount_raw(s.as_deref(), &t, f.as_deref(), flags, d.as_deref()) != 0 {
        return Err(errno_msg(format!(
            "mount {} on {} (type {})",
            src.unwrap_or("none"),
            target.display(),
            fstype.unwrap_or("bind")
        )));
    }
    Ok(())
}

/// `mount(2)` on C strings, for forked children that report errno
/// themselves: 0 on success, -1 with errno set.
pub fn mount_raw(
    src: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> libc::c_int {
    let p = |c: Option<&CStr>| c.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is NUL-terminated or null, and lives to the end
    // of the call.
    unsafe { libc::mount(p(src), target.as_ptr(), p(fstype), flags, p(data).cast()) }
}

/// Makes every mount of this (new) mount namespace private, so nothing done
/// here propagates back to the namespace it was copied from.
pub fn make_mounts_private() -> libc::c_int {
    mount_raw(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// `mount_setattr(path, AT_RECURSIVE, {attr_set: RDONLY})`: 0 on success,
/// -1 with errno set (older kernels lack the call).
pub fn mount_setattr_readonly(path: &CStr) -> libc::c_long {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a NUL-terminated path and a mount_attr with its exact size.
    unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    }
}

/// The `f_flag` word of `statvfs(path)` (`ST_NOSUID`, `ST_RDONLY`, ...).
pub fn statvfs_flags(path: &CStr) -> io::Result<libc::c_ulong> {
    // SAFETY: statvfs is plain data; all-zero is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a buffer of the right type.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(last_os_error());
    }
    Ok(st.f_flag)
}

/// `umount2(path, MNT_DETACH)`, best effort.
pub fn umount_detach(path: &CStr) {
    let _ = rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH);
}

/// Makes `new_root` this mount namespace's `/`: chdir there,
/// `pivot_root(".", ".")` (which stacks the old root on top of the new one),
/// detach the old root, chdir `/`.
pub fn pivot_root_to(new_root: &CStr) -> Result<(), String> {
    use rustix::mount::{UnmountFlags, unmount};
    use rustix::process::{chdir, pivot_root};
    let msg = |what: &str, e: rustix::io::Errno| format!("{what}: {}", io::Error::from(e));
    chdir(new_root).map_err(|e| msg("chdir to the new root", e))?;
    pivot_root(c".", c".").map_err(|e| msg("pivot_root", e))?;
    unmount(c".", UnmountFlags::DETACH).map_err(|e| msg("detaching the old root", e))?;
    chdir(c"/").map_err(|e| msg("chdir /", e))
}

// ---------------------------------------------------------------------------
// Processes. These keep libc's calling convention (-1 and errno on failure)
// so callers can report the error with [`errno_msg`].

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

// ---------------------------------------------------------------------------
// Namespaces and ids.

/// `unshare(2)` with `CLONE_*` flags. Called in freshly forked,
/// single-threaded children (a user namespace needs that).
pub fn unshare(flags: libc::c_int) -> libc::c_int {
    // SAFETY: unshare takes integer flags only; the process is single-threaded.
    unsafe { libc::unshare(flags) }
}

/// `setns(2)` into the namespace `fd` refers to.
pub fn setns(fd: std::os::fd::BorrowedFd<'_>, nstype: libc::c_int) -> libc::c_int {
    // SAFETY: a valid descriptor borrowed for the call.
    unsafe { libc::setns(fd.as_raw_fd(), nstype) }
}

/// `setresuid(id, id, id)`.
pub fn setresuid(id: libc::uid_t) -> libc::c_int {
    // SAFETY: integer arguments only.
    unsafe { libc::setresuid(id, id, id) }
}

/// `setresgid(id, id, id)`.
pub fn setresgid(id: libc::gid_t) -> libc::c_int {
    // SAFETY: integer arguments only.
    unsafe { libc::setresgid(id, id, id) }
}

/// `setgroups(2)`; an empty slice drops every supplementary group.
pub fn setgroups(groups: &[libc::gid_t]) -> libc::c_int {
    // SAFETY: the pointer and length describe `groups`.
    unsafe { libc::setgroups(groups.len(), groups.as_ptr()) }
}

/// `sethostname(2)`.
pub fn sethostname(name: &[u8]) -> libc::c_int {
    // SAFETY: the pointer and length describe `name`.
    unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }
}

/// `chroot(2)`.
pub fn chroot(path: &CStr) -> libc::c_int {
    // SAFETY: a NUL-terminated path.
    unsafe { libc::chroot(path.as_ptr()) }
}

/// `chdir(2)`.
pub fn chdir(path: &CStr) -> libc::c_int {
    // SAFETY: a NUL-terminated path.
    unsafe { libc::chdir(path.as_ptr()) }
}

/// `ioctl(FS_IOC_GETVERSION)`: the inode generation of `fd`'s file, where
/// the filesystem keeps one.
pub fn inode_generation(fd: std::os::fd::BorrowedFd<'_>) -> Option<u32> {
    let mut value: libc::c_int = 0;
    // SAFETY: FS_IOC_GETVERSION writes one int through the pointer, which
    // points to a live local; the descriptor is open for the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FS_IOC_GETVERSION, &mut value) };
    (rc == 0).then_some(value as u32)
}

/// `struct ifreq` with its flags member (libc's is a union).
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Sets IFF_UP on `lo` of the current network namespace.
pub fn bring_loopback_up() -> Result<(), String> {
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: socket with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(errno_msg("socket for configuring loopback"));
    }
    // SAFETY: a fresh descriptor nobody else owns (closed on drop).
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: req is an ifreq-shaped buffer, as SIOCGIFFLAGS expects.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } != 0 {
        return Err(errno_msg("SIOCGIFFLAGS lo"));
    }
    req.flags |= libc::IFF_UP as libc::c_short;
    // SAFETY: as above, for SIOCSIFFLAGS.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } != 0 {
        return Err(errno_msg("bringing up loopback (SIOCSIFFLAGS lo)"));
    }
    Ok(())
}

/// The login name of `uid` from the passwd database.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: passwd is plain old data; all-zero is a valid value.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the given sizes.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() || pw.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name points into buf, which is alive, and is NUL-terminated.
    let name = unsafe { CStr::from_ptr(pw.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// `setrlimit(2)`.
pub fn setrlimit(resource: libc::c_int, lim: &libc::rlimit) -> libc::c_int {
    // SAFETY: a valid rlimit borrowed for the call.
    unsafe { libc::setrlimit(resource as libc::__rlimit_resource_t, lim) }
}

// ---------------------------------------------------------------------------
// Files.

/// `open(2)` without `O_CREAT`, owning the result.
pub fn open(path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    if fd < 0 {
        return Err(last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `open(2)` with `O_CREAT` and a mode, owning the result.
pub fn create(path: &CStr, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated path; the mode is passed as the variadic
    // argument O_CREAT expects.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CREAT, mode as libc::c_uint) };
    if fd < 0 {
        return Err(last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `struct open_how` of openat2(2) (libc's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Opens `rel` beneath the directory `root` with `O_PATH`, resolving every
/// component (symlinks and `..` included) as if `root` were `/`
/// (`openat2` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`).
pub fn open_path_in_root(root: std::os::fd::BorrowedFd<'_>, rel: &CStr) -> io::Result<OwnedFd> {
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: a valid descriptor, a NUL-terminated path and an open_how
    // with its exact size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            rel.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `unlink(2)`.
pub fn unlink(path: &CStr) -> libc::c_int {
    // SAFETY: a NUL-terminated path.
    unsafe { libc::unlink(path.as_ptr()) }
}

/// `rmdir(2)`.
pub fn rmdir(path: &CStr) -> libc::c_int {
    // SAFETY: a NUL-terminated path.
    unsafe { libc::rmdir(path.as_ptr()) }
}

/// `mkdir(2)`.
pub fn mkdir(path: &CStr, mode: libc::mode_t) -> libc::c_int {
    // SAFETY: a NUL-terminated path.
    unsafe { libc::mkdir(path.as_ptr(), mode) }
}

/// `flock(2)` on a descriptor we hold.
pub fn flock(fd: RawFd, op: libc::c_int) -> libc::c_int {
    // SAFETY: integer arguments only; a bad fd is EBADF, not UB.
    unsafe { libc::flock(fd, op) }
}

/// `lstat(2)`.
pub fn lstat(path: &CStr) -> io::Result<libc::stat> {
    // SAFETY: stat is plain data; all-zero is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a buffer of the right type.
    if unsafe { libc::lstat(path.as_ptr(), &mut st) } != 0 {
        return Err(last_os_error());
    }
    Ok(st)
}

/// Sets atime and mtime of `path` itself (a symlink is not followed).
pub fn set_times_nofollow(path: &CStr, atime: libc::timespec, mtime: libc::timespec) {
    let ts = [atime, mtime];
    // SAFETY: a NUL-terminated path and an array of exactly two timespecs.
    unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            path.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
}

/// Whether `path` is executable with the effective ids (`faccessat` with
/// `AT_EACCESS`).
pub fn executable(path: &CStr) -> bool {
    // SAFETY: a NUL-terminated path.
    unsafe { libc::faccessat(libc::AT_FDCWD, path.as_ptr(), libc::X_OK, libc::AT_EACCESS) == 0 }
}

/// Fills `buf` from the kernel's random source.
pub fn getrandom(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: writes at most rest.len() bytes into rest.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n <= 0 {
            return Err(last_os_error());
        }
        filled += n as usize;
    }
    Ok(())
}
