//! The overlay snapshotter's diff: a walk of the upper directory only.
//!
//! Overlayfs puts into the upper directory exactly what the step touched:
//! created and copied-up objects, whiteouts for deletions and opaque
//! directories for directories removed and made again. The walk never reads
//! the lower layers' trees, only looks single paths up in them (to tell added
//! from modified, and to drop directories that were merely copied up on the
//! way to a changed child).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::hardlinks::LinkGroups;
use super::meta::{read_entry, same_content, same_object};
use super::overlay_form::{check_name, check_translatable, is_opaque_dir, is_whiteout};
use super::{Change, ChangeKind, DiffError, Entry, EntryType, LowerEntry, LowerView};

/// Every change recorded in `upper` (an overlay upper directory, in the form
/// overlayfs writes with `userxattr`) over `lowers`, sorted by path.
///
/// Sandbox mount points are still in this list; pass it through
/// [`super::apply_excludes`].
pub fn diff_overlay_upper(upper: &Path, lowers: &LowerView) -> Result<Vec<Change>, DiffError> {
    let mut walk = Walk {
        lowers,
        out: Vec::new(),
        links: LinkGroups::default(),
    };
    walk.dir(upper, Path::new(""), true)?;
    let Walk { mut out, links, .. } = walk;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    links.apply(&mut out);
    Ok(out)
}

/// Whether a copied-up non-directory is still what the lower layer has:
/// overlayfs copies a file up when it is opened for writing or its metadata
/// is touched, even if nothing ends up different. Such a file is left out, as
/// the native snapshotter (which compares metadata) leaves it out. Equal
/// metadata is not enough for a regular file, so its bytes are compared too;
/// that only happens for files whose size and mtime (to the nanosecond) did
/// not change, which a real write almost never leaves. Files with several
/// names are always kept: dropping one name would split the hardlink.
fn identical_to_lower(entry: &Entry, lower: &LowerEntry) -> Result<bool, DiffError> {
    let Some(before) = read_entry(&lower.path, &lower.metadata)? else {
        return Ok(false);
    };
    if !same_object(&before, entry) {
        return Ok(false);
    }
    match &entry.file {
        EntryType::File { source, .. } => same_content(source, &lower.path),
        _ => Ok(true),
    }
}

struct Walk<'a> {
    lowers: &'a LowerView,
    out: Vec<Change>,
    links: LinkGroups,
}

impl Walk<'_> {
    /// `lower_visible`: whether the lower layers' directory at `rel` shows
    /// through this upper directory (false below an opaque or a new one).
    fn dir(&mut self, abs: &Path, rel: &Path, lower_visible: bool) -> Result<(), DiffError> {
        let rd = std::fs::read_dir(abs).map_err(|e| DiffError::io("list", abs, e))?;
        let mut names = Vec::new();
        for item in rd {
            names.push(item.map_err(|e| DiffError::io("list", abs, e))?.file_name());
        }
        names.sort();
        for name in names {
            let child_abs = abs.join(&name);
            let child_rel: PathBuf = rel.join(&name);
            let md = std::fs::symlink_metadata(&child_abs)
                .map_err(|e| DiffError::io("stat", &child_abs, e))?;
            let lower = if lower_visible {
                self.lowers.lookup(&child_rel)?
            } else {
                None
            };
            if is_whiteout(&child_abs, &md)? {
                // A whiteout over nothing (possible after layers were
                // squashed) deletes nothing and is left out.
                if lower.is_some() {
                    self.out.push(Change {
                        path: child_rel,
                        kind: ChangeKind::Deleted,
                    });
                }
                continue;
            }
            check_name(&child_abs)?;
            check_translatable(&child_abs)?;
            let Some(entry) = read_entry(&child_abs, &md)? else {
                continue;
            };
            if md.is_dir() {
                let lower_dir = lower.as_ref().filter(|l| l.metadata.is_dir());
                let below_visible = match lower_dir {
                    Some(l) => {
                        if is_opaque_dir(&child_abs)? {
                            self.out.push(Change {
                                path: child_rel.clone(),
                                kind: ChangeKind::Opaque(entry),
                            });
                            false
                        } else {
                            // Copied up only to reach a changed child: report
                            // the directory itself only if it changed.
                            let before = read_entry(&l.path, &l.metadata)?;
                            if before.is_none_or(|b| !same_object(&b, &entry)) {
                                self.out.push(Change {
                                    path: child_rel.clone(),
                                    kind: ChangeKind::Modified(entry),
                                });
                            }
                            true
                        }
                    }
                    None => {
                        // An opaque marker over a former non-directory (or
                        // over nothing) hides nothing: a plain directory.
                        let kind = if lower.is_some() {
                            ChangeKind::Modified(entry)
                        } else {
                            ChangeKind::Added(entry)
                        };
                        self.out.push(Change {
                            path: child_rel.clone(),
                            kind,
                        });
                        false
                    }
                };
                self.dir(&child_abs, &child_rel, below_visible)?;
            } else {
                let kind = match &lower {
                    None => ChangeKind::Added(entry),
                    Some(l) => {
                        if md.nlink() == 1 && identical_to_lower(&entry, l)? {
                            continue;
                        }
                        ChangeKind::Modified(entry)
                    }
                };
                self.links.note(&child_rel, &md);
                self.out.push(Change {
                    path: child_rel,
                    kind,
                });
            }
        }
        Ok(())
    }
}
