//! The native snapshotter's diff: its working tree compared with the lower
//! layers, by metadata.
//!
//! A copied tree has no record of what a step did, so the diff is inferred:
//! a path is changed when its type, mode, owner, size, mtime, symlink target,
//! device number or xattrs differ from the lower view, or when its inode is
//! not the one the snapshotter created at prepare time (the step replaced it,
//! e.g. `mv` over it, even with the same metadata; see [`BaseInodes`]). A directory whose inode
//! changed was removed and made again: that is overlayfs' opaque directory,
//! and it is reported the same way. A file rewritten in place with its size
//! and mtime restored is found by its ctime and then compared by content
//! with the lower layer, as overlayfs' copy-up would show it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::hardlinks::LinkGroups;
use super::meta::{read_entry, same_content, same_object};
use super::overlay_form::check_name;
use super::{Change, ChangeKind, DiffError, Entry, LowerView};

pub use super::base_inodes::BaseInodes;

/// Every change of the tree at `root` over `lowers`, sorted by path. `base`
/// holds the inode of every path as the snapshotter created it.
///
/// Sandbox mount points are still in this list; pass it through
/// [`super::apply_excludes`].
pub fn diff_trees(
    root: &Path,
    lowers: &LowerView,
    base: &BaseInodes,
) -> Result<Vec<Change>, DiffError> {
    let mut walk = Walk {
        lowers,
        base,
        out: Vec::new(),
        links: LinkGroups::default(),
        changed_inodes: HashSet::new(),
        unchanged_links: HashMap::new(),
    };
    walk.dir(root, Path::new(""), true)?;
    let Walk {
        mut out,
        mut links,
        changed_inodes,
        unchanged_links,
        ..
    } = walk;
    // A new name for an old inode makes every name of it part of the layer,
    // as overlayfs' copy-up would (the layer must hold the file to link to).
    for (id, members) in unchanged_links {
        if changed_inodes.contains(&id) {
            for (rel, md, entry) in members {
                links.note(&rel, &md);
                out.push(Change {
                    path: rel,
                    kind: ChangeKind::Modified(entry),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    links.apply(&mut out);
    Ok(out)
}

type InodeId = (u64, u64);

/// A single-named regular file whose metadata came out as before but that
/// was written to meanwhile (its ctime moved) and now holds other bytes
/// than the lower layer's: what overlayfs' copy-up shows as a change.
fn rewritten_in_place(
    rel: &Path,
    abs: &Path,
    md: &std::fs::Metadata,
    lower: &super::LowerEntry,
    base: &BaseInodes,
) -> Result<bool, DiffError> {
    if !md.is_file() || md.nlink() != 1 || !base.touched(rel, md) {
        return Ok(false);
    }
    Ok(!same_content(abs, &lower.path)?)
}

struct Walk<'a> {
    lowers: &'a LowerView,
    base: &'a BaseInodes,
    out: Vec<Change>,
    links: LinkGroups,
    changed_inodes: HashSet<InodeId>,
    unchanged_links: HashMap<InodeId, Vec<(PathBuf, std::fs::Metadata, Entry)>>,
}

impl Walk<'_> {
    fn dir(&mut self, abs: &Path, rel: &Path, lower_visible: bool) -> Result<(), DiffError> {
        let rd = std::fs::read_dir(abs).map_err(|e| DiffError::io("list", abs, e))?;
        let mut names = BTreeSet::<OsString>::new();
        for item in rd {
            names.insert(item.map_err(|e| DiffError::io("list", abs, e))?.file_name());
        }
        let lower_children = if lower_visible {
            self.lowers.read_dir(rel)?
        } else {
            Default::default()
        };
        for name in lower_children.keys() {
            if !names.contains(name) {
                self.out.push(Change {
                    path: rel.join(name),
                    kind: ChangeKind::Deleted,
                });
            }
        }
        for name in names {
            let child_abs = abs.join(&name);
            let child_rel = rel.join(&name);
            let md = std::fs::symlink_metadata(&child_abs)
                .map_err(|e| DiffError::io("stat", &child_abs, e))?;
            check_name(&child_abs)?;
            let Some(entry) = read_entry(&child_abs, &md)? else {
                continue;
            };
            let lower = lower_children.get(&name);
            let same_inode = self.base.is_original(&child_rel, &child_abs, &md);
            if md.is_dir() {
                let below_visible = match lower.filter(|l| l.metadata.is_dir()) {
                    Some(_) if !same_inode => {
                        self.push(child_rel.clone(), ChangeKind::Opaque(entry));
                        false
                    }
                    Some(l) => {
                        let before = read_entry(&l.path, &l.metadata)?;
                        if before.is_none_or(|b| !same_object(&b, &entry)) {
                            self.push(child_rel.clone(), ChangeKind::Modified(entry));
                        }
                        true
                    }
                    None if lower.is_some() => {
                        self.push(child_rel.clone(), ChangeKind::Modified(entry));
                        false
                    }
                    None => {
                        self.push(child_rel.clone(), ChangeKind::Added(entry));
                        false
                    }
                };
                self.dir(&child_abs, &child_rel, below_visible)?;
                continue;
            }
            let id = (md.dev(), md.ino());
            let kind = match lower {
                None => Some(ChangeKind::Added(entry)),
                Some(l) => {
                    let before = read_entry(&l.path, &l.metadata)?;
                    if !same_inode
                        || before.is_none_or(|b| !same_object(&b, &entry))
                        || rewritten_in_place(&child_rel, &child_abs, &md, l, self.base)?
                    {
                        Some(ChangeKind::Modified(entry))
                    } else {
                        if md.nlink() > 1 {
                            self.unchanged_links.entry(id).or_default().push((
                                child_rel.clone(),
                                md.clone(),
                                entry,
                            ));
                        }
                        None
                    }
                }
            };
            if let Some(kind) = kind {
                self.links.note(&child_rel, &md);
                if md.nlink() > 1 {
                    self.changed_inodes.insert(id);
                }
                self.push(child_rel, kind);
            }
        }
        Ok(())
    }

    fn push(&mut self, path: PathBuf, kind: ChangeKind) {
        self.out.push(Change { path, kind });
    }
}
