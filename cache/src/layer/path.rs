//! Paths inside a layer: how a tar name is cleaned into a relative path, and
//! the order entries are written in.
//!
//! OCI says layer paths are relative. Docker and containerd strip a leading
//! `/`, so we do too, but any `..` component is refused outright rather than
//! "cleaned": a `..` has no legitimate use in a layer and cleaning it is how
//! extractors have been tricked into writing outside their root.

use std::cmp::Ordering;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::whiteout::{OPAQUE_MARKER, WHITEOUT_PREFIX};

/// Cleans a path as found in a tar header or given by a caller into a
/// relative path with no `.`/empty components and no leading `/`.
///
/// Returns `Ok(None)` for the root itself (`.`, `./`, `/`), `Err` with a
/// reason for a `..` component.
pub fn clean(raw: &Path) -> Result<Option<PathBuf>, String> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                return Err("the path has a `..` component".to_string());
            }
            Component::Prefix(_) => return Err("the path has a Windows prefix".to_string()),
        }
    }
    if out.as_os_str().is_empty() {
        Ok(None)
    } else {
        Ok(Some(out))
    }
}

/// Rank of a name inside its directory: the opaque marker first, then
/// whiteouts, then everything else, so consumers that apply entries in
/// order see deletions before the entries that replace what they deleted
/// (the OCI "SHOULD" for producers).
fn rank(name: &OsStr) -> u8 {
    let b = name.as_bytes();
    if b == OPAQUE_MARKER.as_bytes() {
        0
    } else if b.starts_with(WHITEOUT_PREFIX.as_bytes()) {
        1
    } else {
        2
    }
}

/// The order in which entries are written: component by component, names
/// compared byte-wise within a directory after the whiteout rank. This is
/// the order of a sorted depth-first walk (a directory is followed by its
/// whole subtree), which keeps every parent before its children and makes
/// the output independent of readdir order.
pub fn layer_order(a: &Path, b: &Path) -> Ordering {
    let mut ia = a.components();
    let mut ib = b.components();
    loop {
        match (ia.next(), ib.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let (x, y) = (x.as_os_str(), y.as_os_str());
                let ord = rank(x)
                    .cmp(&rank(y))
                    .then_with(|| x.as_bytes().cmp(y.as_bytes()));
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_strips_root_and_dots_and_refuses_parent() {
        assert_eq!(
            clean(Path::new("/a/./b/")).unwrap(),
            Some(PathBuf::from("a/b"))
        );
        assert_eq!(clean(Path::new("./")).unwrap(), None);
        assert_eq!(clean(Path::new("//x")).unwrap(), Some(PathBuf::from("x")));
        assert!(clean(Path::new("a/../../b")).is_err());
        assert!(clean(Path::new("../x")).is_err());
    }

    #[test]
    fn order_is_depth_first_with_whiteouts_first() {
        let mut v: Vec<PathBuf> = [
            "a.txt",
            "a/b",
            "a",
            "-x",
            "a/.wh.c",
            "a/.wh..wh..opq",
            "a/!",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        v.sort_by(|a, b| layer_order(a, b));
        let got: Vec<_> = v.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            got,
            [
                "-x",
                "a",
                "a/.wh..wh..opq",
                "a/.wh.c",
                "a/!",
                "a/b",
                "a.txt"
            ]
        );
    }
}
