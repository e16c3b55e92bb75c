//! Base layers unpacked while they download: one pass over the registry's
//! bytes hashes them, keeps the compressed blob in the store (a later push
//! or export re-sends it as it is) and unpacks it into the layer's
//! directory, instead of a download followed by a second read of the blob.
//!
//! The unpack runs where files of subordinate owners can be made
//! ([`runtime::Sandbox::as_owner`]: a user-namespace child, or in-process in
//! chroot isolation), fed through a pipe. The bytes go in frames ending
//! with a verdict: the child renames its temp directory into place only
//! after the parent has checked the blob's digest and stored it; on a
//! mismatch, a broken download or a kill, the temp directory is removed
//! (or left under a `.tmp-` name nothing trusts) and no layer directory
//! appears. Frames rather than end-of-file, because a forked sibling (a
//! parallel unpack or step) may hold a copy of the pipe's write end, so the
//! reader could never see the end of the pipe.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use cache::layer::{UnpackOptions, WhiteoutMode};
use cache::reference::Reference;
use cache::store::Store;
use cache::transport::registry::{RegistryClient, Teed, fetch_blob_teed};

use super::Layer;

/// The largest frame; a bigger write is split.
const MAX_FRAME: usize = 1 << 20;
/// The frame length that ends the stream with "verified: keep it".
const END: u32 = 0;
/// The frame length that ends the stream with "discard it".
const ABORT: u32 = u32::MAX;

/// How [`fetch_and_unpack`] ended.
pub(super) enum Streamed {
    /// The blob is stored and the layer directory is in place.
    Done,
    /// Nothing streamed usefully (the blob came meanwhile, or the download
    /// broke off): fetch and unpack the ordinary way, which retries.
    Fallback,
}

/// Downloads `layer`'s blob and unpacks it into `dir` (through `tmp`) at
/// the same time. `unpack_as_owner` runs the unpack closure where the
/// layer's owners can be made and returns its error text.
pub(super) fn fetch_and_unpack(
    client: &RegistryClient,
    store: &Store,
    layer: &Layer,
    tmp: PathBuf,
    dir: PathBuf,
    unpack_as_owner: impl FnOnce(Unpack) -> Result<(), String> + Send + 'static,
) -> anyhow::Result<Streamed> {
    let Some(hint) = layer.origin.as_deref().map(Reference::parse).transpose()? else {
        return Ok(Streamed::Fallback);
    };
    let (reader, writer) = io::pipe().context("a pipe for the layer being unpacked")?;
    let job = Unpack { reader, tmp, dir };
    let child = std::thread::Builder::new()
        .name("layer-unpack".into())
        .spawn(move || unpack_as_owner(job))
        .context("starting the layer unpacker")?;
    let mut frames = FrameWriter(writer);
    let got = fetch_blob_teed(client, store, &layer.desc, Some(&hint), &mut frames);
    // The child may be gone already (a bad tar): a failed verdict is fine.
    let _ = match got {
        Ok(Teed::Fetched) => frames.end(),
        _ => frames.abort(),
    };
    drop(frames);
    let unpacked = child
        .join()
        .map_err(|_| anyhow!("the unpacker of layer {} panicked", layer.desc.digest))?;
    match got {
        Ok(Teed::Fetched) => {
            unpacked.map_err(|e| anyhow!("unpacking layer {}: {e}", layer.desc.digest))?;
            Ok(Streamed::Done)
        }
        Ok(Teed::Present | Teed::Broken(_)) => Ok(Streamed::Fallback),
        Err(e) => Err(e).with_context(|| {
            format!(
                "fetching layer {} of {}",
                layer.desc.digest,
                layer.origin.as_deref().unwrap_or("a base image")
            )
        }),
    }
}

/// The unpacking half, handed to the owner's side: read the frames, unpack
/// into `tmp`, and rename it to `dir` only on the parent's "keep it".
pub(super) struct Unpack {
    reader: io::PipeReader,
    tmp: PathBuf,
    dir: PathBuf,
}

impl Unpack {
    /// Runs on the owner's side. On any failure `tmp` is removed (best
    /// effort) and no layer directory appears.
    pub(super) fn run(self) -> Result<(), String> {
        let Unpack { reader, tmp, dir } = self;
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
        let mut frames = FrameReader::new(reader);
        let opts = UnpackOptions {
            whiteouts: WhiteoutMode::Overlay,
            ..Default::default()
        };
        let unpacked = cache::layer::unpack(&mut frames, &tmp, &opts).map_err(|e| e.to_string());
        // Always read to the verdict, so the parent never blocks on a full
        // pipe; its verdict wins over a tar error caused by its abort.
        let verdict = frames.finish();
        let kept = verdict
            .and(unpacked)
            .and_then(|_| match std::fs::rename(&tmp, &dir) {
                Ok(()) => Ok(()),
                // Another build unpacked it first.
                Err(_) if dir.is_dir() => Err(String::new()),
                Err(e) => Err(format!("moving {} into place: {e}", dir.display())),
            });
        match kept {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = runtime::sandbox::userns::remove_tree(&tmp);
                if e.is_empty() { Ok(()) } else { Err(e) }
            }
        }
    }
}

/// The parent's end: data frames, then the verdict.
struct FrameWriter<W: Write>(W);

impl<W: Write> FrameWriter<W> {
    fn end(&mut self) -> io::Result<()> {
        self.0.write_all(&END.to_le_bytes())
    }

    fn abort(&mut self) -> io::Result<()> {
        self.0.write_all(&ABORT.to_le_bytes())
    }
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(MAX_FRAME);
        if n == 0 {
            return Ok(0);
        }
        // n <= MAX_FRAME < ABORT, so the cast is exact.
        self.0.write_all(&(n as u32).to_le_bytes())?;
        self.0.write_all(&buf[..n])?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The owner's end: the data of the frames, then end of stream at the
/// verdict (an error if it says "discard").
struct FrameReader<R: Read> {
    inner: R,
    /// Bytes left in the current frame.
    left: usize,
    /// The verdict, once read: true = keep.
    verdict: Option<bool>,
}

impl<R: Read> FrameReader<R> {
    fn new(inner: R) -> Self {
        FrameReader {
            inner,
            left: 0,
            verdict: None,
        }
    }

    /// Reads (and drops) whatever data is left, up to the verdict.
    fn finish(&mut self) -> Result<(), String> {
        let mut sink = [0u8; 1 << 16];
        loop {
            match self.read(&mut sink) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

impl<R: Read> Read for FrameReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.verdict {
                Some(true) => return Ok(0),
                Some(false) => return Err(io::Error::other("the download was abandoned")),
                None => {}
            }
            if self.left > 0 {
                let want = buf.len().min(self.left);
                let n = self.inner.read(&mut buf[..want])?;
                if n == 0 && want > 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the download stopped in the middle of the layer",
                    ));
                }
                self.left -= n;
                return Ok(n);
            }
            let mut len = [0u8; 4];
            self.inner.read_exact(&mut len).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    "the download stopped before its end was confirmed",
                )
            })?;
            match u32::from_le_bytes(len) {
                END => self.verdict = Some(true),
                ABORT => self.verdict = Some(false),
                n => self.left = n as usize,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(data: &[u8], keep: bool) -> Vec<u8> {
        let mut w = FrameWriter(Vec::new());
        for chunk in data.chunks(7) {
            w.write_all(chunk).expect("write");
        }
        if keep { w.end() } else { w.abort() }.expect("verdict");
        w.0
    }

    #[test]
    fn frames_carry_the_bytes_and_end_at_the_verdict() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let bytes = framed(&data, true);
        let mut r = FrameReader::new(&bytes[..]);
        let mut got = Vec::new();
        r.read_to_end(&mut got).expect("read");
        assert_eq!(got, data);
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn an_abandoned_download_is_an_error_not_an_end() {
        let data = b"part of a layer".to_vec();
        let bytes = framed(&data, false);
        let mut r = FrameReader::new(&bytes[..]);
        let mut got = Vec::new();
        assert!(r.read_to_end(&mut got).is_err());
        assert_eq!(got, data);
        assert!(r.finish().is_err());
        // A stream cut before any verdict (the parent was killed) too.
        let mut cut = framed(&data, true);
        cut.truncate(cut.len() - 4);
        let mut r = FrameReader::new(&cut[..]);
        assert!(r.finish().is_err());
    }

    #[test]
    fn unread_data_is_drained_up_to_the_verdict() {
        let data = vec![7u8; 5000];
        let bytes = framed(&data, true);
        let mut r = FrameReader::new(&bytes[..]);
        let mut first = [0u8; 10];
        r.read_exact(&mut first).expect("some");
        assert_eq!(r.finish(), Ok(()));
    }
}
