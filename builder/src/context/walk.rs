//! The metadata of the entries one COPY/ADD source selects: a directory
//! source walked one directory at a time, and each entry's kind, mode,
//! stat and (when asked) the extended attributes and recorded owner an
//! image keeps. [`super::select`] decides which paths are visited.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::Context as _;

use super::dockerignore::Matcher;
use super::select::{Entry, EntryKind, StatKey, join_dest, join_rel};

/// Walks a directory source, adding the directory itself (it gives the
/// destination its mode) and everything below that is not excluded.
pub(super) fn walk_dir(
    context: &Path,
    rel: &str,
    dest: &str,
    ignore: &Matcher,
    excludes: &Matcher,
    with_root: bool,
    out: &mut BTreeMap<String, Entry>,
) -> anyhow::Result<()> {
    let root = join_rel(context, rel);
    // `rel` is resolved: no symlink in it, so this stats the directory.
    let md = std::fs::symlink_metadata(&root)
        .with_context(|| format!("cannot stat {}", root.display()))?;
    if with_root && let Some(e) = entry_for(&root, rel, dest, &md)? {
        out.insert(e.dest.clone(), e);
    }
    let skip_dirs = !ignore.has_exceptions() && !excludes.has_exceptions();
    // Each directory is listed and its entries stat'ed relative to its
    // open descriptor (`std::fs::DirEntry::metadata` is an `fstatat` on
    // the directory), not by a path looked up from `/` again per file.
    let mut pending = vec![(root.clone(), String::new())];
    while let Some((dir, inner_dir)) = pending.pop() {
        let list =
            std::fs::read_dir(&dir).with_context(|| format!("cannot walk {}", dir.display()))?;
        // The rules matching this directory or its parents, worked out
        // once for all its entries.
        let parts: Vec<&str> = [rel, inner_dir.as_str()]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect();
        let in_ctx = ignore.in_dir(&parts.join("/"));
        let in_inner = excludes.in_dir(&inner_dir);
        for ent in list {
            let ent = ent.with_context(|| format!("cannot walk {}", dir.display()))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            let inner = if inner_dir.is_empty() {
                name
            } else {
                format!("{inner_dir}/{name}")
            };
            let ctx_rel = if rel.is_empty() {
                inner.clone()
            } else {
                format!("{rel}/{inner}")
            };
            let path = ent.path();
            let is_dir = ent
                .file_type()
                .with_context(|| format!("cannot stat {}", path.display()))?
                .is_dir();
            if ignore.excludes_in(&in_ctx, &ctx_rel) || excludes.excludes_in(&in_inner, &inner) {
                if is_dir && !skip_dirs {
                    pending.push((path, inner));
                }
                continue;
            }
            let md = ent
                .metadata()
                .with_context(|| format!("cannot stat {}", path.display()))?;
            if let Some(e) = entry_for(&path, &ctx_rel, &join_dest(dest, &inner), &md)? {
                out.insert(e.dest.clone(), e);
            }
            if is_dir {
                pending.push((path, inner));
            }
        }
    }
    Ok(())
}

pub(super) fn entry_for(
    abs: &Path,
    rel: &str,
    dest: &str,
    md: &std::fs::Metadata,
) -> anyhow::Result<Option<Entry>> {
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_file() {
        EntryKind::File
    } else if ft.is_symlink() {
        let t = std::fs::read_link(abs)
            .with_context(|| format!("cannot read link {}", abs.display()))?;
        EntryKind::Symlink(t.to_string_lossy().into_owned())
    } else {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_socket() {
            // Docker leaves sockets out of the context too.
            return Ok(None);
        }
        if !ft.is_fifo() {
            return Err(crate::not_supported(&format!(
                "copying the device node {rel:?} (strata cannot create device nodes in a layer)"
            )));
        }
        EntryKind::Fifo
    };
    Ok(Some(Entry {
        rel: rel.to_string(),
        dest: if dest.is_empty() {
            "/".into()
        } else {
            dest.to_string()
        },
        kind,
        host_mode: md.mode() & 0o7777,
        stat: StatKey::of(md),
        // Filled in by `fill_extra_meta`.
        xattrs: Vec::new(),
        owner: (md.uid(), md.gid()),
        owner_recorded: false,
        named_source: false,
    }))
}

/// The owner recorded by a rootless unpack, if any.
pub(super) fn recorded_owner(p: &Path) -> anyhow::Result<Option<(u32, u32)>> {
    match xattr::get(p, cache::layer::ROOTLESS_XATTR) {
        Ok(Some(v)) => {
            let r = cache::layer::Record::decode(&v)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            Ok(Some((r.uid, r.gid)))
        }
        _ => Ok(None),
    }
}

/// The extended attributes an image keeps: `user.*` and file capabilities.
/// Others (`security.selinux`, `system.*`) describe the host, not the file.
pub(super) fn read_xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(names) = xattr::list(p) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = names
        .filter_map(|n| {
            let name = n.to_string_lossy().into_owned();
            // Overlayfs' own markers (`user.overlay.*`) describe a layer
            // directory, never a file of the image.
            if name == cache::layer::ROOTLESS_XATTR
                || name.starts_with("user.overlay.")
                || !(name.starts_with("user.") || name == "security.capability")
            {
                return None;
            }
            xattr::get(p, &n).ok().flatten().map(|v| (name, v))
        })
        .collect();
    out.sort();
    out
}
