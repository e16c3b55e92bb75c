//! Files: opening (confined beneath a root, too), creating, stat, times,
//! locks, and the few ioctls the crate needs.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::*;

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
pub fn open_path_in_root(root: BorrowedFd<'_>, rel: &CStr) -> io::Result<OwnedFd> {
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

/// `ioctl(FS_IOC_GETVERSION)`: the inode generation of `fd`'s file, where
/// the filesystem keeps one.
pub fn inode_generation(fd: BorrowedFd<'_>) -> Option<u32> {
    let mut value: libc::c_int = 0;
    // SAFETY: FS_IOC_GETVERSION writes one int through the pointer, which
    // points to a live local; the descriptor is open for the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FS_IOC_GETVERSION, &mut value) };
    (rc == 0).then_some(value as u32)
}
