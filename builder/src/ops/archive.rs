//! ADD of a local archive: Docker unpacks a source file when, after
//! decompression (gzip, bzip2, xz, zstd or none, told by the first bytes,
//! never by the name), it reads as a tar; anything else — including a
//! compressed file that is not a tar — is copied as it is.
//!
//! gzip and zstd are read through the store's layer decoder; bzip2 through
//! the pure-Rust `bzip2` backend; xz with `lzma-rs`, which only decodes into
//! a writer, so an xz archive is first decompressed into a scratch file.

use std::io::{BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use cache::layer::{Content, Entry as LayerEntry, EntryKind as LayerKind};

use super::file::DEFAULT_MTIME;
use crate::context::checksum::Overrides;

/// How a file is compressed, by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    /// Plain, gzip or zstd: the layer decoder tells them apart itself.
    LayerDecoder,
    Bzip2,
    Xz,
}

fn codec(head: &[u8]) -> Codec {
    if head.starts_with(b"BZh") {
        Codec::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Codec::Xz
    } else {
        Codec::LayerDecoder
    }
}

/// Whether a 512-byte block is a tar header: the POSIX `ustar` magic, or a
/// valid header checksum (old v7 tars have no magic).
fn is_tar_header(block: &[u8]) -> bool {
    if block.len() < 512 {
        return false;
    }
    if &block[257..262] == b"ustar" {
        return true;
    }
    let field = String::from_utf8_lossy(&block[148..156]);
    let Ok(stored) = u32::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
    else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    sum == stored && block[..100].iter().any(|&b| b != 0)
}

/// Reads up to `n` bytes (fewer only at the end of the stream).
fn read_head(r: &mut dyn Read, n: usize) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(n);
    r.take(n as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// A tar stream, and the scratch file (an xz archive's decompressed copy)
/// that must live while it is read.
pub type TarStream = (Box<dyn Read>, Option<tempfile::NamedTempFile>);

/// The decompressed stream of `path` if it is a tar, else `None`.
pub fn open_tar(path: &Path, scratch_dir: &Path) -> anyhow::Result<Option<TarStream>> {
    let open = || std::fs::File::open(path).with_context(|| format!("reading {}", path.display()));
    let magic = read_head(&mut open()?, 6)?;
    let (mut stream, scratch): (Box<dyn Read>, _) = match codec(&magic) {
        Codec::LayerDecoder => (Box::new(cache::layer::Decompressed::new(open()?)?.0), None),
        Codec::Bzip2 => (
            Box::new(bzip2::read::MultiBzDecoder::new(BufReader::new(open()?))),
            None,
        ),
        Codec::Xz => {
            let mut tmp = tempfile::NamedTempFile::new_in(scratch_dir)
                .with_context(|| format!("a scratch file in {}", scratch_dir.display()))?;
            if lzma_rs::xz_decompress(&mut BufReader::new(open()?), tmp.as_file_mut()).is_err() {
                return Ok(None);
            }
            let reread = tmp.reopen()?;
            (Box::new(reread), Some(tmp))
        }
    };
    // A compressed file that does not decompress is not an archive either.
    let Ok(head) = read_head(&mut stream, 512) else {
        return Ok(None);
    };
    if !is_tar_header(&head) {
        return Ok(None);
    }
    Ok(Some((Box::new(Cursor::new(head).chain(stream)), scratch)))
}

/// The entries of `path` unpacked under `dest` when it is a tar archive
/// (`None` when ADD must copy it as a file): the tar's own modes and
/// owners unless `--chown`, mtimes clamped like every copy.
pub fn entries(
    path: &Path,
    dest: &str,
    ov: &Overrides,
    scratch_dir: &Path,
) -> anyhow::Result<Option<Vec<LayerEntry>>> {
    let Some((tar, _scratch)) = open_tar(path, scratch_dir)? else {
        return Ok(None);
    };
    let base = PathBuf::from(dest.trim_start_matches('/'));
    let mut out = Vec::new();
    let mut read_err = None;
    cache::layer::for_each_entry(tar, |mut e, r| {
        if let LayerKind::File(_) = e.kind {
            let mut b = Vec::new();
            if let Err(err) = r.read_to_end(&mut b) {
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
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn tar_bytes() -> Vec<u8> {
        let mut out = Vec::new();
        let entries = vec![
            LayerEntry::file("a/hello.txt", Content::Bytes(b"hello".to_vec()))
                .mode(0o640)
                .owner(7, 8),
        ];
        let opts = cache::layer::WriteOptions {
            compression: cache::layer::Compression::None,
            ..Default::default()
        };
        cache::layer::write_layer(entries, &opts, &mut out).unwrap();
        out
    }

    fn unpack(bytes: &[u8]) -> Option<Vec<LayerEntry>> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("archive");
        std::fs::write(&p, bytes).unwrap();
        entries(&p, "/into/", &Overrides::default(), dir.path()).unwrap()
    }

    fn names(e: &[LayerEntry]) -> Vec<String> {
        e.iter().map(|e| e.path.display().to_string()).collect()
    }

    #[test]
    fn every_codec_unpacks_by_content() {
        let tar = tar_bytes();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&tar).unwrap();
        let bz = bz.finish().unwrap();
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut Cursor::new(&tar), &mut xz).unwrap();
        let zst = zstd_bytes(&tar);
        for (what, bytes) in [
            ("plain", tar.clone()),
            ("bzip2", bz),
            ("xz", xz),
            ("zstd", zst),
        ] {
            let e = unpack(&bytes).unwrap_or_else(|| panic!("{what} tar not unpacked"));
            assert!(
                names(&e).contains(&"into/a/hello.txt".to_string()),
                "{what}: {:?}",
                names(&e)
            );
            let f = e.iter().find(|e| e.path.ends_with("hello.txt")).unwrap();
            assert_eq!(
                (f.meta.mode & 0o7777, f.meta.uid, f.meta.gid),
                (0o640, 7, 8)
            );
        }
    }

    fn zstd_bytes(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut sink = cache::layer::LayerSink::new(
            &mut out,
            cache::layer::Compression::Zstd { level: 3 },
            cache::layer::MediaFlavor::Oci,
            1,
        )
        .unwrap();
        sink.write_all(data).unwrap();
        sink.finish().unwrap();
        out
    }

    #[test]
    fn compressed_files_that_are_not_tars_are_copied() {
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(b"just some text, not a tar").unwrap();
        assert!(unpack(&bz.finish().unwrap()).is_none());
        assert!(unpack(b"plain text").is_none());
        assert!(unpack(b"BZh9 but broken").is_none());
        assert!(unpack(b"\xfd7zXZ\0 but broken").is_none());
        assert!(unpack(&[0u8; 1024]).is_none(), "zero blocks are no header");
    }
}
