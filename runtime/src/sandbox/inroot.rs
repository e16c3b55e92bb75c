//! Path resolution confined to a root directory.
//!
//! Mount targets and stub files are named by the image (`/etc/hosts`, a RUN
//! mount's target); an image may make any component a symlink, even an
//! absolute one or one full of `..`. Resolving such a path on the host before
//! pivot_root would follow it out of the rootfs and create or mount over host
//! files. `openat2(RESOLVE_IN_ROOT)` resolves it as if the rootfs were `/`; the
//! kernel then tells us the real location through /proc/self/fd.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::sandbox::sys;

/// Normalizes an in-container path lexically: absolute, no `.`/`..`/empty
/// components (`..` at the top stays at the top, as in the kernel).
pub fn clean(path: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// Opens the directory `root` (O_PATH) to resolve paths beneath it.
pub fn open_root(root: &Path) -> Result<OwnedFd, String> {
    let c = sys::cpath(root)?;
    sys::open(&c, libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .map_err(|e| format!("open {}: {e}", root.display()))
}

/// The real host path of `rel` resolved inside `root`, or `Ok(None)` when it
/// does not exist. The last component is followed too when it is a symlink.
pub fn resolve(root: &OwnedFd, rel: &[&str]) -> Result<Option<PathBuf>, String> {
    let joined = if rel.is_empty() {
        ".".to_string()
    } else {
        rel.join("/")
    };
    let c = CString::new(joined.clone()).map_err(|_| format!("{joined:?} contains a NUL byte"))?;
    let fd = match sys::open_path_in_root(root.as_fd(), &c) {
        Ok(fd) => fd,
        Err(e) => {
            return match e.raw_os_error() {
                Some(libc::ENOENT) => Ok(None),
                Some(libc::ENOTDIR) => {
                    Err(format!("/{joined}: a path component is not a directory"))
                }
                _ => Err(format!("resolving /{joined} in the rootfs: {e}")),
            };
        }
    };
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| format!("reading /proc/self/fd link for /{joined}: {e}"))?;
    Ok(Some(link))
}

/// What `ensure` created, deepest last, so cleanup can undo it in reverse.
#[derive(Debug, Default)]
pub struct Created {
    pub paths: Vec<PathBuf>,
}

/// Makes sure `rel` exists inside `root` as a directory (`dir`) or an empty
/// file, creating missing parents as 0755 directories. Returns its real path.
pub fn ensure(
    root: &OwnedFd,
    rel: &[&str],
    dir: bool,
    created: &mut Created,
) -> Result<PathBuf, String> {
    let mut cur = resolve(root, &[])?.ok_or("the rootfs disappeared")?;
    for i in 0..rel.len() {
        let last = i + 1 == rel.len();
        match resolve(root, &rel[..=i])? {
            Some(p) => cur = p,
            None => {
                let p = cur.join(rel[i]);
                let c = sys::cpath(&p)?;
                if !last || dir {
                    if sys::mkdir(&c, 0o755) != 0 {
                        return Err(sys::errno_msg(format!("mkdir {}", p.display())));
                    }
                } else {
                    let flags = libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
                    sys::create(&c, flags, 0o644).map_err(|e| {
                        format!(
                            "creating mount point {} (a dangling symlink in the image?): {e}",
                            p.display()
                        )
                    })?;
                }
                created.paths.push(p.clone());
                cur = p;
            }
        }
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_stay_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/../../../../outside", root.join("etc/hosts")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("up")).unwrap();
        let fd = open_root(&root).unwrap();
        // The escaping symlink points at /outside *inside* the root.
        assert_eq!(resolve(&fd, &clean("/etc/hosts")).unwrap(), None);
        let mut created = Created::default();
        let p = ensure(&fd, &clean("/up/x/y"), true, &mut created).unwrap();
        assert_eq!(p, std::fs::canonicalize(&root).unwrap().join("x/y"));
        assert_eq!(created.paths.len(), 2);
        assert_eq!(clean("/a/../../b/./c/"), vec!["b", "c"]);
    }
}
