//! The native (copy) snapshotter: the fallback that always works.
//!
//! No mount, no xattr requirement for running: `prepare` copies the merged
//! view of the lower layers into a fresh directory (whiteouts and opaque
//! directories applied, hardlinks within a layer kept), which the sandbox
//! bind-mounts as `/`. Files are copied, never hardlinked from the layers: a
//! step that modified a hardlinked file in place would corrupt the layer.
//! `diff` compares the tree with the layers by metadata and by the inode
//! table recorded at prepare time ([`BaseInodes`]). `commit` writes only the
//! changes, in the overlay form every layer directory uses, so a native layer
//! can sit in an overlay stack and the other way round.
//!
//! The cost is a full copy of the image per step; it is the price of working
//! on kernels and file systems where overlayfs in a user namespace does not.

use std::io;
use std::path::{Path, PathBuf};

use super::copy::{copy_non_dir, make_dir, set_metadata};
use super::key::validate_key;
use super::merge::merge_into;
use super::overlay::create_snapshot_dir;
use super::remove::remove_tree;
use super::{ActiveSnapshot, LAYER_DIR, SnapshotError, Snapshotter, SnapshotterKind};
use super::{absolute_root, check_lowers};
use crate::RootfsSpec;
use crate::diff::overlay_form::{make_opaque, make_whiteout};
use crate::diff::{
    BaseInodes, Change, ChangeKind, EntryType, LowerView, apply_excludes, diff_trees, read_xattrs,
};

const ROOTFS_DIR: &str = "rootfs";
const INODES_FILE: &str = "inodes";
const PARTIAL_LAYER_DIR: &str = "layer.partial";

#[derive(Debug, Clone)]
pub struct NativeSnapshotter {
    root: PathBuf,
}

impl NativeSnapshotter {
    /// Snapshots live under `root` (`<store>/snapshots/`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        NativeSnapshotter {
            root: absolute_root(root.into()),
        }
    }
}

impl Snapshotter for NativeSnapshotter {
    fn kind(&self) -> SnapshotterKind {
        SnapshotterKind::Native
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn prepare(&self, key: &str, lowers: &[PathBuf]) -> Result<ActiveSnapshot, SnapshotError> {
        validate_key(key)?;
        check_lowers(lowers)?;
        let dir = create_snapshot_dir(&self.root, key)?;
        let rootfs = dir.join(ROOTFS_DIR);
        merge_into(&LowerView::new(lowers.to_vec()), &rootfs)?;
        BaseInodes::record(&rootfs)?.save(&dir.join(INODES_FILE))?;
        Ok(ActiveSnapshot {
            key: key.to_string(),
            dir,
            lowers: lowers.to_vec(),
            rootfs: RootfsSpec::Dir(rootfs),
        })
    }

    fn diff(
        &self,
        snapshot: &ActiveSnapshot,
        excludes: &[PathBuf],
    ) -> Result<Vec<Change>, SnapshotError> {
        diff_copied_tree(snapshot, excludes)
    }

    fn commit(
        &self,
        snapshot: &ActiveSnapshot,
        changes: &[Change],
    ) -> Result<PathBuf, SnapshotError> {
        let rootfs = dir_rootfs(snapshot)?.to_path_buf();
        let layer = write_layer_dir(snapshot, &rootfs, changes, false)?;
        remove_tree(&rootfs)?;
        remove_tree(&snapshot.dir.join(INODES_FILE))?;
        Ok(layer)
    }

    fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        validate_key(key)?;
        remove_tree(&self.root.join(key))
    }
}

/// Writes `changes` of the working tree `rootfs` as the layer directory
/// `<snapshot>/layer` in overlay form (through a partial directory renamed
/// into place) and returns its path. `copy`: copy every file, for a tree
/// that lives on after the commit; else files are hardlinked where the file
/// system allows.
pub(crate) fn write_layer_dir(
    snapshot: &ActiveSnapshot,
    rootfs: &Path,
    changes: &[Change],
    copy: bool,
) -> Result<PathBuf, SnapshotError> {
    let partial = snapshot.dir.join(PARTIAL_LAYER_DIR);
    remove_tree(&partial)?;
    make_dir(&partial)?;
    let view = LowerView::new(snapshot.lowers.clone());
    let mut writer = LayerWriter {
        rootfs,
        layer: &partial,
        view: &view,
        dirs: vec![PathBuf::new()],
        made: std::collections::HashSet::new(),
        copy,
    };
    for change in changes {
        writer.write(change)?;
    }
    writer.finish_dirs()?;
    let layer = snapshot.dir.join(LAYER_DIR);
    std::fs::rename(&partial, &layer)
        .map_err(|e| SnapshotError::io("rename the new layer to", &layer, e))?;
    Ok(layer)
}

/// Writes a change list into a layer directory in overlay form.
struct LayerWriter<'a> {
    rootfs: &'a Path,
    layer: &'a Path,
    view: &'a LowerView,
    /// Directories made in the layer (relative), in creation order; their
    /// metadata is applied at the end, children first.
    dirs: Vec<PathBuf>,
    made: std::collections::HashSet<PathBuf>,
    /// Copy files instead of hardlinking them.
    copy: bool,
}

impl LayerWriter<'_> {
    fn write(&mut self, change: &Change) -> Result<(), SnapshotError> {
        if let Some(parent) = change.path.parent() {
            self.make_parents(parent)?;
        }
        let dst = self.layer.join(&change.path);
        let src = self.rootfs.join(&change.path);
        match &change.kind {
            ChangeKind::Deleted => make_whiteout(&dst)?,
            ChangeKind::Opaque(_) => {
                self.make_layer_dir(&change.path)?;
                if !make_opaque(&dst)? {
                    // No user xattrs here: hide each lower child explicitly,
                    // except those the new directory has again (they follow
                    // as changes of their own and hide the lower ones).
                    for name in self.view.read_dir(&change.path)?.keys() {
                        let again = std::fs::symlink_metadata(src.join(name)).is_ok();
                        if !again {
                            make_whiteout(&dst.join(name))?;
                        }
                    }
                }
            }
            ChangeKind::Added(entry) | ChangeKind::Modified(entry) => match &entry.file {
                EntryType::Dir => self.make_layer_dir(&change.path)?,
                EntryType::Hardlink { target } => {
                    let first = self.layer.join(target);
                    std::fs::hard_link(&first, &dst)
                        .map_err(|e| SnapshotError::io("hardlink", &dst, e))?;
                }
                _ if self.copy => {
                    let md = std::fs::symlink_metadata(&src)
                        .map_err(|e| SnapshotError::io("stat", &src, e))?;
                    copy_non_dir(&src, &md, &dst)?;
                }
                _ => link_or_copy(&src, &dst)?,
            },
        }
        Ok(())
    }

    /// Makes the ancestors of `rel` that no change made. They are unchanged
    /// directories, so they get the working tree's (= the lowers') metadata.
    fn make_parents(&mut self, rel: &Path) -> Result<(), SnapshotError> {
        if rel.as_os_str().is_empty() || self.made.contains(rel) {
            return Ok(());
        }
        if let Some(parent) = rel.parent() {
            self.make_parents(parent)?;
        }
        self.make_layer_dir(rel)
    }

    fn make_layer_dir(&mut self, rel: &Path) -> Result<(), SnapshotError> {
        make_dir(&self.layer.join(rel))?;
        self.made.insert(rel.to_path_buf());
        self.dirs.push(rel.to_path_buf());
        Ok(())
    }

    /// Gives every directory made its final metadata, children before
    /// parents so that making them does not change a parent's mtime again.
    fn finish_dirs(&mut self) -> Result<(), SnapshotError> {
        for rel in self.dirs.iter().rev() {
            let src = self.rootfs.join(rel);
            let md =
                std::fs::symlink_metadata(&src).map_err(|e| SnapshotError::io("stat", &src, e))?;
            set_metadata(&self.layer.join(rel), &md, &read_xattrs(&src)?)?;
        }
        Ok(())
    }
}

/// Moves a non-directory into the layer by hardlinking it (the working tree
/// is deleted right after commit, so the layer ends up its only owner), or
/// copies it where a link is refused.
fn link_or_copy(src: &Path, dst: &Path) -> Result<(), SnapshotError> {
    match std::fs::hard_link(src, dst) {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EPERM) | Some(libc::EXDEV) | Some(libc::EMLINK)
            ) || e.kind() == io::ErrorKind::PermissionDenied =>
        {
            let md =
                std::fs::symlink_metadata(src).map_err(|e| SnapshotError::io("stat", src, e))?;
            copy_non_dir(src, &md, dst).map(|_| ())
        }
        Err(e) => Err(SnapshotError::io("hardlink into the layer", dst, e)),
    }
}

/// The directory root of an active copy-based snapshot (native or tree).
pub(super) fn dir_rootfs(snapshot: &ActiveSnapshot) -> Result<&Path, SnapshotError> {
    match &snapshot.rootfs {
        RootfsSpec::Dir(dir) if dir.is_dir() => Ok(dir),
        _ => Err(SnapshotError::NotActive {
            path: snapshot.dir.clone(),
        }),
    }
}

/// What changed in a copied tree since `prepare` recorded its inodes: the
/// walk both copy-based snapshotters (native and tree) diff with.
pub(super) fn diff_copied_tree(
    snapshot: &ActiveSnapshot,
    excludes: &[PathBuf],
) -> Result<Vec<Change>, SnapshotError> {
    let rootfs = dir_rootfs(snapshot)?;
    let base = BaseInodes::load(&snapshot.dir.join(INODES_FILE))?;
    let view = LowerView::new(snapshot.lowers.clone());
    let raw = diff_trees(rootfs, &view, &base)?;
    Ok(apply_excludes(raw, excludes, &view)?)
}
