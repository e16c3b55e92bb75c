//! Per-step scratch directories (`<state_dir>/run-XXXXXX`: mount point,
//! stub layer, /etc files, rw-bind uppers) and the removal of those left
//! behind by a strata that was killed.
//!
//! Several strata processes may share one state dir, so "left behind" cannot
//! mean "exists": each run dir holds an exclusive flock on its `lock` file for
//! as long as its step runs, and only unlocked run dirs are removed. A dir
//! without a lock file is removed only when it is old (its creator may be
//! between mkdir and locking).

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::sandbox::idmap::IdMapping;
use crate::sandbox::userns::{remove_tree, remove_tree_in_userns};

const LOCK: &str = "lock";

/// A run dir whose lock is held until it is dropped (then removed).
pub(crate) struct RunDir {
    pub path: PathBuf,
    _lock: File,
}

fn try_lock(f: &File) -> bool {
    crate::sandbox::sys::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0
}

pub(crate) fn create(state_dir: &Path) -> Result<RunDir, String> {
    let path = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(state_dir)
        .map_err(|e| format!("creating a run dir in {}: {e}", state_dir.display()))?
        .keep();
    let lock = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(path.join(LOCK))
        .map_err(|e| format!("creating {}: {e}", path.join(LOCK).display()))?;
    if !try_lock(&lock) {
        return Err(format!("cannot lock {}", path.join(LOCK).display()));
    }
    Ok(RunDir { path, _lock: lock })
}

/// Deletes a tree, from inside the user namespace when the step left files
/// owned by subordinate ids.
pub(crate) fn remove(path: &Path, mapping: Option<&IdMapping>) {
    if remove_tree(path).is_err()
        && let Some(mapping) = mapping
    {
        let _ = remove_tree_in_userns(mapping, path);
    }
}

/// Removes run dirs of steps whose strata died; returns how many.
pub(crate) fn remove_stale(state_dir: &Path, mapping: Option<&IdMapping>) -> usize {
    let Ok(rd) = fs::read_dir(state_dir) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        if !e.file_name().to_string_lossy().starts_with("run-") {
            continue;
        }
        let dir = e.path();
        let stale = match File::open(dir.join(LOCK)) {
            Ok(f) => try_lock(&f), // released again when `f` drops
            Err(_) => fs::symlink_metadata(&dir)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > Duration::from_secs(60)),
        };
        if stale {
            remove(&dir, mapping);
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unlocked_run_dirs_are_stale() {
        let d = tempfile::tempdir().unwrap();
        let m = IdMapping::Single { uid: 0, gid: 0 };
        let live = create(d.path()).unwrap();
        let dead = create(d.path()).unwrap();
        let dead_path = dead.path.clone();
        drop(dead); // as if its process had been killed: lock released, dir kept
        fs::create_dir(d.path().join("run-young-nolock")).unwrap();
        fs::create_dir(d.path().join("other")).unwrap();
        assert_eq!(remove_stale(d.path(), Some(&m)), 1);
        assert!(!dead_path.exists());
        assert!(live.path.exists());
        assert!(d.path().join("run-young-nolock").exists());
        assert!(d.path().join("other").exists());
    }
}
