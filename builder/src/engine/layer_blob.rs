//! Layer blobs in two halves, because the entries of a layer can often be
//! read only inside the build's user namespace, while compression needs the
//! rayon pool, which a forked child does not have (its worker threads were
//! not copied by `fork`; a job queued there would never run).
//!
//! 1. [`write_tar`] runs in the child: the entries become an *uncompressed*
//!    deterministic tar in this process's scratch directory (the cache
//!    crate's writer: sorted, PAX, mtimes clamped to SOURCE_DATE_EPOCH).
//! 2. [`Engine::store_tar`] runs in the parent: the tar is streamed through
//!    the configured compression into the blob store, diff ID and blob digest
//!    computed on the way, and the diff ID checked against the child's.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use anyhow::Context as _;
use cache::digest::Digest;
use cache::image::Descriptor;
use cache::image::ManifestFormat;
use cache::layer::{Compression, Entry, LayerSink, MediaFlavor, WriteOptions, write_layer};
use runtime::userns::PipeCodec;

use super::Engine;

/// What the child wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TarOutcome {
    /// Number of layer entries (0: the step changed nothing).
    pub entries: u64,
    /// sha256 of the tar (meaningless when `entries` is 0).
    pub diff_id: String,
}

impl PipeCodec for TarOutcome {
    fn encode(&self) -> Vec<u8> {
        format!("{} {}", self.entries, self.diff_id).into_bytes()
    }

    fn decode(bytes: Vec<u8>) -> Option<Self> {
        let text = String::from_utf8(bytes).ok()?;
        let (n, d) = text.split_once(' ')?;
        Some(TarOutcome {
            entries: n.parse().ok()?,
            diff_id: d.to_string(),
        })
    }
}

/// In the child: writes `entries` as an uncompressed tar at `dest` (a new
/// file). Writes nothing for an empty list.
pub(crate) fn write_tar(
    entries: Vec<Entry>,
    dest: &Path,
    source_date_epoch: Option<i64>,
) -> Result<TarOutcome, String> {
    if entries.is_empty() {
        return Ok(TarOutcome {
            entries: 0,
            diff_id: String::new(),
        });
    }
    let n = entries.len() as u64;
    let file = File::create_new(dest).map_err(|e| format!("creating {}: {e}", dest.display()))?;
    let opts = WriteOptions {
        compression: Compression::None,
        source_date_epoch,
        zstd_workers: 1,
        ..WriteOptions::default()
    };
    let desc = write_layer(entries, &opts, BufWriter::new(file)).map_err(|e| e.to_string())?;
    Ok(TarOutcome {
        entries: n,
        diff_id: desc.diff_id.to_string(),
    })
}

impl Engine {
    /// A fresh path in the scratch directory for a child's tar.
    pub(crate) fn scratch_tar(&self) -> std::path::PathBuf {
        self.store
            .scratch_dir()
            .join(format!("{}.tar", super::snapshots::temp_key("layer")))
    }

    /// The media type family of the layers this engine writes.
    fn flavor(&self) -> MediaFlavor {
        match self.opts.manifest_format {
            ManifestFormat::Docker => MediaFlavor::Docker,
            _ => MediaFlavor::Oci,
        }
    }

    /// In the parent: compresses the tar at `tar` into the blob store and
    /// returns its descriptor and diff ID. The tar is deleted afterwards.
    pub(crate) fn store_tar(
        &self,
        tar: &Path,
        expected_diff_id: &str,
    ) -> anyhow::Result<(Descriptor, Digest)> {
        let res = self.store_tar_inner(tar, expected_diff_id);
        let _ = std::fs::remove_file(tar);
        res
    }

    fn store_tar_inner(
        &self,
        tar: &Path,
        expected_diff_id: &str,
    ) -> anyhow::Result<(Descriptor, Digest)> {
        let mut input = BufReader::new(
            File::open(tar).with_context(|| format!("opening layer tar {}", tar.display()))?,
        );
        let writer = self.store.blobs().writer()?;
        let workers = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let mut sink = LayerSink::new(writer, self.opts.compression, self.flavor(), workers)
            .context("starting layer compression")?;
        std::io::copy(&mut input, &mut sink)
            .with_context(|| format!("compressing layer tar {}", tar.display()))?;
        let (desc, writer) = sink.finish().context("finishing layer compression")?;
        if desc.diff_id.to_string() != expected_diff_id {
            anyhow::bail!(
                "layer tar {} changed after it was written: it hashes to {}, expected {expected_diff_id}",
                tar.display(),
                desc.diff_id
            );
        }
        let (digest, size) = writer.commit(Some(&desc.digest))?;
        Ok((Descriptor::new(desc.media_type, digest, size), desc.diff_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_crosses_the_pipe() {
        let o = TarOutcome {
            entries: 3,
            diff_id: Digest::of(b"x").to_string(),
        };
        assert_eq!(TarOutcome::decode(o.encode()), Some(o));
        assert_eq!(TarOutcome::decode(b"nonsense".to_vec()), None);
    }
}
