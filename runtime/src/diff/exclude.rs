//! Leaving out what the sandbox mounted.
//!
//! The sandbox mounts /dev, /proc, /sys, /etc/hosts, /etc/resolv.conf,
//! /etc/hostname, secrets and RUN mount targets over the step's root. Writes
//! below those mounts never reach the snapshot, but their mount points do:
//! when a target did not exist, the sandbox created an empty file or
//! directory for it (and possibly its parents), and creating it bumped the
//! parent's mtime. None of that is the step's work, so none of it may reach
//! the layer: the mount points and everything below them are dropped, and so
//! are their ancestor directories when nothing else changed below them and
//! they are either new or differ from the lower layers only in mtime.
//!
//! Limitation: a step whose only change is an empty directory that is also
//! the parent of a sandbox mount point (`mkdir /run` when a secret is mounted
//! at /run/secrets/x) loses that directory, as the two cannot be told apart
//! after the fact.

use std::path::{Component, Path, PathBuf};

use super::meta::{read_entry, same_attributes};
use super::{Change, ChangeKind, DiffError, EntryType, LowerView};

/// `changes` (sorted by path) without the sandbox's mount points `excludes`
/// (container paths such as `/etc/hosts`; relative ones are taken from `/`).
pub fn apply_excludes(
    changes: Vec<Change>,
    excludes: &[PathBuf],
    lowers: &LowerView,
) -> Result<Vec<Change>, DiffError> {
    let excludes = excludes
        .iter()
        .map(|e| normalize(e))
        .collect::<Result<Vec<_>, _>>()?;
    let mut kept: Vec<Change> = changes
        .into_iter()
        .filter(|c| !excludes.iter().any(|e| c.path.starts_with(e)))
        .collect();

    let mut ancestors: Vec<PathBuf> = excludes
        .iter()
        .flat_map(|e| e.ancestors().skip(1).map(Path::to_path_buf))
        .filter(|a| !a.as_os_str().is_empty())
        .collect();
    // Deepest first, so that pruning /run/secrets can make /run prunable.
    ancestors.sort_by_key(|a| std::cmp::Reverse(a.components().count()));
    ancestors.dedup();
    for dir in ancestors {
        let Ok(i) = kept.binary_search_by(|c| c.path.as_path().cmp(&dir)) else {
            continue;
        };
        let has_changed_children = kept
            .get(i + 1)
            .is_some_and(|next| next.path.starts_with(&dir));
        if has_changed_children || !only_mount_point_parent(&kept[i], lowers)? {
            continue;
        }
        kept.remove(i);
    }

    for c in &kept {
        if let Some(EntryType::Hardlink { target }) = c.kind.entry().map(|e| &e.file)
            && excludes.iter().any(|e| target.starts_with(e))
        {
            return Err(DiffError::Unsupported {
                path: c.path.clone(),
                what: format!(
                    "is a hardlink to {}, which is a sandbox mount point and not part of the layer",
                    target.display()
                ),
            });
        }
    }
    Ok(kept)
}

/// Whether a directory change can only stem from creating a mount point in it.
fn only_mount_point_parent(change: &Change, lowers: &LowerView) -> Result<bool, DiffError> {
    let (entry, added) = match &change.kind {
        ChangeKind::Added(e) => (e, true),
        ChangeKind::Modified(e) => (e, false),
        ChangeKind::Deleted | ChangeKind::Opaque(_) => return Ok(false),
    };
    if !entry.file.is_dir() {
        return Ok(false);
    }
    if added {
        return Ok(true);
    }
    let Some(before) = lowers.lookup(&change.path)? else {
        return Ok(false);
    };
    if !before.metadata.is_dir() {
        return Ok(false);
    }
    Ok(read_entry(&before.path, &before.metadata)?.is_some_and(|b| same_attributes(&b, entry)))
}

/// `/etc/hosts` → `etc/hosts`; refuses `..` and the root itself.
fn normalize(path: &Path) -> Result<PathBuf, DiffError> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(DiffError::BadExclude {
                    path: path.to_path_buf(),
                    why: "it contains `..`",
                });
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(DiffError::BadExclude {
            path: path.to_path_buf(),
            why: "it names the root, which would exclude every change",
        });
    }
    Ok(out)
}
