//! The crate's one audited syscall surface: every raw `libc` call and every
//! `unsafe` block of `runtime` is in this module (pipes, frames and exit
//! here; [`mount`], [`process`], [`namespace`], [`file`]), each with a
//! `// SAFETY:` note, and
//! the rest of the crate calls these safe, thin, allocation-light wrappers
//! (or `rustix`, where it has the call: the new mount API, `pivot_root`,
//! ids). Wrappers keep libc's convention (-1 and errno) where callers report
//! errno themselves, as forked children do.
//!
//! The forked children run in a copy of a possibly multi-threaded process, so
//! they stick to plain syscalls plus glibc's fork-safe malloc; nothing here
//! takes a Rust std lock (no stdout, no env access).

use std::ffi::CString;
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

pub mod file;
pub mod mount;
pub mod namespace;
pub mod process;

pub use file::*;
pub use mount::*;
pub use namespace::*;
pub use process::*;
