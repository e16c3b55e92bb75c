//! Writing a layer: entries (or a directory, see `walk.rs`) in, a
//! compressed tar blob and its [`LayerDescriptor`] out.
//!
//! Output is a function of the entries only: entries are sorted
//! ([`layer_order`]), whiteouts go before their siblings, uname/gname are
//! empty, xattrs are sorted, and with `source_date_epoch` every mtime later
//! than it is clamped to it — so the same input gives the same diff_id and
//! the same compressed digest, on any machine and with any thread count.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::compress::{Compression, LayerDescriptor, LayerSink, MediaFlavor};
use super::entry::{Content, Entry, EntryKind};
use super::error::{LayerError, Result};
use super::ownership::OwnerSource;
use super::path::{clean, layer_order};
use super::tar_header::{self, HeaderFields, TypeFlag};
use super::whiteout::{opaque_name, whiteout_name};

/// How to write a layer.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub compression: Compression,
    /// Media type family reported in the descriptor.
    pub flavor: MediaFlavor,
    /// `SOURCE_DATE_EPOCH`: mtimes after it are clamped to it. Passed
    /// explicitly by the builder; the environment is never read here.
    pub source_date_epoch: Option<i64>,
    /// libzstd worker threads (clamped to ≥ 1; does not change the output).
    pub zstd_workers: u32,
    /// For [`super::write_dir`]: where uid/gid come from.
    pub owners: OwnerSource,
    /// For [`super::write_dir`]: read the tree as an overlayfs upper dir,
    /// turning 0/0 character devices into `.wh.` whiteouts and the
    /// `user.overlay.opaque=y` xattr into an opaque marker.
    pub overlay_whiteouts: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            compression: Compression::default(),
            flavor: MediaFlavor::default(),
            source_date_epoch: None,
            zstd_workers: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            owners: OwnerSource::Disk,
            overlay_whiteouts: false,
        }
    }
}

/// Streams entries as tar members into a writer. Used by [`write_layer`]
/// (a sorted list) and by `write_dir` (a sorted walk).
pub(crate) struct TarEmitter<W: Write> {
    out: W,
    epoch: Option<i64>,
    header: Vec<u8>,
    buf: Vec<u8>,
}

impl<W: Write> TarEmitter<W> {
    pub(crate) fn new(out: W, epoch: Option<i64>) -> Self {
        TarEmitter {
            out,
            epoch,
            header: Vec::with_capacity(2048),
            buf: vec![0; 256 * 1024],
        }
    }

    /// Writes one entry whose path is already clean and relative.
    pub(crate) fn emit(&mut self, e: &Entry) -> Result<()> {
        let mtime = match self.epoch {
            Some(epoch) => e.meta.mtime.min(epoch),
            None => e.meta.mtime,
        };
        let mtime = u64::try_from(mtime).unwrap_or(0);
        let mut name = match &e.kind {
            EntryKind::Whiteout => whiteout_name(&e.path)
                .ok_or_else(|| LayerError::invalid(&e.path, "a whiteout needs a file name"))?,
            EntryKind::Opaque => opaque_name(&e.path),
            _ => e.path.clone(),
        }
        .into_os_string()
        .into_vec();
        let mut source = None;
        let mut xattrs = e.meta.xattrs.clone();
        xattrs.sort();
        xattrs.dedup_by(|a, b| a.0 == b.0);
        let (flag, link, dev, size) = match &e.kind {
            EntryKind::File(Content::Bytes(b)) => (TypeFlag::Regular, None, None, b.len() as u64),
            EntryKind::File(Content::Path(p)) => {
                // Size from the opened file itself, so header and content
                // describe the same inode.
                // O_NOFOLLOW: the caller resolved `p` to a regular file
                // (for a build context, inside the context); a symlink
                // swapped in since is refused, never followed to the host.
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(p)
                    .map_err(|err| LayerError::io("opening", p, err))?;
                let md = f
                    .metadata()
                    .map_err(|err| LayerError::io("reading metadata of", p, err))?;
                if !md.is_file() {
                    return Err(LayerError::invalid(
                        &e.path,
                        format!("{} is not a regular file", p.display()),
                    ));
                }
                source = Some(f);
                (TypeFlag::Regular, None, None, md.len())
            }
            EntryKind::Dir => {
                name.push(b'/');
                (TypeFlag::Dir, None, None, 0)
            }
            EntryKind::Symlink(t) => (TypeFlag::Symlink, Some(t.as_os_str().as_bytes()), None, 0),
            EntryKind::Hardlink(t) => (TypeFlag::Hardlink, Some(t.as_os_str().as_bytes()), None, 0),
            EntryKind::CharDevice { major, minor } => {
                (TypeFlag::Char, None, Some((*major, *minor)), 0)
            }
            EntryKind::BlockDevice { major, minor } => {
                (TypeFlag::Block, None, Some((*major, *minor)), 0)
            }
            EntryKind::Fifo => (TypeFlag::Fifo, None, None, 0),
            EntryKind::Whiteout | EntryKind::Opaque => (TypeFlag::Regular, None, None, 0),
        };
        self.header.clear();
        tar_header::encode(
            &HeaderFields {
                name: &name,
                link,
                flag,
                mode: e.meta.mode,
                uid: e.meta.uid,
                gid: e.meta.gid,
                size,
                mtime,
                dev,
                xattrs: &xattrs,
            },
            &mut self.header,
        );
        self.out
            .write_all(&self.header)
            .map_err(LayerError::Output)?;
        match &e.kind {
            EntryKind::File(Content::Bytes(b)) => {
                self.out.write_all(b).map_err(LayerError::Output)?;
            }
            EntryKind::File(Content::Path(p)) => {
                if let Some(f) = source {
                    self.copy_file(f, p, size)?
                }
            }
            _ => {}
        }
        let pad = tar_header::padding(size);
        self.out
            .write_all(&[0u8; 512][..pad])
            .map_err(LayerError::Output)?;
        Ok(())
    }

    /// Copies exactly `size` bytes of `path`; a file that shrinks or grows
    /// meanwhile is an error, because the header already promised `size`.
    fn copy_file(&mut self, mut f: File, path: &Path, size: u64) -> Result<()> {
        let mut left = size;
        while left > 0 {
            let want = (self.buf.len() as u64).min(left) as usize;
            let n = match f.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(LayerError::io(
                        "reading",
                        path,
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("file shrank while being archived ({left} bytes missing)"),
                        ),
                    ));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LayerError::io("reading", path, e)),
            };
            self.out
                .write_all(&self.buf[..n])
                .map_err(LayerError::Output)?;
            left -= n as u64;
        }
        let mut probe = [0u8; 1];
        match f.read(&mut probe) {
            Ok(0) => Ok(()),
            Ok(_) => Err(LayerError::io(
                "reading",
                path,
                io::Error::other("file grew while being archived"),
            )),
            Err(e) => Err(LayerError::io("reading", path, e)),
        }
    }

    /// Writes the end-of-archive marker and returns the writer.
    pub(crate) fn finish(mut self) -> Result<W> {
        self.out
            .write_all(&[0u8; 1024])
            .map_err(LayerError::Output)?;
        Ok(self.out)
    }
}

/// The path a member is sorted and deduplicated by.
fn tar_key(e: &Entry) -> PathBuf {
    match &e.kind {
        EntryKind::Whiteout => whiteout_name(&e.path).unwrap_or_default(),
        EntryKind::Opaque => opaque_name(&e.path),
        _ => e.path.clone(),
    }
}

/// Cleans paths, sorts, refuses duplicates and contradictions, and makes
/// every hardlink point at the first-written path of its inode.
fn prepare(mut entries: Vec<Entry>) -> Result<Vec<Entry>> {
    for e in &mut entries {
        let cleaned = clean(&e.path).map_err(|r| LayerError::invalid(&e.path, r))?;
        match (cleaned, &e.kind) {
            (Some(p), _) => e.path = p,
            (None, EntryKind::Opaque) => e.path = PathBuf::new(),
            (None, _) => {
                return Err(LayerError::invalid(
                    &e.path,
                    "the layer root itself cannot be an entry",
                ));
            }
        }
        if let EntryKind::Hardlink(t) = &e.kind {
            let t = clean(t)
                .map_err(|r| LayerError::invalid(&e.path, format!("hardlink target: {r}")))?
                .ok_or_else(|| LayerError::invalid(&e.path, "hardlink to the layer root"))?;
            e.kind = EntryKind::Hardlink(t);
        }
    }
    entries.sort_by(|a, b| layer_order(&tar_key(a), &tar_key(b)));
    let mut present = HashSet::new();
    for pair in entries.windows(2) {
        if tar_key(&pair[0]) == tar_key(&pair[1]) {
            return Err(LayerError::invalid(
                &pair[1].path,
                "appears twice in the layer",
            ));
        }
    }
    for e in &entries {
        if !matches!(e.kind, EntryKind::Whiteout | EntryKind::Opaque) {
            present.insert(e.path.clone());
        }
    }
    for e in &entries {
        if matches!(e.kind, EntryKind::Whiteout) && present.contains(&e.path) {
            return Err(LayerError::invalid(
                &e.path,
                "is both deleted (whiteout) and added in the same layer",
            ));
        }
    }
    canonical_hardlinks(&mut entries)?;
    Ok(entries)
}

/// Rewrites hardlink groups so the member carrying the content is the one
/// that sorts first; tar readers need a link's target before the link.
fn canonical_hardlinks(entries: &mut [Entry]) -> Result<()> {
    let index: HashMap<PathBuf, usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| !matches!(e.kind, EntryKind::Whiteout | EntryKind::Opaque))
        .map(|(i, e)| (e.path.clone(), i))
        .collect();
    // root index -> member indices (links only)
    let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        let EntryKind::Hardlink(_) = &e.kind else {
            continue;
        };
        let mut cur = i;
        let mut steps = 0;
        while let EntryKind::Hardlink(t) = &entries[cur].kind {
            cur = *index.get(t).ok_or_else(|| {
                LayerError::invalid(
                    &e.path,
                    format!("hardlink target {} is not in the layer", t.display()),
                )
            })?;
            steps += 1;
            if steps > entries.len() {
                return Err(LayerError::invalid(&e.path, "hardlinks form a loop"));
            }
        }
        if matches!(entries[cur].kind, EntryKind::Dir) {
            return Err(LayerError::invalid(&e.path, "hardlink to a directory"));
        }
        groups.entry(cur).or_default().push(i);
    }
    for (root, links) in groups {
        let first = links.iter().copied().chain([root]).min().unwrap_or(root);
        if first != root {
            entries[first].kind = entries[root].kind.clone();
            entries[first].meta = entries[root].meta.clone();
        }
        let first_path = entries[first].path.clone();
        for i in links.into_iter().chain([root]) {
            if i != first {
                entries[i].kind = EntryKind::Hardlink(first_path.clone());
            }
        }
    }
    Ok(())
}

/// Writes `entries` as one layer blob into `out` and describes it.
///
/// Entries may come in any order; they are sorted. The output writer gets
/// the compressed bytes only (the caller owns temp files and renames).
pub fn write_layer<W: Write>(
    entries: Vec<Entry>,
    opts: &WriteOptions,
    out: W,
) -> Result<LayerDescriptor> {
    let entries = prepare(entries)?;
    let sink = LayerSink::new(out, opts.compression, opts.flavor, opts.zstd_workers)
        .map_err(LayerError::Output)?;
    let mut tar = TarEmitter::new(sink, opts.source_date_epoch);
    for e in &entries {
        tar.emit(e)?;
    }
    let sink = tar.finish()?;
    let (desc, _) = sink.finish().map_err(LayerError::Output)?;
    Ok(desc)
}
