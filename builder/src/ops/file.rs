//! File ops: COPY/ADD from a directory (the context, a named context, or —
//! through [`super::from`] — a stage's or image's merged tree) and WORKDIR's
//! mkdir, turned into a layer directory directly from the selected files
//! (written and committed by [`super::commit`]).
//!
//! Ownership follows Docker: files from the context belong to 0:0 unless
//! `--chown` says otherwise; `--chown` names are looked up in the
//! destination's `/etc/passwd` and `/etc/group` (read out of the layers
//! below, topmost first). Modes are the context's, as Docker keeps them (see
//! [`crate::context::select::Entry::image_mode`]), or `--chmod`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use cache::layer::{Content, Entry as LayerEntry, EntryKind as LayerKind};
use cache::store::Store;

use super::Layer;
use super::archive::{self, ArchiveAdd};
use super::exec::Executor;
use super::source::ensure_blob;
use crate::context::checksum::Overrides;
use crate::context::chmod::Chmod;
use crate::context::select::{EntryKind, Selection};

/// The time of what a COPY makes rather than copies (parent directories,
/// heredoc files): 1970-01-01, so the same instruction always makes the
/// same layer. Copied files keep their source's mtime, as Docker keeps it;
/// `SOURCE_DATE_EPOCH` clamps both (see [`super::commit`]).
pub(crate) const DEFAULT_MTIME: i64 = 0;

/// A selected entry's mtime in whole seconds (what a tar header holds).
fn source_mtime(e: &crate::context::select::Entry) -> i64 {
    i64::try_from(e.stat.mtime_ns.div_euclid(1_000_000_000)).unwrap_or(DEFAULT_MTIME)
}

/// The layer entries of a selection from `root` (the directory the
/// entries' `rel` paths are relative to), not written yet, and the local
/// archives ADD unpacks: the caller adds the missing parents
/// ([`with_dirs`]) and writes them (a `COPY --from` inside the user
/// namespace). `preserve`: keep the source's modes and owners (`--from`)
/// instead of the context rules.
pub fn copy_entries(
    root: &Path,
    sel: &Selection,
    ov: &Overrides,
    preserve: bool,
    unpack_archives: bool,
    inline: &[frontend::InlineFile],
    dest: &str,
) -> anyhow::Result<(Vec<LayerEntry>, Vec<ArchiveAdd>)> {
    let mut entries = Vec::new();
    let mut archives = Vec::new();
    // (dev, inode, entry index) of every copied file: hardlink sets.
    let mut inodes = Vec::new();
    for e in &sel.entries {
        // ADD unpacks a named local source that is a tar (plain or
        // compressed) into the destination directory: `dest` itself when
        // the archive was placed at `dest`, else the directory it went into.
        if unpack_archives && e.named_source && e.kind == EntryKind::File && !preserve {
            let into = if e.dest == dest {
                format!("{}/", dest.trim_end_matches('/'))
            } else {
                e.dest
                    .rsplit_once('/')
                    .map(|(d, _)| format!("{d}/"))
                    .unwrap_or_else(|| "/".into())
            };
            let path = root.join(&e.rel);
            if archive::is_archive(&path)? {
                archives.push(ArchiveAdd {
                    path,
                    into: PathBuf::from(into.trim_start_matches('/')),
                    owner: ov.explicit_owner.then_some((ov.uid, ov.gid)),
                });
                continue;
            }
        }
        let path = PathBuf::from(e.dest.trim_start_matches('/'));
        if path.as_os_str().is_empty() {
            continue; // the root directory itself keeps its metadata
        }
        let kind = match &e.kind {
            EntryKind::File => LayerKind::File(Content::Path(root.join(&e.rel))),
            EntryKind::Dir => LayerKind::Dir,
            EntryKind::Symlink(t) => LayerKind::Symlink(PathBuf::from(t)),
            EntryKind::Fifo => LayerKind::Fifo,
        };
        // From the context: the host mode and 0:0 unless --chown.
        // From a stage or image: the source's exact mode and owner.
        let (mode, (uid, gid)) = if preserve {
            let m = ov.mode_for(&e.kind, e.host_mode);
            let owner = if ov.explicit_owner {
                (ov.uid, ov.gid)
            } else {
                e.owner
            };
            (m, owner)
        } else {
            (ov.mode_for(&e.kind, e.image_mode()), (ov.uid, ov.gid))
        };
        let mut le = LayerEntry::new(path, kind)
            .mode(mode)
            .owner(uid, gid)
            .mtime(source_mtime(e));
        for (k, v) in &e.xattrs {
            le = le.xattr(k.clone(), v.clone());
        }
        if e.kind == EntryKind::File {
            inodes.push((e.stat.dev, e.stat.ino, entries.len()));
        }
        entries.push(le);
    }
    keep_hardlinks(&mut entries, inodes);
    for f in inline {
        let p = if inline.len() == 1 && !dest.ends_with('/') {
            dest.to_string()
        } else {
            format!("{}/{}", dest.trim_end_matches('/'), f.path)
        };
        entries.push(
            LayerEntry::file(
                p.trim_start_matches('/'),
                Content::Bytes(f.content.clone().into_bytes()),
            )
            .mode(ov.chmod.as_ref().map_or(f.mode, |c| c.apply(f.mode, false)))
            .owner(ov.uid, ov.gid)
            .mtime(DEFAULT_MTIME),
        );
    }
    Ok((entries, archives))
}

/// Files of one copy that are hardlinks of each other in the source stay
/// one inode in the layer, as BuildKit keeps them: the first of each set
/// in layer order is the file, the others link to it.
fn keep_hardlinks(entries: &mut [LayerEntry], mut inodes: Vec<(u64, u64, usize)>) {
    inodes.sort_by(|a, b| {
        (a.0, a.1)
            .cmp(&(b.0, b.1))
            .then_with(|| cache::layer::layer_order(&entries[a.2].path, &entries[b.2].path))
    });
    for set in inodes.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
        let Some((first, rest)) = set.split_first() else {
            continue;
        };
        let target = entries[first.2].path.clone();
        for &(_, _, i) in rest {
            entries[i].kind = LayerKind::Hardlink(target.clone());
        }
    }
}

/// Adds a directory entry (0755, `uid`:`gid`) for each of `dirs`
/// (absolute paths the image lacks, see [`super::dest::Dest::missing`])
/// that `entries` does not hold already: the parents a COPY creates, or
/// what WORKDIR creates (owned by the user).
pub fn with_dirs(
    mut entries: Vec<LayerEntry>,
    dirs: &[String],
    uid: u32,
    gid: u32,
) -> Vec<LayerEntry> {
    let have: std::collections::HashSet<PathBuf> = entries.iter().map(|e| e.path.clone()).collect();
    for d in dirs {
        let path = PathBuf::from(d.trim_start_matches('/'));
        if path.as_os_str().is_empty() || have.contains(&path) {
            continue;
        }
        entries.push(
            LayerEntry::dir(path)
                .mode(0o755)
                .owner(uid, gid)
                .mtime(DEFAULT_MTIME),
        );
    }
    entries
}

/// Unpacks `layers` (bottom first) into a fresh directory in this process's
/// scratch directory of the store, as the current user: owners other than ours are recorded in the
/// `user.rootlesscontainers` xattr instead of being applied, so the tree
/// can be read without a user namespace. Used where the host side must read
/// the tree: `--output type=tar|local` and seeding a cache mount `from=`.
pub fn materialize(
    store: &Store,
    executor: &Executor,
    layers: &[Layer],
) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("copy-from-")
        .tempdir_in(store.scratch_dir())?;
    materialize_into(store, executor, layers, dir.path())?;
    Ok(dir)
}

/// Unpacks `layers` (bottom first) into `dir` the same way.
pub fn materialize_into(
    store: &Store,
    executor: &Executor,
    layers: &[Layer],
    dir: &Path,
) -> anyhow::Result<()> {
    let opts = cache::layer::UnpackOptions {
        whiteouts: cache::layer::WhiteoutMode::Apply,
        ownership: cache::layer::OwnershipMode::Record,
    };
    for l in layers {
        cache::layer::unpack(open_layer(store, executor, l)?, dir, &opts)
            .with_context(|| format!("unpacking layer {}", l.desc.digest))?;
    }
    Ok(())
}

/// The bytes of a layer: its blob (fetched if it is not here yet), or the
/// tar of its directory for a layer built here.
pub fn open_layer(
    store: &Store,
    executor: &Executor,
    l: &Layer,
) -> anyhow::Result<Box<dyn std::io::Read>> {
    if super::commit::is_dir_layer(store, l) {
        return Ok(Box::new(executor.open_dir_layer(l)?));
    }
    ensure_blob(store, executor.registry()?, l)?;
    Ok(Box::new(store.blobs().open(&l.desc.digest)?))
}

/// Reads one account file (`etc/passwd`, `etc/group`) from a stack of
/// layers, topmost first wins, at most its first
/// [`runtime::sandbox::user::MAX_ACCOUNT_FILE`] bytes in whole lines;
/// `None` if no layer has it.
pub fn read_from_layers(
    store: &Store,
    executor: &Executor,
    layers: &[Layer],
    path: &str,
) -> anyhow::Result<Option<Vec<u8>>> {
    for l in layers.iter().rev() {
        let mut found = None;
        cache::layer::for_each_entry(open_layer(store, executor, l)?, |e, r| {
            if found.is_none() && e.path == Path::new(path) && matches!(e.kind, LayerKind::File(_))
            {
                // A read error surfaces from the layer's own digest check.
                found = Some(runtime::sandbox::user::read_account_file(&mut *r).into_bytes());
            }
            Ok(())
        })
        .with_context(|| format!("reading layer {}", l.desc.digest))?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// Resolves `user[:group]` (names or numbers) against the image's
/// `/etc/passwd` and `/etc/group`. A numeric user without a group gets the
/// same number as group, as Docker does for `--chown`.
pub fn resolve_owner(
    store: &Store,
    executor: &Executor,
    layers: &[Layer],
    spec: &str,
) -> anyhow::Result<(u32, u32)> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |file: &str, name: &str| -> anyhow::Result<Option<(u32, u32)>> {
        let Some(bytes) = read_from_layers(store, executor, layers, file)? else {
            return Ok(None);
        };
        for line in String::from_utf8_lossy(&bytes).lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 3 && f[0] == name {
                let id = f[2].parse().unwrap_or(0);
                let gid = f.get(3).and_then(|g| g.parse().ok()).unwrap_or(id);
                return Ok(Some((id, gid)));
            }
        }
        Ok(None)
    };
    let (uid, primary) = match user.parse::<u32>() {
        Ok(n) => (n, n),
        Err(_) => lookup("etc/passwd", user)?
            .ok_or_else(|| anyhow::anyhow!("--chown={spec}: no user {user:?} in the image's /etc/passwd; use a number or create the user first"))?,
    };
    let gid = match group {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup("etc/group", g)?
                .map(|(id, _)| id)
                .ok_or_else(|| anyhow::anyhow!("--chown={spec}: no group {g:?} in the image's /etc/group; use a number or create the group first"))?,
        },
    };
    Ok((uid, gid))
}

/// Parses `--chmod`, octal or symbolic.
pub fn chmod_of(op: &frontend::FileOp) -> anyhow::Result<Option<Chmod>> {
    match (&op.chmod, op.chmod_bits) {
        (None, _) => Ok(None),
        (Some(_), Some(b)) => Ok(Some(Chmod::Octal(b))),
        (Some(s), None) => Ok(Some(Chmod::parse(s)?)),
    }
}
