//! Recreating a file system object with all its metadata.
//!
//! The native snapshotter copies layers into a working tree and copies a
//! step's changes into a layer; both must keep what a layer records (type,
//! content, mode with setuid/setgid/sticky, owner, xattrs, mtime), or the
//! native path would produce different images than the overlay path.
//! Order matters: `chown` clears setuid bits and file capabilities, so the
//! owner is set first, then the mode, then the xattrs, and the mtime last
//! (directories only after their children exist).

use std::ffi::OsStr;
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, Timestamps, Uid};

use super::SnapshotError;
use crate::diff::{Xattr, read_xattrs};

/// Copies the non-directory at `src` to `dst` (which must not exist), with
/// its metadata. Returns `false` for a socket, which is not copied (no layer
/// can hold one).
pub(crate) fn copy_non_dir(src: &Path, md: &Metadata, dst: &Path) -> Result<bool, SnapshotError> {
    let ft = md.file_type();
    if ft.is_file() {
        std::fs::copy(src, dst).map_err(|e| SnapshotError::io("copy file to", dst, e))?;
    } else if ft.is_symlink() {
        let target =
            std::fs::read_link(src).map_err(|e| SnapshotError::io("read symlink", src, e))?;
        std::os::unix::fs::symlink(&target, dst)
            .map_err(|e| SnapshotError::io("create symlink", dst, e))?;
    } else if ft.is_fifo() {
        rustix::fs::mknodat(CWD, dst, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
            .map_err(|e| SnapshotError::io("create fifo", dst, e.into()))?;
    } else if ft.is_char_device() || ft.is_block_device() {
        let kind = if ft.is_char_device() {
            FileType::CharacterDevice
        } else {
            FileType::BlockDevice
        };
        rustix::fs::mknodat(CWD, dst, kind, Mode::from_raw_mode(0o600), md.rdev()).map_err(
            |e| {
                let e = io::Error::from(e);
                if e.kind() == io::ErrorKind::PermissionDenied {
                    SnapshotError::Unsupported(format!(
                        "cannot create device node {} ({e}): device nodes other than whiteouts \
                         cannot be created without root; use the overlay snapshotter, which \
                         never copies them",
                        dst.display()
                    ))
                } else {
                    SnapshotError::io("create device node", dst, e)
                }
            },
        )?;
    } else {
        return Ok(false);
    }
    let xattrs = read_xattrs(src)?;
    set_metadata(dst, md, &xattrs)?;
    Ok(true)
}

/// Makes an empty directory that its owner can fill; [`set_metadata`] gives
/// it its final mode and mtime once the children are in.
pub(crate) fn make_dir(dst: &Path) -> Result<(), SnapshotError> {
    std::fs::create_dir(dst).map_err(|e| SnapshotError::io("create directory", dst, e))?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| SnapshotError::io("chmod", dst, e))
}

/// Gives `dst` the owner, mode, xattrs and mtime of `md`/`xattrs`.
pub(crate) fn set_metadata(
    dst: &Path,
    md: &Metadata,
    xattrs: &[Xattr],
) -> Result<(), SnapshotError> {
    let is_symlink = md.file_type().is_symlink();
    set_owner(dst, md.uid(), md.gid())?;
    if !is_symlink {
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(md.mode() & 0o7777))
            .map_err(|e| SnapshotError::io("chmod", dst, e))?;
    }
    for x in xattrs {
        set_xattr(dst, x, is_symlink)?;
    }
    set_mtime(dst, md.mtime(), md.mtime_nsec())
}

fn set_owner(dst: &Path, uid: u32, gid: u32) -> Result<(), SnapshotError> {
    let res = rustix::fs::chownat(
        CWD,
        dst,
        Some(Uid::from_raw_unchecked(uid)),
        Some(Gid::from_raw_unchecked(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    );
    res.map_err(|e| {
        let e = io::Error::from(e);
        if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EINVAL)) {
            SnapshotError::Unsupported(format!(
                "cannot give {} the owner {uid}:{gid} ({e}); copy layers inside the build's user \
                 namespace (a subordinate id range in /etc/subuid and /etc/subgid maps ids other \
                 than 0)",
                dst.display()
            ))
        } else {
            SnapshotError::io("chown", dst, e)
        }
    })
}

fn set_xattr(dst: &Path, x: &Xattr, is_symlink: bool) -> Result<(), SnapshotError> {
    let name = OsStr::from_bytes(&x.name);
    match xattr::set(dst, name, &x.value) {
        Ok(()) => Ok(()),
        // The kernel refuses user.* xattrs on symlinks; they cannot exist on
        // the source either, except through other namespaces.
        Err(e) if is_symlink && e.raw_os_error() == Some(libc::EPERM) => Ok(()),
        // SELinux labels are host policy, not layer content.
        Err(_) if x.name.starts_with(b"security.selinux") => Ok(()),
        Err(e) => Err(SnapshotError::Unsupported(format!(
            "cannot set xattr {} on {} ({e}); the snapshot root's file system must support the \
             xattrs the layers carry",
            String::from_utf8_lossy(&x.name),
            dst.display()
        ))),
    }
}

pub(crate) fn set_mtime(dst: &Path, secs: i64, nanos: i64) -> Result<(), SnapshotError> {
    let ts = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: nanos,
    };
    let times = Timestamps {
        last_access: ts,
        last_modification: ts,
    };
    rustix::fs::utimensat(CWD, dst, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| SnapshotError::io("set mtime of", dst, e.into()))
}

/// Copies the file or directory tree at `src` to `dst` (which must not
/// exist) with every object's metadata; symlinks are copied, never
/// followed, and sockets are left out.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> Result<(), SnapshotError> {
    let md = std::fs::symlink_metadata(src).map_err(|e| SnapshotError::io("stat", src, e))?;
    if !md.is_dir() {
        return copy_non_dir(src, &md, dst).map(|_| ());
    }
    make_dir(dst)?;
    let rd = std::fs::read_dir(src).map_err(|e| SnapshotError::io("list", src, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| SnapshotError::io("list", src, e))?;
        copy_tree(&entry.path(), &dst.join(entry.file_name()))?;
    }
    set_metadata(dst, &md, &read_xattrs(src)?)
}
