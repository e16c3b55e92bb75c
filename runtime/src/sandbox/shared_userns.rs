//! One mapped user namespace per subordinate range, shared by every step and
//! every `run_in_userns` call of the process.
//!
//! Mapping a range needs the setuid helpers newuidmap and newgidmap: two
//! execs and a round trip between processes, about 3 ms of CPU, and a build
//! needs the mapping several times per step (prepare, run, diff, commit).
//! The namespace is created once instead, kept alive by an open
//! `/proc/<pid>/ns/user` descriptor, and joined with setns(2), which its owner
//! (the caller's uid, in the parent namespace) may do without privilege. Each
//! step still gets fresh mount/pid/ipc/uts(/net) namespaces of its own.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, OnceLock};

use crate::sandbox::idmap::IdMapping;
use crate::sandbox::sys;

type Key = (u32, u32, u32, u32, u32, u32);

fn cache() -> &'static Mutex<HashMap<Key, Arc<OwnedFd>>> {
    static CACHE: OnceLock<Mutex<HashMap<Key, Arc<OwnedFd>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The shared namespace for a range mapping, created on first use.
pub(crate) fn get(mapping: &IdMapping) -> Result<Arc<OwnedFd>, String> {
    let IdMapping::Range {
        uid,
        gid,
        subuid,
        subgid,
        ..
    } = mapping
    else {
        return Err("only subordinate ranges use a shared user namespace".into());
    };
    let key = (
        *uid,
        *gid,
        subuid.start,
        subuid.count,
        subgid.start,
        subgid.count,
    );
    // Held while creating, so that concurrent first users make only one.
    let mut map = cache()
        .lock()
        .map_err(|_| "the user-namespace cache is poisoned".to_string())?;
    if let Some(ns) = map.get(&key) {
        return Ok(ns.clone());
    }
    let ns = Arc::new(create(mapping)?);
    map.insert(key, ns.clone());
    Ok(ns)
}

fn create(mapping: &IdMapping) -> Result<OwnedFd, String> {
    let plan = mapping.plan_fresh()?;
    let pipe_err = |e: std::io::Error| format!("pipe: {e}");
    let (hold_r, hold_w) = sys::pipe().map_err(pipe_err)?;
    let (ok_r, ok_w) = sys::pipe().map_err(pipe_err)?;
    let parent = sys::getpid();
    // The child only maps itself, reports, waits and _exits.
    let pid = sys::fork();
    if pid < 0 {
        return Err(sys::errno_msg("fork"));
    }
    if pid == 0 {
        sys::die_with_parent(parent);
        drop((hold_w, ok_r));
        if plan.enter(0).is_err() {
            sys::exit_now(1);
        }
        let _ = sys::write_all(ok_w.as_raw_fd(), b"1");
        let mut b = [0u8; 1];
        let _ = sys::read_some(hold_r.as_raw_fd(), &mut b); // until the parent is done
        sys::exit_now(0);
    }
    drop((hold_r, ok_w));
    let finish = |pid| {
        sys::kill(pid, libc::SIGKILL);
        let _ = sys::wait_pid(pid);
    };
    if let Err(e) = plan.parent_side(mapping, pid) {
        finish(pid);
        return Err(e);
    }
    let mut b = [0u8; 1];
    if sys::read_some(ok_r.as_raw_fd(), &mut b).ok() != Some(1) {
        finish(pid);
        return Err("the user-namespace holder failed to enter its namespace".into());
    }
    let path = sys::cpath(format!("/proc/{pid}/ns/user"))?;
    let res = sys::open(&path, libc::O_RDONLY | libc::O_CLOEXEC)
        .map_err(|e| format!("open /proc/{pid}/ns/user: {e}"));
    drop(hold_w);
    let _ = sys::wait_pid(pid);
    res
}
