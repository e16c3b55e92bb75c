//! File locks that let several strata processes share one store root.
//!
//! There is no daemon to serialize access, so coordination is done with
//! `flock(2)` locks (through rustix: std `File::lock` needs Rust 1.89, above
//! our MSRV) on small files under `<root>/locks/`.
//! A lock is released by the kernel when its process dies, which is what makes
//! the store safe after a SIGKILL: a dead process never holds a lock.
//!
//! Each process also gets its own scratch directory under `<root>/tmp/`,
//! guarded by a lock file. Whatever sits in `tmp/` with an unlocked guard is
//! left over from a killed process and is removed when a store is opened.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{FlockOperation, flock};

use crate::error::{IoContext, Result};

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
    path: PathBuf,
}

impl LockGuard {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn open_lock_file(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).ctx("create lock directory", dir)?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .ctx("open lock file", path)
}

/// Waits for and takes an exclusive lock on `path` (created if missing).
pub fn lock_exclusive(path: &Path) -> Result<LockGuard> {
    let file = open_lock_file(path)?;
    flock(&file, FlockOperation::LockExclusive)
        .map_err(std::io::Error::from)
        .ctx("lock", path)?;
    Ok(LockGuard {
        _file: file,
        path: path.to_path_buf(),
    })
}

/// Waits for and takes a shared lock on `path` (created if missing).
pub fn lock_shared(path: &Path) -> Result<LockGuard> {
    let file = open_lock_file(path)?;
    flock(&file, FlockOperation::LockShared)
        .map_err(std::io::Error::from)
        .ctx("lock", path)?;
    Ok(LockGuard {
        _file: file,
        path: path.to_path_buf(),
    })
}

/// Takes an exclusive lock on `path` if nobody holds any lock on it.
pub fn try_lock_exclusive(path: &Path) -> Result<Option<LockGuard>> {
    let file = open_lock_file(path)?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(LockGuard {
            _file: file,
            path: path.to_path_buf(),
        })),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(std::io::Error::from(e)).ctx("lock", path),
    }
}

/// This process's scratch directory `<root>/tmp/<name>/`, alive while the
/// guard is: its lock file `<root>/locks/tmp-<name>.lock` stays locked.
#[derive(Debug)]
pub struct ScratchDir {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: LockGuard,
}

impl ScratchDir {
    /// Creates a fresh scratch directory under `tmp_root`, guarded by a lock
    /// in `locks_dir`. The lock is taken before the directory exists, so a
    /// cleaner never sees the directory unguarded.
    pub fn create(tmp_root: &Path, locks_dir: &Path) -> Result<ScratchDir> {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut n = 0u32;
        loop {
            let name = format!("{}-{nanos:x}-{n}", std::process::id());
            let lock_path = locks_dir.join(format!("tmp-{name}.lock"));
            let dir = tmp_root.join(&name);
            fs::create_dir_all(locks_dir).ctx("create lock directory", locks_dir)?;
            let file = match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&lock_path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    n += 1;
                    continue;
                }
                Err(e) => return Err(e).ctx("create lock file", &lock_path),
            };
            flock(&file, FlockOperation::LockExclusive)
                .map_err(std::io::Error::from)
                .ctx("lock", &lock_path)?;
            fs::create_dir_all(&dir).ctx("create scratch directory", &dir)?;
            return Ok(ScratchDir {
                dir,
                lock_path: lock_path.clone(),
                _lock: LockGuard {
                    _file: file,
                    path: lock_path,
                },
            });
        }
    }

    /// The directory; everything in it is this process's own.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Best effort: a leftover is removed by the next clean_stale_scratch.
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(&self.lock_path);
    }
}

/// Removes scratch directories whose owner is gone (its lock file is not
/// locked, or missing). Returns how many were removed. Live processes'
/// directories are never touched.
pub fn clean_stale_scratch(tmp_root: &Path, locks_dir: &Path) -> Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(tmp_root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).ctx("read", tmp_root),
    };
    for entry in entries {
        let entry = entry.ctx("read", tmp_root)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        let lock_path = locks_dir.join(format!("tmp-{name}.lock"));
        let guard = if lock_path.exists() {
            match try_lock_exclusive(&lock_path)? {
                Some(g) => Some(g),
                None => continue, // owner is alive
            }
        } else {
            None
        };
        let res = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match res {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).ctx("remove stale scratch", &path),
        }
        if guard.is_some() {
            let _ = fs::remove_file(&lock_path);
        }
    }
    // Lock files of scratch dirs that no longer exist: only old ones, so a
    // process between creating its lock file and locking it is never hit.
    if let Ok(entries) = fs::read_dir(locks_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("tmp-")) else {
                continue;
            };
            let Some(stem) = rest.strip_suffix(".lock") else {
                continue;
            };
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(60));
            if old && !tmp_root.join(stem).exists() {
                let p = entry.path();
                if let Some(_g) = try_lock_exclusive(&p)? {
                    let _ = fs::remove_file(&p);
                }
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_scratch_is_removed_live_scratch_is_kept() {
        let t = tempfile::tempdir().expect("tempdir");
        let (tmp, locks) = (t.path().join("tmp"), t.path().join("locks"));
        let live = ScratchDir::create(&tmp, &locks).expect("create");
        fs::write(live.path().join("f"), b"x").expect("write");
        // A dead process's leftovers: a dir whose lock file nobody holds.
        fs::create_dir_all(tmp.join("dead-1")).expect("mkdir");
        fs::write(locks.join("tmp-dead-1.lock"), b"").expect("write");
        // And one with no lock file at all.
        fs::write(tmp.join("orphan"), b"junk").expect("write");
        let n = clean_stale_scratch(&tmp, &locks).expect("clean");
        assert_eq!(n, 2);
        assert!(live.path().join("f").exists());
        assert!(!tmp.join("dead-1").exists());
        assert!(!tmp.join("orphan").exists());
        let p = live.path().to_path_buf();
        drop(live);
        assert!(!p.exists());
    }

    #[test]
    fn exclusive_lock_excludes() {
        let t = tempfile::tempdir().expect("tempdir");
        let p = t.path().join("l.lock");
        let g = lock_shared(&p).expect("shared");
        assert!(try_lock_exclusive(&p).expect("try").is_none());
        drop(g);
        assert!(try_lock_exclusive(&p).expect("try").is_some());
    }
}
