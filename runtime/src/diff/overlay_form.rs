//! The on-disk form overlayfs gives a layer, read and written.
//!
//! Every snapshot directory strata keeps (an overlay upper dir, a committed
//! native layer, an unpacked image layer) uses this one form, so any of them
//! can be a `lowerdir` of a kernel overlay mount and any of them can be read
//! back by [`super::LowerView`]:
//!
//! * a deleted path is a character device 0/0 (what overlayfs creates; an
//!   unprivileged user may create it since Linux 5.8), or, as overlayfs has
//!   read since 6.7, an empty regular file carrying `user.overlay.whiteout`;
//! * a directory that hides everything below it in lower layers carries
//!   `user.overlay.opaque = "y"` (`"x"` means "holds xattr whiteouts", not
//!   opaque).
//!
//! Only the `user.` namespace is used: with the `userxattr` mount option that
//! is what an unprivileged overlay reads and writes, and `trusted.overlay.*`
//! is out of reach without root.

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::DiffError;

pub(crate) const OPAQUE_XATTR: &str = "user.overlay.opaque";
pub(crate) const WHITEOUT_XATTR: &str = "user.overlay.whiteout";
/// Set by overlayfs only with `redirect_dir=on` / `metacopy=on`, which
/// `userxattr` mounts never enable; a diff of an upper that has them would be
/// wrong (a renamed directory, a file whose data is still in a lower layer).
const REDIRECT_XATTR: &str = "user.overlay.redirect";
const METACOPY_XATTR: &str = "user.overlay.metacopy";

/// Xattr names that describe overlayfs' own bookkeeping, never file content.
pub(crate) fn is_internal_xattr(name: &[u8]) -> bool {
    name.starts_with(b"user.overlay.") || name.starts_with(b"trusted.")
}

/// Whether `path` (with its `lstat` metadata) marks a deletion.
pub(crate) fn is_whiteout(path: &Path, md: &Metadata) -> Result<bool, DiffError> {
    let ft = md.file_type();
    if ft.is_char_device() {
        return Ok(md.rdev() == 0);
    }
    if ft.is_file() && md.len() == 0 {
        return Ok(get_xattr(path, WHITEOUT_XATTR)?.is_some());
    }
    Ok(false)
}

/// Whether the directory `path` hides the lower layers' directory of the same
/// path.
pub(crate) fn is_opaque_dir(path: &Path) -> Result<bool, DiffError> {
    Ok(get_xattr(path, OPAQUE_XATTR)?.as_deref() == Some(b"y".as_slice()))
}

/// Refuses upper entries that use overlay features a diff cannot translate.
pub(crate) fn check_translatable(path: &Path) -> Result<(), DiffError> {
    for (name, what) in [
        (REDIRECT_XATTR, "a renamed directory (redirect_dir)"),
        (METACOPY_XATTR, "a metadata-only copy-up (metacopy)"),
    ] {
        if get_xattr(path, name)?.is_some() {
            return Err(DiffError::Unsupported {
                path: path.to_path_buf(),
                what: format!(
                    "the overlay upper holds {what}, which a layer diff cannot express; mount the \
                     overlay with `userxattr` (it disables both)"
                ),
            });
        }
    }
    Ok(())
}

/// Refuses a real file whose name an OCI layer reserves for whiteouts
/// (`.wh.<name>`, `.wh..wh..opq`): written into a layer it would be read back
/// as a deletion.
pub(crate) fn check_name(path: &Path) -> Result<(), DiffError> {
    use std::os::unix::ffi::OsStrExt;
    if path
        .file_name()
        .is_some_and(|n| n.as_bytes().starts_with(b".wh."))
    {
        return Err(DiffError::Unsupported {
            path: path.to_path_buf(),
            what: "file names starting with `.wh.` are reserved for whiteouts in OCI layers and                    cannot be stored in an image; rename the file in the build step"
                .into(),
        });
    }
    Ok(())
}

/// Creates a whiteout at `path` (which must not exist): a 0/0 character
/// device, or where that is refused (overlayfs never lets one be created on
/// itself, as on a container's root) an empty file marked
/// `user.overlay.whiteout`.
pub(crate) fn make_whiteout(path: &Path) -> Result<(), DiffError> {
    use rustix::fs::{CWD, FileType, Mode, makedev, mknodat};
    let made = mknodat(
        CWD,
        path,
        FileType::CharacterDevice,
        Mode::empty(),
        makedev(0, 0),
    );
    let e = match made {
        Ok(()) => return Ok(()),
        Err(e) => io::Error::from(e),
    };
    if e.kind() != io::ErrorKind::PermissionDenied {
        return Err(DiffError::io("create whiteout", path, e));
    }
    let marked =
        std::fs::File::create_new(path).and_then(|_| xattr::set(path, WHITEOUT_XATTR, b"y"));
    marked.map_err(|x| {
        let _ = std::fs::remove_file(path);
        DiffError::Unsupported {
            path: path.to_path_buf(),
            what: format!(
                "cannot create a whiteout: neither a character device 0/0 ({e}) nor a file marked \
                 {WHITEOUT_XATTR} ({x}); the store's file system must allow one of them"
            ),
        }
    })
}

/// Marks the directory `path` opaque. `Ok(false)` when the file system has no
/// user xattrs, so the caller can whiteout each lower child instead.
pub(crate) fn make_opaque(path: &Path) -> Result<bool, DiffError> {
    match xattr::set(path, OPAQUE_XATTR, b"y") {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(false),
        Err(e) => Err(DiffError::io("mark opaque", path, e)),
    }
}

/// `lgetxattr`, with "no such attribute" and "no xattr support" as `None`.
pub(crate) fn get_xattr(path: &Path, name: &str) -> Result<Option<Vec<u8>>, DiffError> {
    match xattr::get(path, name) {
        Ok(v) => Ok(v),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(None),
        Err(e) => Err(DiffError::io("read xattr of", path, e)),
    }
}
