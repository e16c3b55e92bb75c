//! Namespaces, ids and what a process changes about itself inside them
//! (hostname, root, limits, the loopback interface).

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::*;

/// `unshare(2)` with `CLONE_*` flags. Called in freshly forked,
/// single-threaded children (a user namespace needs that).
pub fn unshare(flags: libc::c_int) -> libc::c_int {
    // SAFETY: unshare takes integer flags only; the process is single-threaded.
    unsafe { libc::unshare(flags) }
}

/// `setns(2)` into the namespace `fd` refers to.
pub fn setns(fd: BorrowedFd<'_>, nstype: libc::c_int) -> libc::c_int {
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
