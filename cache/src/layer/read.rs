//! Reading a layer blob: detecting its compression by magic number,
//! decompressing (gzip with any number of members, zstd, or plain), and
//! parsing tar members into [`Entry`] values, whiteouts included. The
//! diff_id is computed from the decompressed bytes on the way, so a reader
//! never has to trust the one a manifest claims.

use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;

use super::compress::Compression;
use super::entry::{Content, Entry, EntryKind, Meta};
use super::error::{LayerError, Result};
use super::path::clean;
use super::whiteout::{WhiteoutName, classify};
use crate::digest::{Digest, Sha256};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Detects the compression of a buffered stream without consuming it.
pub fn detect<R: BufRead>(r: &mut R) -> io::Result<Compression> {
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&ZSTD_MAGIC) {
        Compression::Zstd { level: 0 }
    } else if head.starts_with(&GZIP_MAGIC) {
        Compression::Gzip { level: 0 }
    } else {
        Compression::None
    })
}

/// A decompressing reader over a layer blob (levels in the detected
/// [`Compression`] are meaningless and reported as 0).
pub struct Decompressed<R: Read> {
    inner: DecoderKind<R>,
}

enum DecoderKind<R: Read> {
    Plain(BufReader<R>),
    Gzip(Box<flate2::bufread::MultiGzDecoder<BufReader<R>>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<R>>>),
}

impl<R: Read> Decompressed<R> {
    /// Wraps `r`, choosing the decoder from the first bytes.
    pub fn new(r: R) -> io::Result<(Self, Compression)> {
        let mut br = BufReader::with_capacity(256 * 1024, r);
        let c = detect(&mut br)?;
        let inner = match c {
            Compression::None => DecoderKind::Plain(br),
            Compression::Gzip { .. } => {
                DecoderKind::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(br)))
            }
            Compression::Zstd { .. } => {
                DecoderKind::Zstd(Box::new(zstd::stream::read::Decoder::with_buffer(br)?))
            }
        };
        Ok((Decompressed { inner }, c))
    }
}

impl<R: Read> Read for Decompressed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            DecoderKind::Plain(r) => r.read(buf),
            DecoderKind::Gzip(r) => r.read(buf),
            DecoderKind::Zstd(r) => r.read(buf),
        }
    }
}

/// Hashes everything read through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// What reading a whole layer established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadSummary {
    pub compression: Compression,
    /// sha256 of the decompressed stream, trailing padding included.
    pub diff_id: Digest,
    pub uncompressed_size: u64,
    pub entries: u64,
}

fn pax_u64(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

fn pax_i64(v: &[u8]) -> Option<i64> {
    // PAX mtimes may carry a fraction ("1700000000.5"); seconds are kept.
    let s = std::str::from_utf8(v).ok()?.trim();
    let secs = s.split('.').next()?;
    secs.parse().ok()
}

/// Converts one tar member into an [`Entry`] (file content excluded).
/// Returns `None` for members that carry no filesystem object (global PAX
/// headers, the root directory).
fn to_entry<R: Read>(member: &mut tar::Entry<'_, R>) -> Result<Option<(Entry, u64)>> {
    let raw_path = member.path().map_err(LayerError::Stream)?.into_owned();
    let header = member.header().clone();
    let etype = header.entry_type();
    if matches!(etype, tar::EntryType::XGlobalHeader) {
        return Ok(None);
    }
    let bad = |reason: &str| LayerError::invalid(&raw_path, reason.to_string());
    let Some(path) = clean(&raw_path).map_err(|r| LayerError::escape(&raw_path, r))? else {
        return Ok(None);
    };
    // An all-NUL numeric field reads as 0, as Go's archive/tar (and so
    // Docker) reads it; some tar writers leave uid/gid/mtime unset.
    let old = header.as_old();
    let num = |v: std::io::Result<u64>, field: &[u8], what: &str| match v {
        Ok(n) => Ok(n),
        Err(_) if field.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        Err(_) => Err(bad(&format!("unreadable {what}"))),
    };
    let mut meta = Meta {
        mode: num(header.mode().map(u64::from), &old.mode, "mode")? as u32 & 0o7777,
        uid: u32::try_from(num(header.uid(), &old.uid, "uid")?)
            .map_err(|_| bad("uid does not fit 32 bits"))?,
        gid: u32::try_from(num(header.gid(), &old.gid, "gid")?)
            .map_err(|_| bad("gid does not fit 32 bits"))?,
        mtime: i64::try_from(num(header.mtime(), &old.mtime, "mtime")?)
            .map_err(|_| bad("mtime out of range"))?,
        xattrs: Vec::new(),
    };
    if let Some(exts) = member.pax_extensions().map_err(LayerError::Stream)? {
        for ext in exts {
            let ext = ext.map_err(LayerError::Stream)?;
            let key = ext.key_bytes();
            let value = ext.value_bytes();
            match key {
                b"uid" => {
                    meta.uid = pax_u64(value)
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(|| bad("bad PAX uid"))?
                }
                b"gid" => {
                    meta.gid = pax_u64(value)
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(|| bad("bad PAX gid"))?
                }
                b"mtime" => meta.mtime = pax_i64(value).ok_or_else(|| bad("bad PAX mtime"))?,
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        let name = String::from_utf8(name.to_vec())
                            .map_err(|_| bad("xattr name is not UTF-8"))?;
                        meta.xattrs.push((name, value.to_vec()));
                    }
                }
            }
        }
    }
    meta.xattrs.sort();
    let size = member.size();
    let link = || -> Result<PathBuf> {
        let l = member
            .link_name()
            .map_err(LayerError::Stream)?
            .ok_or_else(|| bad("link without a target"))?;
        Ok(l.into_owned())
    };
    let dev = || -> Result<(u32, u32)> {
        let major = header
            .device_major()
            .map_err(|_| bad("unreadable device major"))?
            .unwrap_or(0);
        let minor = header
            .device_minor()
            .map_err(|_| bad("unreadable device minor"))?
            .unwrap_or(0);
        Ok((major, minor))
    };
    let kind = match etype {
        tar::EntryType::Regular | tar::EntryType::Continuous => match classify(&path) {
            WhiteoutName::None => EntryKind::File(Content::Bytes(Vec::new())),
            WhiteoutName::Remove(target) => {
                // `.wh..` would name the parent: clean() refuses it.
                let target = clean(&target)
                    .map_err(|r| LayerError::escape(&raw_path, format!("whiteout target: {r}")))?
                    .ok_or_else(|| LayerError::escape(&raw_path, "whiteout of the root"))?;
                return Ok(Some((
                    Entry {
                        path: target,
                        kind: EntryKind::Whiteout,
                        meta,
                    },
                    0,
                )));
            }
            WhiteoutName::Opaque(dir) => {
                return Ok(Some((
                    Entry {
                        path: dir,
                        kind: EntryKind::Opaque,
                        meta,
                    },
                    0,
                )));
            }
        },
        tar::EntryType::Directory => EntryKind::Dir,
        tar::EntryType::Symlink => EntryKind::Symlink(link()?),
        tar::EntryType::Link => EntryKind::Hardlink(link()?),
        tar::EntryType::Char => {
            let (major, minor) = dev()?;
            EntryKind::CharDevice { major, minor }
        }
        tar::EntryType::Block => {
            let (major, minor) = dev()?;
            EntryKind::BlockDevice { major, minor }
        }
        tar::EntryType::Fifo => EntryKind::Fifo,
        other => {
            return Err(bad(&format!(
                "unsupported tar member type {:?}",
                other.as_byte() as char
            )));
        }
    };
    if !matches!(kind, EntryKind::File(_)) && classify(&path) != WhiteoutName::None {
        return Err(bad(
            "a whiteout name on something other than a regular file",
        ));
    }
    Ok(Some((Entry { path, kind, meta }, size)))
}

/// Calls `f` for every entry of the layer in stream order. For regular
/// files the entry's content is `Content::Bytes(empty)` and the bytes are
/// read from the `Read` handed alongside (unread bytes are skipped).
/// Hardlink targets are cleaned paths; symlink targets are verbatim.
pub fn for_each_entry<R, F>(blob: R, mut f: F) -> Result<ReadSummary>
where
    R: Read,
    F: FnMut(Entry, &mut dyn Read) -> Result<()>,
{
    let (dec, compression) = Decompressed::new(blob).map_err(LayerError::Stream)?;
    let hashing = Hashing {
        inner: dec,
        hasher: Sha256::new(),
        size: 0,
    };
    // The guard bounds what the tar crate reads into memory per member.
    let mut archive = tar::Archive::new(super::tar_guard::TarGuard::new(hashing));
    let mut count = 0;
    for member in archive.entries().map_err(LayerError::Stream)? {
        let mut member = member.map_err(LayerError::Stream)?;
        let Some((mut entry, _size)) = to_entry(&mut member)? else {
            continue;
        };
        if let EntryKind::Hardlink(t) = &entry.kind {
            let t = clean(t)
                .map_err(|r| LayerError::escape(&entry.path, format!("hardlink target: {r}")))?
                .ok_or_else(|| LayerError::escape(&entry.path, "hardlink to the root"))?;
            entry.kind = EntryKind::Hardlink(t);
        }
        count += 1;
        f(entry, &mut member)?;
    }
    let mut rest = archive.into_inner().into_inner();
    // The stream may continue after the end-of-archive blocks (padding to a
    // record size); it is part of what the diff_id covers.
    io::copy(&mut rest, &mut io::sink()).map_err(LayerError::Stream)?;
    Ok(ReadSummary {
        compression,
        diff_id: rest.hasher.finalize(),
        uncompressed_size: rest.size,
        entries: count,
    })
}

/// Reads a whole layer into memory, file contents included. For tests,
/// tools and small layers; [`super::unpack`] streams instead.
pub fn read_entries<R: Read>(blob: R) -> Result<(Vec<Entry>, ReadSummary)> {
    let mut out = Vec::new();
    let summary = for_each_entry(blob, |mut e, content| {
        if let EntryKind::File(_) = e.kind {
            let mut buf = Vec::new();
            content.read_to_end(&mut buf).map_err(LayerError::Stream)?;
            e.kind = EntryKind::File(Content::Bytes(buf));
        }
        out.push(e);
        Ok(())
    })?;
    Ok((out, summary))
}
