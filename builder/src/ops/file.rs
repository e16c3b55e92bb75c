//! File ops: COPY/ADD from a directory (the context, a named context, or —
//! through [`super::from`] — a stage's or image's merged tree) and WORKDIR's
//! mkdir, turned into a layer directly from the selected files — nothing is
//! staged on disk.
//!
//! Ownership follows Docker: files from the context belong to 0:0 unless
//! `--chown` says otherwise; `--chown` names are looked up in the
//! destination's `/etc/passwd` and `/etc/group` (read out of the layers
//! below, topmost first). Modes are the context's minus the umask bits (see
//! [`crate::context::select::Entry::image_mode`]), or `--chmod`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use cache::layer::{
    Content, Entry as LayerEntry, EntryKind as LayerKind, WriteOptions, write_layer,
};
use cache::store::Store;

use super::Layer;
use super::source::ensure_blob;
use crate::context::checksum::Overrides;
use crate::context::select::{EntryKind, Selection};

/// Docker leaves mtimes of copied files as they are; strata clamps them to
/// this (1970-01-01 + 0) when no `SOURCE_DATE_EPOCH` is given, so the same
/// files always make the same layer and a cache hit equals a rebuild.
const DEFAULT_MTIME: i64 = 0;

/// The layer entries of a selection from `root` (the directory the
/// entries' `rel` paths are relative to), not written yet: the caller adds
/// the missing parents ([`with_dirs`]) and writes them (a `COPY --from`
/// inside the user namespace). `preserve`: keep the source's modes and
/// owners (`--from`) instead of the context rules.
pub fn copy_entries(
    root: &Path,
    sel: &Selection,
    ov: &Overrides,
    preserve: bool,
    unpack_archives: bool,
    inline: &[frontend::InlineFile],
    dest: &str,
) -> anyhow::Result<Vec<LayerEntry>> {
    let mut entries = Vec::new();
    for e in &sel.entries {
        if unpack_archives && e.kind == EntryKind::File && !preserve {
            let abs = root.join(&e.rel);
            match archive_kind(&abs)? {
                ArchiveKind::Tar => {
                    // ADD unpacks into the destination directory.
                    let into = if e.dest.ends_with('/') {
                        e.dest.clone()
                    } else {
                        e.dest
                            .rsplit_once('/')
                            .map(|(d, _)| format!("{d}/"))
                            .unwrap_or_else(|| "/".into())
                    };
                    entries.extend(archive_entries(&abs, &into, ov)?);
                    continue;
                }
                ArchiveKind::Unsupported(kind) => {
                    return Err(crate::not_supported(&format!(
                        "ADD of a {kind} archive ({})",
                        e.rel
                    )));
                }
                ArchiveKind::NotArchive => {}
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
        };
        // From the context: the umask-free mode and 0:0 unless --chown.
        // From a stage or image: the source's exact mode and owner.
        let (mode, (uid, gid)) = if preserve {
            let m = match (&e.kind, ov.chmod) {
                (EntryKind::Symlink(_), _) => 0o777,
                (_, Some(m)) => m,
                (_, None) => e.host_mode,
            };
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
            .mtime(DEFAULT_MTIME);
        for (k, v) in &e.xattrs {
            le = le.xattr(k.clone(), v.clone());
        }
        entries.push(le);
    }
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
            .mode(ov.chmod.unwrap_or(f.mode))
            .owner(ov.uid, ov.gid)
            .mtime(DEFAULT_MTIME),
        );
    }
    Ok(entries)
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

/// Writes entries as a layer blob into the store (no layer for nothing).
pub fn write_entries(
    store: &Store,
    entries: Vec<LayerEntry>,
    opts: &WriteOptions,
) -> anyhow::Result<Option<Layer>> {
    if entries.is_empty() {
        return Ok(None);
    }
    let mut w = store.blobs().writer()?;
    let desc = write_layer(entries, opts, &mut w).context("writing the layer")?;
    let (digest, size) = w.commit(Some(&desc.digest))?;
    Ok(Some(Layer {
        desc: cache::image::Descriptor::new(desc.media_type, digest, size),
        diff_id: desc.diff_id,
        origin: None,
    }))
}

/// Unpacks `layers` (bottom first) into a fresh directory under the store's
/// `tmp/`, as the current user: owners other than ours are recorded in the
/// `user.rootlesscontainers` xattr instead of being applied, so the tree
/// can be read without a user namespace. Used where the host side must read
/// the tree: `--output type=tar|local` and seeding a cache mount `from=`.
pub fn materialize(store: &Store, layers: &[Layer]) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("copy-from-")
        .tempdir_in(store.root().join("tmp"))?;
    materialize_into(store, layers, dir.path())?;
    Ok(dir)
}

/// Unpacks `layers` (bottom first) into `dir` the same way.
pub fn materialize_into(store: &Store, layers: &[Layer], dir: &Path) -> anyhow::Result<()> {
    let opts = cache::layer::UnpackOptions {
        whiteouts: cache::layer::WhiteoutMode::Apply,
        ownership: cache::layer::OwnershipMode::Record,
    };
    for l in layers {
        ensure_blob(store, l)?;
        cache::layer::unpack(store.blobs().open(&l.desc.digest)?, dir, &opts)
            .with_context(|| format!("unpacking layer {}", l.desc.digest))?;
    }
    Ok(())
}

/// Reads one file (`etc/passwd`) from a stack of layers, topmost first
/// wins; `None` if no layer has it.
pub fn read_from_layers(
    store: &Store,
    layers: &[Layer],
    path: &str,
) -> anyhow::Result<Option<Vec<u8>>> {
    for l in layers.iter().rev() {
        ensure_blob(store, l)?;
        let mut found = None;
        let mut read_err = None;
        cache::layer::for_each_entry(store.blobs().open(&l.desc.digest)?, |e, r| {
            if found.is_none() && e.path == Path::new(path) && matches!(e.kind, LayerKind::File(_))
            {
                let mut b = Vec::new();
                match r.read_to_end(&mut b) {
                    Ok(_) => found = Some(b),
                    Err(err) => read_err = Some(err),
                }
            }
            Ok(())
        })
        .with_context(|| format!("reading layer {}", l.desc.digest))?;
        if let Some(e) = read_err {
            return Err(anyhow::anyhow!(
                "reading /{path} from layer {}: {e}",
                l.desc.digest
            ));
        }
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// Resolves `user[:group]` (names or numbers) against the image's
/// `/etc/passwd` and `/etc/group`. A numeric user without a group gets the
/// same number as group, as Docker does for `--chown`.
pub fn resolve_owner(store: &Store, layers: &[Layer], spec: &str) -> anyhow::Result<(u32, u32)> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |file: &str, name: &str| -> anyhow::Result<Option<(u32, u32)>> {
        let Some(bytes) = read_from_layers(store, layers, file)? else {
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

/// Parses `--chmod` when given in octal; symbolic modes are refused.
pub fn chmod_bits(op: &frontend::FileOp) -> anyhow::Result<Option<u32>> {
    match (&op.chmod, op.chmod_bits) {
        (None, _) => Ok(None),
        (Some(_), Some(b)) => Ok(Some(b)),
        (Some(s), None) => match u32::from_str_radix(s, 8) {
            Ok(b) if b <= 0o7777 => Ok(Some(b)),
            _ => bail!("--chmod={s}: not supported yet: symbolic modes; use octal like 0755"),
        },
    }
}

/// What a local ADD source is, by its first bytes (Docker decides by
/// content, not by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// A tar, plain, gzip or zstd: ADD unpacks it.
    Tar,
    /// bzip2 or xz: an archive strata cannot unpack yet.
    Unsupported(&'static str),
    /// Anything else is copied as a file.
    NotArchive,
}

/// Sniffs a file's first 512 bytes.
pub fn archive_kind(path: &Path) -> anyhow::Result<ArchiveKind> {
    use std::io::Read as _;
    let mut head = [0u8; 512];
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    let h = &head[..n];
    Ok(
        if h.starts_with(&[0x1f, 0x8b]) || h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            ArchiveKind::Tar
        } else if h.starts_with(b"BZh") {
            ArchiveKind::Unsupported("bzip2")
        } else if h.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            ArchiveKind::Unsupported("xz")
        } else if n >= 262 && &h[257..262] == b"ustar" {
            ArchiveKind::Tar
        } else {
            ArchiveKind::NotArchive
        },
    )
}

/// The entries of a local archive unpacked under `dest` (ADD): the tar's
/// own modes and owners unless `--chown`, mtimes clamped like every copy.
pub fn archive_entries(path: &Path, dest: &str, ov: &Overrides) -> anyhow::Result<Vec<LayerEntry>> {
    let base = PathBuf::from(dest.trim_start_matches('/'));
    let mut out = Vec::new();
    let f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut read_err = None;
    cache::layer::for_each_entry(f, |mut e, r| {
        if let LayerKind::File(_) = e.kind {
            let mut b = Vec::new();
            if let Err(err) = std::io::Read::read_to_end(r, &mut b) {
                read_err = Some(err);
            }
            e.kind = LayerKind::File(Content::Bytes(b));
        }
        if let LayerKind::Hardlink(t) = &e.kind {
            e.kind = LayerKind::Hardlink(base.join(t));
        }
        e.path = base.join(&e.path);
        if ov.explicit_owner {
            e.meta.uid = ov.uid;
            e.meta.gid = ov.gid;
        }
        e.meta.mtime = DEFAULT_MTIME;
        out.push(e);
        Ok(())
    })
    .with_context(|| format!("unpacking {} for ADD", path.display()))?;
    if let Some(e) = read_err {
        anyhow::bail!("reading {}: {e}", path.display());
    }
    Ok(out)
}
