//! Hardlinks inside one diff.
//!
//! Several names for one inode must become one file entry and hardlink
//! entries to it, or the layer would hold several independent copies. The
//! inode is identified by (device, inode number) among non-directories with a
//! link count above one. Whiteouts are never considered: overlayfs shares one
//! whiteout inode between many deletions (nlink 2 and more), and a whiteout
//! written as a tar hardlink would be a broken layer.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{Change, ChangeKind, EntryType};

#[derive(Debug, Default)]
pub(crate) struct LinkGroups {
    by_path: HashMap<PathBuf, (u64, u64)>,
}

impl LinkGroups {
    /// Records `rel` if it may share its inode with another reported path.
    pub(crate) fn note(&mut self, rel: &Path, md: &Metadata) {
        if !md.is_dir() && md.nlink() > 1 {
            self.by_path.insert(rel.to_path_buf(), (md.dev(), md.ino()));
        }
    }

    /// Rewrites every name but the first (in the sorted list) of each inode
    /// into a [`EntryType::Hardlink`] to that first name. `changes` must be
    /// sorted by path.
    pub(crate) fn apply(&self, changes: &mut [Change]) {
        let mut first: HashMap<(u64, u64), PathBuf> = HashMap::new();
        for change in changes.iter_mut() {
            let Some(id) = self.by_path.get(&change.path) else {
                continue;
            };
            let entry = match &mut change.kind {
                ChangeKind::Added(e) | ChangeKind::Modified(e) => e,
                ChangeKind::Deleted | ChangeKind::Opaque(_) => continue,
            };
            if entry.file.is_dir() {
                continue;
            }
            match first.get(id) {
                Some(target) => {
                    entry.file = EntryType::Hardlink {
                        target: target.clone(),
                    }
                }
                None => {
                    first.insert(*id, change.path.clone());
                }
            }
        }
    }
}
