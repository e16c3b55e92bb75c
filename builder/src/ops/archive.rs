//! ADD of a local archive: Docker unpacks a source file when, after
//! decompression (gzip, bzip2, xz, zstd or none, told by the first bytes,
//! never by the name), it reads as a tar; anything else — including a
//! compressed file that is not a tar — is copied as it is.
//!
//! gzip and zstd are read through the store's layer decoder; bzip2 through
//! the pure-Rust `bzip2` backend; xz with `lzma-rs`, which decodes into a
//! writer, so a thread decodes into a pipe that the unpack reads.
//! Members are streamed straight into the layer directory
//! (`cache::layer::unpack_mapped`): memory and scratch space stay flat
//! whatever the archive unpacks to.

use std::io::{BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use cache::layer::UnpackOptions;

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

/// The decompressed stream of `path` if it is a tar, else `None`.
pub fn open_tar(path: &Path) -> anyhow::Result<Option<Box<dyn Read>>> {
    let open = || std::fs::File::open(path).with_context(|| format!("reading {}", path.display()));
    let magic = read_head(&mut open()?, 6)?;
    let mut stream: Box<dyn Read> = match codec(&magic) {
        Codec::LayerDecoder => Box::new(cache::layer::Decompressed::new(open()?)?.0),
        Codec::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(BufReader::new(open()?))),
        Codec::Xz => xz_stream(open()?)?,
    };
    // A compressed file that does not decompress is not an archive either.
    let Ok(head) = read_head(&mut stream, 512) else {
        return Ok(None);
    };
    if !is_tar_header(&head) {
        return Ok(None);
    }
    Ok(Some(Box::new(Cursor::new(head).chain(stream))))
}

/// An xz file decompressed as it is read: `lzma-rs` decodes into a writer,
/// so a thread decodes into a pipe this side reads (its memory is the
/// format's dictionary, at most 64 MiB for `xz -9`). A decoding error ends
/// the stream early, which the tar reader reports as a truncated archive.
fn xz_stream(file: std::fs::File) -> anyhow::Result<Box<dyn Read>> {
    let (reader, mut writer) = std::io::pipe().context("a pipe for the xz decoder")?;
    std::thread::Builder::new()
        .name("xz".into())
        .spawn(move || {
            let _ = lzma_rs::xz_decompress(&mut BufReader::new(file), &mut writer);
        })
        .context("starting the xz decoder")?;
    Ok(Box::new(reader))
}

/// An ADD source that is an archive, to unpack into a directory of the
/// layer.
#[derive(Debug, Clone)]
pub struct ArchiveAdd {
    /// The archive file.
    pub path: PathBuf,
    /// The directory it is unpacked into, relative to the layer root.
    pub into: PathBuf,
    /// `--chown`: every member's owner.
    pub owner: Option<(u32, u32)>,
}

/// Whether `path` is an archive ADD unpacks (a tar after decompression).
pub fn is_archive(path: &Path) -> anyhow::Result<bool> {
    Ok(open_tar(path)?.is_some())
}

impl ArchiveAdd {
    /// Streams the archive's members into `layer_dir`/`into`: the tar's
    /// own modes, owners (unless `--chown`) and mtimes, as Docker keeps
    /// them.
    pub fn unpack_into(&self, layer_dir: &Path, opts: &UnpackOptions) -> anyhow::Result<()> {
        let Some(tar) = open_tar(&self.path)? else {
            anyhow::bail!("{} is no longer an archive", self.path.display());
        };
        let dest = layer_dir.join(&self.into);
        std::fs::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;
        let owner = self.owner;
        cache::layer::unpack_mapped(tar, &dest, opts, &mut |e| {
            if let Some((uid, gid)) = owner {
                e.meta.uid = uid;
                e.meta.gid = gid;
            }
        })
        .with_context(|| format!("unpacking {} for ADD", self.path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cache::layer::{Content, Entry as LayerEntry};
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

    /// Unpacks `bytes` (as a file) into `into/` of a fresh directory;
    /// `None` when ADD would copy it instead.
    fn unpack(bytes: &[u8]) -> Option<tempfile::TempDir> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("archive");
        std::fs::write(&p, bytes).unwrap();
        if !is_archive(&p).unwrap() {
            return None;
        }
        let out = tempfile::tempdir().unwrap();
        let add = ArchiveAdd {
            path: p,
            into: PathBuf::from("into"),
            owner: None,
        };
        let opts = UnpackOptions {
            ownership: cache::layer::OwnershipMode::Record,
            ..Default::default()
        };
        add.unpack_into(out.path(), &opts).unwrap();
        Some(out)
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
            let out = unpack(&bytes).unwrap_or_else(|| panic!("{what} tar not unpacked"));
            let f = out.path().join("into/a/hello.txt");
            assert_eq!(std::fs::read(&f).unwrap(), b"hello", "{what}");
            use std::os::unix::fs::MetadataExt as _;
            let md = std::fs::metadata(&f).unwrap();
            assert_eq!(md.mode() & 0o7777, 0o640, "{what}");
            // Not ours to chown to: recorded for the layer writer.
            let rec = xattr::get(&f, cache::layer::ROOTLESS_XATTR).unwrap();
            assert!(rec.is_some(), "{what}: owner 7:8 recorded");
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
