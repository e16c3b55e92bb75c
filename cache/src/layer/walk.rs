//! Writing a directory tree (a rootfs, a COPY result, an overlay upper dir)
//! as a layer, streaming: the tree is walked depth-first in sorted order and
//! each entry is written as it is visited, so memory holds one directory
//! listing at a time plus the inodes seen with more than one link.

use std::collections::HashMap;
use std::fs::Metadata;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use walkdir::{DirEntry, WalkDir};

use super::compress::{LayerDescriptor, LayerSink};
use super::entry::{Content, Entry, EntryKind, Meta};
use super::error::{LayerError, Result};
use super::ownership::{OwnerSource, ROOTLESS_XATTR, Record};
use super::whiteout::{
    OPAQUE_MARKER, OVERLAY_OPAQUE_XATTR, OVERLAY_WHITEOUT_XATTR, WHITEOUT_PREFIX,
};
use super::write::{TarEmitter, WriteOptions};

/// xattrs never copied into a layer: overlayfs bookkeeping, our own
/// ownership records (turned back into header fields instead), and SELinux
/// labels, which belong to the host, not the image.
fn skip_xattr(name: &str) -> bool {
    name == ROOTLESS_XATTR
        || name.starts_with("user.overlay.")
        || name.starts_with("trusted.overlay.")
        || name == "security.selinux"
}

fn read_xattrs(path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        // Filesystems without xattr support simply have none.
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(LayerError::io("listing xattrs of", path, e)),
    };
    let mut out = Vec::new();
    for name in names {
        let Some(name) = name.to_str().map(str::to_string) else {
            continue;
        };
        if skip_xattr(&name) {
            continue;
        }
        match xattr::get(path, &name) {
            Ok(Some(v)) => out.push((name, v)),
            Ok(None) => {}
            Err(e) => return Err(LayerError::io("reading xattrs of", path, e)),
        }
    }
    out.sort();
    Ok(out)
}

fn is_overlay_whiteout(md: &Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

/// The other overlay whiteout: an empty file marked with an xattr.
fn is_xattr_whiteout(path: &Path, md: &Metadata) -> bool {
    md.file_type().is_file()
        && md.len() == 0
        && matches!(xattr::get(path, OVERLAY_WHITEOUT_XATTR), Ok(Some(_)))
}

/// Sort rank of a directory entry, mirroring `path::layer_order`: entries
/// that become whiteouts go first.
fn rank(e: &DirEntry, overlay: bool) -> u8 {
    let name = e.file_name().as_bytes();
    if name == OPAQUE_MARKER.as_bytes() {
        0
    } else if name.starts_with(WHITEOUT_PREFIX.as_bytes())
        || (overlay
            && e.metadata()
                .is_ok_and(|m| is_overlay_whiteout(&m) || is_xattr_whiteout(e.path(), &m)))
    {
        1
    } else {
        2
    }
}

/// Walks `dir` and writes it as a layer into `out`. The root directory
/// itself is not an entry; symlinks are stored, never followed; sockets are
/// skipped (tar cannot hold them).
pub fn write_dir<W: Write>(dir: &Path, opts: &WriteOptions, out: W) -> Result<LayerDescriptor> {
    let overlay = opts.overlay_whiteouts;
    let sink = LayerSink::new(out, opts.compression, opts.flavor, opts.zstd_workers)
        .map_err(LayerError::Output)?;
    let mut tar = TarEmitter::new(sink, opts.source_date_epoch);
    let euid = rustix::process::geteuid().as_raw();
    let egid = rustix::process::getegid().as_raw();
    let mut seen: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let walker = WalkDir::new(dir)
        .follow_links(false)
        .min_depth(1)
        .sort_by(move |a, b| {
            rank(a, overlay)
                .cmp(&rank(b, overlay))
                .then_with(|| a.file_name().as_bytes().cmp(b.file_name().as_bytes()))
        });
    for item in walker {
        let de = item.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_path_buf();
            LayerError::io("walking", path, e.into())
        })?;
        let abs = de.path();
        let rel = abs
            .strip_prefix(dir)
            .map_err(|_| LayerError::invalid(abs, "walked outside the layer directory"))?
            .to_path_buf();
        let md = de
            .metadata()
            .map_err(|e| LayerError::io("reading metadata of", abs, e.into()))?;
        let ft = md.file_type();
        let mut meta = Meta {
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime: md.mtime(),
            xattrs: Vec::new(),
        };
        let mut record = None;
        if !ft.is_symlink() {
            meta.xattrs = read_xattrs(abs)?;
            if opts.owners == OwnerSource::Xattr {
                record = match xattr::get(abs, ROOTLESS_XATTR) {
                    Ok(Some(v)) => Some(
                        Record::decode(&v).map_err(|e| LayerError::invalid(abs, e.to_string()))?,
                    ),
                    Ok(None) => None,
                    Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => None,
                    Err(e) => return Err(LayerError::io("reading xattrs of", abs, e)),
                };
            }
        }
        if opts.owners == OwnerSource::Xattr {
            match record {
                Some(r) => {
                    meta.uid = r.uid;
                    meta.gid = r.gid;
                }
                None => {
                    if meta.uid == euid {
                        meta.uid = 0;
                    }
                    if meta.gid == egid {
                        meta.gid = 0;
                    }
                }
            }
        }
        let kind = if let Some(Record {
            mode: Some(mode),
            rdev,
            ..
        }) = record.filter(|_| ft.is_file())
        {
            // A device node that unpack had to stand in for with a file.
            let rdev = rdev.unwrap_or(0);
            let (major, minor) = (
                rustix::fs::major(rdev as rustix::fs::Dev),
                rustix::fs::minor(rdev as rustix::fs::Dev),
            );
            meta.mode = mode & 0o7777;
            match mode & libc::S_IFMT {
                libc::S_IFCHR => EntryKind::CharDevice { major, minor },
                libc::S_IFBLK => EntryKind::BlockDevice { major, minor },
                libc::S_IFIFO => EntryKind::Fifo,
                _ => {
                    return Err(LayerError::invalid(
                        abs,
                        format!("{ROOTLESS_XATTR} records an unsupported file type {mode:o}"),
                    ));
                }
            }
        } else if ft.is_dir() {
            EntryKind::Dir
        } else if overlay && is_xattr_whiteout(abs, &md) {
            EntryKind::Whiteout
        } else if ft.is_file() {
            if md.nlink() > 1 {
                match seen.get(&(md.dev(), md.ino())) {
                    Some(first) => EntryKind::Hardlink(first.clone()),
                    None => {
                        seen.insert((md.dev(), md.ino()), rel.clone());
                        EntryKind::File(Content::Path(abs.to_path_buf()))
                    }
                }
            } else {
                EntryKind::File(Content::Path(abs.to_path_buf()))
            }
        } else if ft.is_symlink() {
            let t = std::fs::read_link(abs).map_err(|e| LayerError::io("reading link", abs, e))?;
            EntryKind::Symlink(t)
        } else if ft.is_char_device() && overlay && is_overlay_whiteout(&md) {
            EntryKind::Whiteout
        } else if ft.is_char_device() || ft.is_block_device() {
            let rdev = md.rdev() as rustix::fs::Dev;
            let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
            if ft.is_char_device() {
                EntryKind::CharDevice { major, minor }
            } else {
                EntryKind::BlockDevice { major, minor }
            }
        } else if ft.is_fifo() {
            EntryKind::Fifo
        } else {
            // Sockets: tar has no type for them and images never need them.
            continue;
        };
        if kind == EntryKind::Whiteout {
            // The whiteout device carries no meaningful metadata.
            meta = Entry::whiteout("x").meta;
        }
        let is_dir = kind == EntryKind::Dir;
        let entry = Entry {
            path: rel.clone(),
            kind,
            meta,
        };
        tar.emit(&entry)?;
        if is_dir && overlay {
            let opaque = matches!(
                xattr::get(abs, OVERLAY_OPAQUE_XATTR),
                Ok(Some(v)) if v == b"y"
            );
            if opaque {
                tar.emit(&Entry::opaque(rel))?;
            }
        }
    }
    let sink = tar.finish()?;
    let (desc, _) = sink.finish().map_err(LayerError::Output)?;
    Ok(desc)
}
