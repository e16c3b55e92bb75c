//! Resolving a path inside the build context as if the context were `/`.
//!
//! A context comes from strangers: any file in it may be a symlink, to
//! `/home/me/.ssh/id_rsa`, to `/`, or to `../../..`. Following such a link
//! on the host would copy host files into the image. BuildKit never sees
//! the host's tree: the context is sent to it with links as links, and a
//! COPY source is then resolved scoped to the context root (containerd's
//! `fs.RootPath`). strata reads the context in place, so it resolves the
//! same way, here:
//!
//! - an absolute link target means `<context>/target`;
//! - `..` never climbs above the context root (`/..` is `/`);
//! - link chains are followed up to [`MAX_HOPS`] links, then it is an
//!   error ("too many levels of symbolic links", as the kernel says);
//! - a link whose target is not in the context resolves to nothing, and
//!   the caller says "not in the build context".
//!
//! Resolution is component by component with `lstat`/`readlink`, never
//! `stat`/`canonicalize` on a path that may hold links, so it works for
//! any root, including `/` inside a chroot (`COPY --from`). The result is
//! a path with no symlink in it; whoever opens it afterwards opens the
//! final component with `O_NOFOLLOW` (the layer writer does), so a link
//! swapped in between is refused rather than followed.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::bail;

/// How many symlinks one resolution may follow, as Linux's `MAXSYMLINKS`.
pub const MAX_HOPS: usize = 40;

/// The outcome of resolving one context path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// The real path, relative to the root, slash-separated, no symlink in
    /// it (except the last component when links were not to be followed
    /// there). `""` is the root itself.
    Found(String),
    /// Nothing there. `via_link` says whether a symlink was followed on the
    /// way, so the message can say why a path that "exists" is not found.
    Missing { via_link: bool },
}

/// `root` joined with a resolved relative path (`""` is `root`).
pub fn join(root: &Path, rel: &str) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

/// Resolves `rel` (slash-separated; leading `/`, `.` and `..` allowed)
/// inside `root`. With `follow_last`, a symlink in the last component is
/// followed too (what a COPY source does); without, it is returned as is.
pub fn resolve(root: &Path, rel: &str, follow_last: bool) -> anyhow::Result<Resolved> {
    let mut todo: Vec<String> = components(rel).rev().map(str::to_owned).collect();
    let mut done: Vec<String> = Vec::new();
    let mut hops = 0usize;
    let mut via_link = false;
    while let Some(c) = todo.pop() {
        if c == ".." {
            done.pop();
            continue;
        }
        done.push(c);
        let here = done.join("/");
        let abs = root.join(&here);
        let md = match std::fs::symlink_metadata(&abs) {
            Ok(md) => md,
            Err(e) if missing(&e) => return Ok(Resolved::Missing { via_link }),
            Err(e) => bail!("cannot read {}: {}", abs.display(), crate::io_reason(&e)),
        };
        if !md.file_type().is_symlink() || (todo.is_empty() && !follow_last) {
            continue;
        }
        hops += 1;
        via_link = true;
        if hops > MAX_HOPS {
            bail!(
                "{rel:?} in {}: too many levels of symbolic links (a link loop?)",
                root.display()
            );
        }
        let target = std::fs::read_link(&abs).map_err(|e| {
            anyhow::anyhow!(
                "cannot read link {}: {}",
                abs.display(),
                crate::io_reason(&e)
            )
        })?;
        let target = target.to_string_lossy().into_owned();
        done.pop();
        if target.starts_with('/') {
            done.clear();
        }
        if target.is_empty() {
            return Ok(Resolved::Missing { via_link });
        }
        todo.extend(components(&target).rev().map(str::to_owned));
    }
    Ok(Resolved::Found(done.join("/")))
}

/// The components that matter: no empty ones, no `.`.
fn components(p: &str) -> impl DoubleEndedIterator<Item = &str> {
    p.split('/').filter(|c| !c.is_empty() && *c != ".")
}

/// Not there, or a component on the way is not a directory.
fn missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn found(root: &Path, rel: &str) -> Option<String> {
        match resolve(root, rel, true).unwrap() {
            Resolved::Found(p) => Some(p),
            Resolved::Missing { .. } => None,
        }
    }

    #[test]
    fn links_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/conf"), "in").unwrap();
        std::fs::write(r.join("a.txt"), "a").unwrap();
        symlink("/", r.join("root")).unwrap();
        symlink("/etc/passwd", r.join("pw")).unwrap();
        symlink("../../../../etc/conf", r.join("up")).unwrap();
        symlink("a.txt", r.join("l1")).unwrap();
        symlink("l1", r.join("l2")).unwrap();
        symlink("/root/etc", r.join("etcdir")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        assert_eq!(found(r, "root/etc/conf").as_deref(), Some("etc/conf"));
        assert_eq!(found(r, "root/etc/passwd"), None);
        assert_eq!(found(r, "pw"), None);
        assert_eq!(found(r, "up").as_deref(), Some("etc/conf"));
        assert_eq!(found(r, "l2").as_deref(), Some("a.txt"));
        assert_eq!(found(r, "etcdir/conf").as_deref(), Some("etc/conf"));
        assert_eq!(found(r, "/../..").as_deref(), Some(""));
        assert_eq!(
            resolve(r, "l2", false).unwrap(),
            Resolved::Found("l2".into())
        );
        let err = resolve(r, "loop1", true).unwrap_err().to_string();
        assert!(err.contains("too many levels of symbolic links"), "{err}");
        assert_eq!(
            resolve(r, "pw", true).unwrap(),
            Resolved::Missing { via_link: true }
        );
        assert_eq!(found(r, "a.txt/x"), None);
    }
}
