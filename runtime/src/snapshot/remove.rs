//! Deleting snapshot trees that fight back.
//!
//! Overlayfs leaves its `work/work` directory mode 000, image layers contain
//! read-only directories (0555 is common), and either makes a plain
//! `remove_dir_all` fail for their owner. Ownership is never the problem here
//! when the caller runs inside the build's user namespace, so on a permission
//! error the directories are made writable and the removal is retried.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::SnapshotError;

/// Removes `path` (a directory and everything below it, or a single file);
/// a missing `path` is fine.
pub fn remove_tree(path: &Path) -> Result<(), SnapshotError> {
    match std::fs::symlink_metadata(path) {
        Ok(md) if !md.is_dir() => {
            return std::fs::remove_file(path).map_err(|e| SnapshotError::io("remove", path, e));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(SnapshotError::io("stat", path, e)),
    }
    match std::fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
        Err(e) => return Err(SnapshotError::io("remove", path, e)),
    }
    make_dirs_writable(path)?;
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SnapshotError::io("remove", path, e)),
    }
}

/// chmod u+rwx on every directory below (and including) `dir`.
fn make_dirs_writable(dir: &Path) -> Result<(), SnapshotError> {
    let md = match std::fs::symlink_metadata(dir) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(SnapshotError::io("stat", dir, e)),
    };
    if !md.is_dir() {
        return Ok(());
    }
    let mode = md.permissions().mode();
    if mode & 0o700 != 0o700 {
        std::fs::set_permissions(
            dir,
            std::fs::Permissions::from_mode((mode | 0o700) & 0o7777),
        )
        .map_err(|e| SnapshotError::io("make writable", dir, e))?;
    }
    let rd = std::fs::read_dir(dir).map_err(|e| SnapshotError::io("list", dir, e))?;
    for item in rd {
        let item = item.map_err(|e| SnapshotError::io("list", dir, e))?;
        if item.file_type().is_ok_and(|t| t.is_dir()) {
            make_dirs_writable(&item.path())?;
        }
    }
    Ok(())
}
