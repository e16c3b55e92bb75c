//! Materializing the merged view of a layer stack as one plain directory.
//!
//! The native snapshotter's working tree is exactly this, and the overlay
//! snapshotter uses it to squash the bottom of a stack too deep for one
//! mount. Whiteouts and opaque directories are applied (the result has
//! neither), every object is copied with its metadata, never hardlinked to
//! the layer (a step writing to the file in place would corrupt the layer),
//! and names that share an inode within one layer share one in the copy.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::SnapshotError;
use super::copy::{copy_non_dir, make_dir, set_metadata};
use crate::diff::{LowerView, read_xattrs};

/// Creates `dst` (which must not exist) holding the merged view of `view`;
/// its root takes the topmost layer root's metadata (0755 for no layers).
pub(crate) fn merge_into(view: &LowerView, dst: &Path) -> Result<(), SnapshotError> {
    make_dir(dst)?;
    let mut merge = Merge {
        view,
        links: HashMap::new(),
    };
    merge.dir(Path::new(""), dst)?;
    match view.lookup(Path::new(""))? {
        Some(top) => set_metadata(dst, &top.metadata, &read_xattrs(&top.path)?),
        None => std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| SnapshotError::io("chmod", dst, e)),
    }
}

struct Merge<'a> {
    view: &'a LowerView,
    /// Source inode → the first copy made of it, to keep hardlinks.
    links: HashMap<(u64, u64), PathBuf>,
}

impl Merge<'_> {
    fn dir(&mut self, rel: &Path, dst: &Path) -> Result<(), SnapshotError> {
        for (name, entry) in self.view.read_dir(rel)? {
            let child_rel = rel.join(&name);
            let child_dst = dst.join(&name);
            let md = &entry.metadata;
            if md.is_dir() {
                make_dir(&child_dst)?;
                self.dir(&child_rel, &child_dst)?;
                set_metadata(&child_dst, md, &read_xattrs(&entry.path)?)?;
                continue;
            }
            let id = (md.dev(), md.ino());
            if md.nlink() > 1
                && let Some(first) = self.links.get(&id)
            {
                std::fs::hard_link(first, &child_dst)
                    .map_err(|e| SnapshotError::io("hardlink", &child_dst, e))?;
                continue;
            }
            if copy_non_dir(&entry.path, md, &child_dst)? && md.nlink() > 1 {
                self.links.insert(id, child_dst);
            }
        }
        Ok(())
    }
}
