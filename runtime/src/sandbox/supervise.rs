//! The caller's side of a running step: stream stdout/stderr line by line,
//! collect the control frames, enforce the timeout and the cancel flag by
//! killing the tree, and reap the intermediate process.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::sandbox::namespaces::Spawned;
use crate::sandbox::sys::{self, frame};
use crate::sandbox::{CancelToken, OutputStream};

/// Longest line handed to the callback; longer ones are split.
const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stopped {
    Timeout,
    Cancelled,
}

pub(crate) struct Supervised {
    pub frames: Vec<(u8, Vec<u8>)>,
    pub stopped: Option<Stopped>,
    /// Wait status of the intermediate process.
    pub c1_status: Option<i32>,
}

struct Stream {
    fd: Option<OwnedFd>,
    kind: OutputStream,
    buf: Vec<u8>,
}

impl Stream {
    fn emit(&mut self, out: &mut dyn FnMut(OutputStream, &[u8]), eof: bool) {
        let mut start = 0;
        while let Some(i) = self.buf[start..].iter().position(|&b| b == b'\n') {
            out(self.kind, &self.buf[start..start + i]);
            start += i + 1;
        }
        while self.buf.len() - start > MAX_LINE {
            out(self.kind, &self.buf[start..start + MAX_LINE]);
            start += MAX_LINE;
        }
        if eof && start < self.buf.len() {
            out(self.kind, &self.buf[start..]);
            start = self.buf.len();
        }
        self.buf.drain(..start);
    }
}

/// Streams output until the step is over. "Over" is pid 1's status frame (all
/// of the sandbox's processes are dead by then) or the intermediate process'
/// exit, not end-of-file: a process forked at the same moment by another
/// thread (a concurrent `run_in_userns`) may hold copies of our pipes' write
/// ends for a while, and the step must not wait for it.
pub(crate) fn supervise(
    sp: Spawned,
    timeout: Option<Duration>,
    cancel: Option<&CancelToken>,
    output: &mut dyn FnMut(OutputStream, &[u8]),
) -> Supervised {
    /// Upper bound between checks of the intermediate process.
    const CHECK_MS: i32 = 200;
    let deadline = timeout.map(|t| Instant::now() + t);
    for fd in [&sp.stdout, &sp.stderr, &sp.ctl] {
        sys::set_nonblocking(fd);
    }
    let mut streams = [
        Stream {
            fd: Some(sp.stdout),
            kind: OutputStream::Stdout,
            buf: Vec::new(),
        },
        Stream {
            fd: Some(sp.stderr),
            kind: OutputStream::Stderr,
            buf: Vec::new(),
        },
    ];
    let mut ctl = Some(sp.ctl);
    let stop_fd = sp.stop;
    let mut ctl_buf = Vec::new();
    let mut stopped = None;
    let mut c1_status = None;
    let mut chunk = vec![0u8; 65536];
    loop {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut who: Vec<usize> = Vec::new();
        for (i, s) in streams.iter().enumerate() {
            if let Some(fd) = &s.fd {
                fds.push(libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
                who.push(i);
            }
        }
        if let Some(fd) = &ctl {
            fds.push(libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
            who.push(2);
        }
        let mut wait_ms: i32 = CHECK_MS;
        if stopped.is_none() {
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(Instant::now());
                wait_ms = wait_ms.min(left.as_millis().min(i32::MAX as u128) as i32);
            }
            if cancel.is_some() {
                wait_ms = wait_ms.min(50);
            }
        }
        if !fds.is_empty() {
            sys::poll(&mut fds, wait_ms);
        }
        if stopped.is_none() {
            let why = if cancel.is_some_and(CancelToken::is_cancelled) {
                Some(Stopped::Cancelled)
            } else if deadline.is_some_and(|d| Instant::now() >= d) {
                Some(Stopped::Timeout)
            } else {
                None
            };
            if let Some(why) = why {
                stopped = Some(why);
                match &stop_fd {
                    // The reaper kills every process of the step and reports.
                    Some(fd) => {
                        let _ = sys::write_all(fd.as_raw_fd(), b"x");
                    }
                    None => kill_tree(sp.c1, &ctl_buf),
                }
            }
        }
        for (p, &w) in fds.iter().zip(&who) {
            if p.revents != 0 {
                pump(w, &mut streams, &mut ctl, &mut ctl_buf, &mut chunk, output);
            }
        }
        let status_seen = frame::parse(&ctl_buf)
            .iter()
            .any(|(t, _)| *t == frame::STATUS);
        if !status_seen && c1_status.is_none() {
            let mut st = 0;
            if sys::waitpid(sp.c1, &mut st, libc::WNOHANG | libc::__WALL) == sp.c1 {
                c1_status = Some(st);
            }
        }
        let all_closed = fds.is_empty();
        if status_seen || c1_status.is_some() || all_closed {
            // Nothing in the sandbox can write any more: take what is buffered.
            for w in 0..3 {
                pump(w, &mut streams, &mut ctl, &mut ctl_buf, &mut chunk, output);
            }
            for s in streams.iter_mut() {
                s.emit(output, true);
            }
            break;
        }
    }
    if c1_status.is_none() {
        c1_status = sys::wait_pid(sp.c1).ok();
    }
    Supervised {
        frames: frame::parse(&ctl_buf),
        stopped,
        c1_status,
    }
}

/// Moves what is readable on stream `w` (0 stdout, 1 stderr, 2 control) to
/// its consumer, closing it at end of file.
fn pump(
    w: usize,
    streams: &mut [Stream; 2],
    ctl: &mut Option<OwnedFd>,
    ctl_buf: &mut Vec<u8>,
    chunk: &mut [u8],
    output: &mut dyn FnMut(OutputStream, &[u8]),
) {
    if w == 2 {
        if let Some(fd) = ctl.as_ref()
            && sys::read_available(fd, chunk, |d| ctl_buf.extend_from_slice(d))
        {
            *ctl = None;
        }
        return;
    }
    let s = &mut streams[w];
    let Some(fd) = s.fd.as_ref() else { return };
    let mut buf = std::mem::take(&mut s.buf);
    let eof = sys::read_available(fd, chunk, |d| buf.extend_from_slice(d));
    s.buf = buf;
    s.emit(output, eof);
    if eof {
        s.fd = None;
    }
}

/// Kills pid 1 of the namespace (the kernel then kills the rest) and its
/// process group (without a pid namespace the step leads a session of its
/// own, see `namespaces.rs`); the intermediate process then reaps it, sweeps
/// up what is left and reports. pid 1 is only signalled while it is known to
/// be unreaped (its pid reported, no status yet), so a recycled pid is never
/// hit (nor a recycled group: a pid in use is never another group's id).
/// Before pid 1 is reported, the intermediate process itself is killed,
/// and pid 1 dies with it (PDEATHSIG).
fn kill_tree(c1: libc::pid_t, ctl_so_far: &[u8]) {
    let frames = frame::parse(ctl_so_far);
    let reaped = frames.iter().any(|(t, _)| *t == frame::STATUS);
    if !reaped
        && let Some((_, p)) = frames.iter().find(|(t, _)| *t == frame::PID1)
        && let Ok(b) = <[u8; 4]>::try_from(p.as_slice())
    {
        let pid1 = i32::from_le_bytes(b);
        // A process (group) of ours.
        sys::kill(pid1, libc::SIGKILL);
        sys::kill(-pid1, libc::SIGKILL);
        return;
    }
    sys::kill(c1, libc::SIGKILL);
}
