//! The tree snapshotter: one working tree per chain of steps, for chroot
//! isolation (no mount, so no overlay).
//!
//! Copying the whole root filesystem for every step, as the native
//! snapshotter does, costs a full image copy per RUN. Here consecutive
//! steps mutate one tree, as Kaniko's do: after a commit the tree is not
//! deleted but *parked*, labelled with the layer stack it now equals (the
//! new layer on top of the snapshot's lowers). The next `prepare` whose
//! lowers are that stack takes it over as it is; one whose lowers are that
//! stack plus layers on top (a COPY between two RUNs) takes it over and
//! applies those layers; anything else (a second stage on the same base, a
//! cached chain that diverges) materializes a fresh tree from the layer
//! directories, which is the only full copy.
//!
//! The diff is the native snapshotter's: the tree is walked against the
//! lower layers with the inode table recorded at prepare time, so both
//! report the same changes and make the same layer. `commit` copies the
//! changed files into the layer directory (the tree lives on, so nothing is
//! hardlinked to it).
//!
//! Parked trees and the labels live in this process: call the methods
//! in-process (chroot isolation's plain calls), not in forked children.
//! They are deleted when the snapshotter is dropped; a killed process
//! leaves `tree-<pid>-<n>` directories, which the next snapshotter on the
//! same root removes.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::copy::{copy_non_dir, make_dir, set_metadata};
use super::key::validate_key;
use super::merge::merge_into;
use super::native::write_layer_dir;
use super::overlay::create_snapshot_dir;
use super::remove::remove_tree;
use super::{ActiveSnapshot, SnapshotError, Snapshotter, SnapshotterKind};
use super::{absolute_root, check_lowers};
use crate::RootfsSpec;
use crate::diff::overlay_form::{is_opaque_dir, is_whiteout};
use crate::diff::{BaseInodes, Change, LowerView, read_xattrs};

const ROOTFS_DIR: &str = "rootfs";
const INODES_FILE: &str = "inodes";
const PARK_PREFIX: &str = "tree-";

/// A working tree waiting for the next step of its chain.
#[derive(Debug)]
struct Parked {
    dir: PathBuf,
    /// The layer stack (topmost first) the tree equals.
    lowers: Vec<PathBuf>,
}

#[derive(Debug)]
pub struct TreeSnapshotter {
    root: PathBuf,
    parked: Mutex<Vec<Parked>>,
    /// Active snapshots whose diff came out empty: their tree still equals
    /// their lowers, so `remove` parks it instead of deleting it.
    clean: Mutex<HashSet<String>>,
    seq: AtomicU64,
}

impl TreeSnapshotter {
    /// Snapshots live under `root` (`<store>/snapshots/…`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = absolute_root(root.into());
        remove_dead_parks(&root);
        TreeSnapshotter {
            root,
            parked: Mutex::new(Vec::new()),
            clean: Mutex::new(HashSet::new()),
            seq: AtomicU64::new(0),
        }
    }

    /// Takes the parked tree that needs the fewest layers applied to equal
    /// `lowers`, with those layers (topmost first).
    fn take(&self, lowers: &[PathBuf]) -> Option<(PathBuf, Vec<PathBuf>)> {
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        let best = parked
            .iter()
            .enumerate()
            .filter(|(_, p)| lowers.ends_with(&p.lowers))
            .max_by_key(|(_, p)| p.lowers.len())
            .map(|(i, _)| i)?;
        let p = parked.swap_remove(best);
        let extra = lowers[..lowers.len() - p.lowers.len()].to_vec();
        Some((p.dir, extra))
    }

    /// Moves the tree `rootfs` to the park, labelled with `lowers`.
    fn park(&self, rootfs: &Path, lowers: Vec<PathBuf>) -> Result<(), SnapshotError> {
        let dir = self.root.join(format!(
            "{PARK_PREFIX}{}-{}",
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::rename(rootfs, &dir)
            .map_err(|e| SnapshotError::io("park the tree at", &dir, e))?;
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        parked.push(Parked { dir, lowers });
        Ok(())
    }
}

impl Drop for TreeSnapshotter {
    fn drop(&mut self) {
        let parked = self.parked.get_mut().unwrap_or_else(|p| p.into_inner());
        for p in parked.drain(..) {
            let _ = remove_tree(&p.dir);
        }
    }
}

impl Snapshotter for TreeSnapshotter {
    fn kind(&self) -> SnapshotterKind {
        SnapshotterKind::Tree
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn prepare(&self, key: &str, lowers: &[PathBuf]) -> Result<ActiveSnapshot, SnapshotError> {
        validate_key(key)?;
        check_lowers(lowers)?;
        let dir = create_snapshot_dir(&self.root, key)?;
        let rootfs = dir.join(ROOTFS_DIR);
        match self.take(lowers) {
            Some((tree, extra)) => {
                std::fs::rename(&tree, &rootfs)
                    .map_err(|e| SnapshotError::io("take over the tree at", &tree, e))?;
                for layer in extra.iter().rev() {
                    apply_layer(layer, &rootfs)?;
                }
            }
            None => merge_into(&LowerView::new(lowers.to_vec()), &rootfs)?,
        }
        BaseInodes::record(&rootfs)?.save(&dir.join(INODES_FILE))?;
        write_lowers(&dir, lowers)?;
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
        let changes = super::native::diff_copied_tree(snapshot, excludes)?;
        if changes.is_empty() {
            let mut clean = self.clean.lock().unwrap_or_else(|p| p.into_inner());
            clean.insert(snapshot.key.clone());
        }
        Ok(changes)
    }

    fn commit(
        &self,
        snapshot: &ActiveSnapshot,
        changes: &[Change],
    ) -> Result<PathBuf, SnapshotError> {
        let rootfs = super::native::dir_rootfs(snapshot)?.to_path_buf();
        let layer = write_layer_dir(snapshot, &rootfs, changes, true)?;
        let mut lowers = vec![layer.clone()];
        lowers.extend(snapshot.lowers.iter().cloned());
        self.park(&rootfs, lowers)?;
        remove_tree(&snapshot.dir.join(INODES_FILE))?;
        Ok(layer)
    }

    fn layer_stored_as(&self, committed: &Path, stored: &Path) {
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        for p in parked.iter_mut() {
            for l in p.lowers.iter_mut() {
                if l == committed {
                    *l = stored.to_path_buf();
                }
            }
        }
    }

    fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        validate_key(key)?;
        let dir = self.root.join(key);
        let was_clean = self
            .clean
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        let rootfs = dir.join(ROOTFS_DIR);
        if was_clean && rootfs.is_dir() {
            // A step that changed nothing: its tree is still its lowers.
            if let Some(lowers) = read_lowers(&dir) {
                self.park(&rootfs, lowers)?;
            }
        }
        remove_tree(&dir)
    }
}

/// The lowers a snapshot was prepared from, as recorded beside it.
fn read_lowers(dir: &Path) -> Option<Vec<PathBuf>> {
    use std::os::unix::ffi::OsStringExt;
    let bytes = std::fs::read(dir.join(LOWERS_FILE)).ok()?;
    Some(
        bytes
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| PathBuf::from(std::ffi::OsString::from_vec(s.to_vec())))
            .collect(),
    )
}

const LOWERS_FILE: &str = "lowers";

/// Records the lowers beside the snapshot (NUL-separated paths), for a
/// `remove` that parks a clean tree.
fn write_lowers(dir: &Path, lowers: &[PathBuf]) -> Result<(), SnapshotError> {
    use std::os::unix::ffi::OsStrExt;
    let mut bytes = Vec::new();
    for l in lowers {
        bytes.extend_from_slice(l.as_os_str().as_bytes());
        bytes.push(0);
    }
    let p = dir.join(LOWERS_FILE);
    std::fs::write(&p, bytes).map_err(|e| SnapshotError::io("write", &p, e))
}

/// Applies the layer directory `layer` (overlay form) onto `tree` with
/// overlayfs' rules, so that the tree then equals the stack with `layer` on
/// top: whiteouts delete, an opaque directory hides what the tree had
/// there, everything else replaces what is at its path, and directories
/// take the layer's metadata.
fn apply_layer(layer: &Path, tree: &Path) -> Result<(), SnapshotError> {
    let mut links = HashMap::new();
    apply_dir(layer, tree, &mut links)?;
    let md = std::fs::symlink_metadata(layer).map_err(|e| SnapshotError::io("stat", layer, e))?;
    set_metadata(tree, &md, &read_xattrs(layer)?)
}

fn apply_dir(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), SnapshotError> {
    let rd = std::fs::read_dir(src).map_err(|e| SnapshotError::io("list", src, e))?;
    let mut names: Vec<_> = rd
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| SnapshotError::io("list", src, e))?;
    names.sort();
    for name in names {
        let from = src.join(&name);
        let to = dst.join(&name);
        let md =
            std::fs::symlink_metadata(&from).map_err(|e| SnapshotError::io("stat", &from, e))?;
        let existing = std::fs::symlink_metadata(&to).ok();
        if is_whiteout(&from, &md)? {
            if existing.is_some() {
                remove_tree(&to)?;
            }
            continue;
        }
        if md.is_dir() {
            match existing {
                Some(e) if e.is_dir() && is_opaque_dir(&from)? => {
                    remove_tree(&to)?;
                    make_dir(&to)?;
                }
                Some(e) if e.is_dir() => {}
                Some(_) => {
                    remove_tree(&to)?;
                    make_dir(&to)?;
                }
                None => make_dir(&to)?,
            }
            apply_dir(&from, &to, links)?;
            set_metadata(&to, &md, &read_xattrs(&from)?)?;
            continue;
        }
        if existing.is_some() {
            remove_tree(&to)?;
        }
        let id = (md.dev(), md.ino());
        if md.nlink() > 1
            && let Some(first) = links.get(&id)
        {
            std::fs::hard_link(first, &to).map_err(|e| SnapshotError::io("hardlink", &to, e))?;
            continue;
        }
        if copy_non_dir(&from, &md, &to)? && md.nlink() > 1 {
            links.insert(id, to);
        }
    }
    Ok(())
}

/// Removes parked trees of processes that no longer run.
fn remove_dead_parks(root: &Path) {
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PARK_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        let alive = crate::sandbox::sys::kill(pid, 0) == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !alive {
            let _ = remove_tree(&e.path());
        }
    }
}
