//! Running a closure as uid 0 of a fresh user namespace with the build's id
//! mapping.
//!
//! Files created by a step with a subordinate range belong to host ids
//! 100000+; the caller cannot read, chown or delete them from outside. Unpack
//! (real `chown`), diff (reading and tarring an upper dir with container ids)
//! and cleanup (`rm -rf` of a snapshot) therefore run in a forked child that
//! enters a user + mount namespace with the same mapping. The result travels
//! back over a pipe, so it must be encodable ([`PipeCodec`]).
//!
//! The closure runs in a forked copy of the (maybe multi-threaded) caller: it
//! must not take locks other threads may have held at fork time (printing to
//! stdout/stderr, a shared `Mutex`). Allocation is fine (glibc's malloc is
//! fork-safe).

use std::fmt::Display;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use crate::sandbox::idmap::{IdMapping, MapPlan};
use crate::sandbox::sys::{self, frame};

/// A value that can cross the pipe from the namespace child to the caller.
pub trait PipeCodec: Sized {
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: Vec<u8>) -> Option<Self>;
}

impl PipeCodec for () {
    fn encode(&self) -> Vec<u8> {
        Vec::new()
    }
    fn decode(b: Vec<u8>) -> Option<Self> {
        b.is_empty().then_some(())
    }
}

impl PipeCodec for Vec<u8> {
    fn encode(&self) -> Vec<u8> {
        self.clone()
    }
    fn decode(b: Vec<u8>) -> Option<Self> {
        Some(b)
    }
}

impl PipeCodec for String {
    fn encode(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
    fn decode(b: Vec<u8>) -> Option<Self> {
        String::from_utf8(b).ok()
    }
}

impl PipeCodec for u64 {
    fn encode(&self) -> Vec<u8> {
        self.to_le_bytes().to_vec()
    }
    fn decode(b: Vec<u8>) -> Option<Self> {
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }
}

impl PipeCodec for bool {
    fn encode(&self) -> Vec<u8> {
        vec![u8::from(*self)]
    }
    fn decode(b: Vec<u8>) -> Option<Self> {
        match b.as_slice() {
            [0] => Some(false),
            [1] => Some(true),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    /// The namespace could not be created or mapped.
    #[error("cannot enter a user namespace: {0}")]
    Setup(String),
    /// The closure returned an error (its Display text) or panicked.
    #[error("{0}")]
    Failed(String),
    /// The child died without a result (killed, or an undecodable payload).
    #[error("the user-namespace helper process failed: {0}")]
    Died(String),
}

/// Forks; the child unshares a user + mount namespace mapped like `mapping`,
/// becomes uid/gid 0, runs `f` and sends its result back.
pub fn run_in_userns<T, E, F>(mapping: &IdMapping, f: F) -> Result<T, UsernsError>
where
    T: PipeCodec,
    E: Display,
    F: FnOnce() -> Result<T, E>,
{
    let plan = mapping.plan().map_err(UsernsError::Setup)?;
    run_child(Some((plan, mapping)), f)
}

/// Forks; the child runs `f` with the caller's own credentials and
/// namespaces (chroot isolation, where the caller is real root) and sends
/// its result back. For a closure that changes process-wide state, such as
/// its root directory.
pub fn run_forked<T, E, F>(f: F) -> Result<T, UsernsError>
where
    T: PipeCodec,
    E: Display,
    F: FnOnce() -> Result<T, E>,
{
    run_child(None, f)
}

fn run_child<T, E, F>(ns: Option<(MapPlan, &IdMapping)>, f: F) -> Result<T, UsernsError>
where
    T: PipeCodec,
    E: Display,
    F: FnOnce() -> Result<T, E>,
{
    let (res_r, res_w) = sys::pipe().map_err(|e| UsernsError::Setup(format!("pipe: {e}")))?;
    let parent = sys::getpid();
    // The child only runs the code below and then _exits (see `sys::fork`).
    let pid = sys::fork();
    if pid < 0 {
        return Err(UsernsError::Setup(sys::errno_msg("fork")));
    }
    if pid == 0 {
        sys::die_with_parent(parent);
        drop(res_r);
        let fd = res_w.as_raw_fd();
        if let Some((plan, _)) = &ns {
            if let Err(e) = plan.enter(libc::CLONE_NEWNS) {
                frame::send(fd, frame::ERROR, e.as_bytes());
                sys::exit_now(1);
            }
            // Keeps our mounts to ourselves.
            sys::make_mounts_private();
        }
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Ok(v)) => frame::send(fd, frame::DATA, &v.encode()),
            Ok(Err(e)) => frame::send(fd, frame::ERROR, e.to_string().as_bytes()),
            Err(p) => {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                frame::send(fd, frame::ERROR, format!("panicked: {msg}").as_bytes());
            }
        }
        sys::exit_now(0);
    }
    drop(res_w);
    let map_res = match ns {
        Some((plan, mapping)) => plan.parent_side(mapping, pid),
        None => Ok(()),
    };
    let (data, status) = collect(&res_r, pid);
    if let Err(e) = map_res {
        // The child's own reason (say, unshare refused) says more than the
        // parent's "exited before its ids were mapped".
        let child = frame::parse(&data)
            .into_iter()
            .find(|(t, _)| *t == frame::ERROR)
            .map(|(_, p)| String::from_utf8_lossy(&p).into_owned());
        return Err(UsernsError::Setup(child.unwrap_or(e)));
    }
    for (tag, payload) in frame::parse(&data) {
        match tag {
            frame::DATA => {
                return T::decode(payload)
                    .ok_or_else(|| UsernsError::Died("undecodable result".into()));
            }
            frame::ERROR => {
                return Err(UsernsError::Failed(
                    String::from_utf8_lossy(&payload).into(),
                ));
            }
            _ => {}
        }
    }
    Err(UsernsError::Died(match status {
        Ok(s) if libc::WIFSIGNALED(s) => format!("killed by signal {}", libc::WTERMSIG(s)),
        Ok(s) => format!("exited with status {} and no result", libc::WEXITSTATUS(s)),
        Err(e) => format!("waitpid: {e}"),
    }))
}

/// Reads the child's result frame and reaps it. Stops at the first complete
/// frame or when the child has exited, not at end-of-file: a process another
/// thread forked at the same moment may hold a copy of the pipe's write end.
fn collect(res_r: &OwnedFd, pid: libc::pid_t) -> (Vec<u8>, std::io::Result<libc::c_int>) {
    sys::set_nonblocking(res_r);
    let mut data = Vec::new();
    let mut chunk = vec![0u8; 65536];
    let mut status = None;
    loop {
        let mut p = libc::pollfd {
            fd: res_r.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        sys::poll(std::slice::from_mut(&mut p), 200);
        let eof = sys::read_available(res_r, &mut chunk, |d| data.extend_from_slice(d));
        let done = frame::parse(&data)
            .iter()
            .any(|(t, _)| *t == frame::DATA || *t == frame::ERROR);
        if done || eof || status.is_some() {
            break;
        }
        let mut st = 0;
        if sys::waitpid(pid, &mut st, libc::WNOHANG | libc::__WALL) == pid {
            status = Some(st); // one more pass drains what it wrote
        }
    }
    let status = match status {
        Some(s) => Ok(s),
        None => sys::wait_pid(pid),
    };
    (data, status)
}

/// Deletes `path` recursively from inside the user namespace, where files
/// owned by subordinate ids (and overlay's mode-000 `work/work`) are ours.
pub fn remove_tree_in_userns(mapping: &IdMapping, path: &Path) -> Result<(), UsernsError> {
    run_in_userns(mapping, || remove_tree(path)).map_err(|e| match e {
        UsernsError::Failed(m) => UsernsError::Failed(format!("removing {}: {m}", path.display())),
        other => other,
    })
}

/// `rm -rf` that first makes directories searchable and writable.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return fs::remove_file(path);
    }
    if meta.permissions().mode() & 0o700 != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    }
    for entry in fs::read_dir(path)? {
        remove_tree(&entry?.path())?;
    }
    fs::remove_dir(path)
}
