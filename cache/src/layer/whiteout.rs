//! OCI whiteouts (image-spec `layer.md`): a file `.wh.<name>` deletes
//! `<name>` from the layers below, and `.wh..wh..opq` in a directory hides
//! everything the layers below had in it. In an overlayfs upper directory the
//! same facts are a 0/0 character device and the `overlay.opaque` xattr;
//! with the `userxattr` mount option (the rootless case) that xattr lives in
//! the `user.` namespace.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Prefix of a whiteout file name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// The xattr overlayfs (mounted with `userxattr`) reads to mark a directory
/// opaque.
pub const OVERLAY_OPAQUE_XATTR: &str = "user.overlay.opaque";
/// A whiteout where a 0/0 character device cannot be made (on an overlayfs
/// root, which refuses to create one): an empty regular file carrying this
/// xattr, as overlayfs itself reads since Linux 6.7.
pub const OVERLAY_WHITEOUT_XATTR: &str = "user.overlay.whiteout";

/// What a tar name means with respect to whiteouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhiteoutName {
    /// An ordinary entry.
    None,
    /// `dir/.wh.name`: delete `dir/name` (the path carried here).
    Remove(PathBuf),
    /// `dir/.wh..wh..opq`: `dir` (carried here, empty for the root) is opaque.
    Opaque(PathBuf),
}

/// Classifies a cleaned layer path.
pub fn classify(path: &Path) -> WhiteoutName {
    let Some(name) = path.file_name() else {
        return WhiteoutName::None;
    };
    let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let b = name.as_bytes();
    if b == OPAQUE_MARKER.as_bytes() {
        WhiteoutName::Opaque(parent)
    } else if let Some(rest) = b.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        WhiteoutName::Remove(parent.join(OsStr::from_bytes(rest)))
    } else {
        WhiteoutName::None
    }
}

/// The tar name of the whiteout that deletes `target`.
pub fn whiteout_name(target: &Path) -> Option<PathBuf> {
    let name = target.file_name()?;
    let mut wh = OsString::from(WHITEOUT_PREFIX).into_vec();
    wh.extend_from_slice(name.as_bytes());
    Some(
        target
            .parent()
            .unwrap_or(Path::new(""))
            .join(OsString::from_vec(wh)),
    )
}

/// The tar name of the opaque marker of directory `dir` (empty = the root).
pub fn opaque_name(dir: &Path) -> PathBuf {
    dir.join(OPAQUE_MARKER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_classify() {
        let wh = whiteout_name(Path::new("etc/passwd")).unwrap();
        assert_eq!(wh, PathBuf::from("etc/.wh.passwd"));
        assert_eq!(
            classify(&wh),
            WhiteoutName::Remove(PathBuf::from("etc/passwd"))
        );
        let opq = opaque_name(Path::new("var/lib"));
        assert_eq!(
            classify(&opq),
            WhiteoutName::Opaque(PathBuf::from("var/lib"))
        );
        assert_eq!(
            classify(Path::new(".wh..wh..opq")),
            WhiteoutName::Opaque(PathBuf::new())
        );
        assert_eq!(classify(Path::new("etc/wh.x")), WhiteoutName::None);
        assert_eq!(whiteout_name(Path::new("")), None);
    }
}
