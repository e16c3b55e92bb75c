//! Compression of a layer stream, with both digests computed on the way.
//!
//! [`LayerSink`] is a `Write` that receives the uncompressed tar. Each byte
//! is hashed once into the diff_id as it arrives, handed to the compressor,
//! and each compressed byte is hashed once into the blob digest and counted
//! as it leaves for the output writer. Nothing holds more than a few
//! compression members, so memory does not grow with the layer.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::digest::{Digest, Sha256};

/// Uncompressed bytes per gzip member. Part of the output format: changing
/// it changes every gzip layer digest, so it is a constant, not an option.
pub const GZIP_MEMBER_SIZE: usize = 8 << 20;

/// Most gzip members queued or being compressed at once, per layer.
const MAX_IN_FLIGHT: usize = 8;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar: the blob digest equals the diff_id.
    None,
    /// gzip (zlib-rs through flate2), written as independent members of
    /// [`GZIP_MEMBER_SIZE`] input bytes compressed in parallel. `level` 0–9.
    Gzip { level: u32 },
    /// zstd with libzstd's own worker threads. `level` 1–19.
    Zstd { level: i32 },
}

impl Default for Compression {
    /// gzip level 6: what Docker writes, and what every consumer accepts.
    fn default() -> Self {
        Compression::Gzip { level: 6 }
    }
}

/// Which family of media type names to describe the blob with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaFlavor {
    /// `application/vnd.oci.image.layer.v1.tar[+gzip|+zstd]`.
    #[default]
    Oci,
    /// Docker schema 2: `application/vnd.docker.image.rootfs.diff.tar.gzip`.
    /// Docker defines no uncompressed or zstd layer type; for those the
    /// names containerd uses (`…diff.tar`, `…diff.tar.zstd`) are returned.
    Docker,
}

/// The media type of a layer blob.
pub fn media_type(compression: Compression, flavor: MediaFlavor) -> &'static str {
    match (flavor, compression) {
        (MediaFlavor::Oci, Compression::None) => "application/vnd.oci.image.layer.v1.tar",
        (MediaFlavor::Oci, Compression::Gzip { .. }) => {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        }
        (MediaFlavor::Oci, Compression::Zstd { .. }) => {
            "application/vnd.oci.image.layer.v1.tar+zstd"
        }
        (MediaFlavor::Docker, Compression::None) => "application/vnd.docker.image.rootfs.diff.tar",
        (MediaFlavor::Docker, Compression::Gzip { .. }) => {
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        }
        (MediaFlavor::Docker, Compression::Zstd { .. }) => {
            "application/vnd.docker.image.rootfs.diff.tar.zstd"
        }
    }
}

/// What a finished layer blob is: the facts a manifest and a config need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDescriptor {
    /// sha256 of the bytes written (the blob name).
    pub digest: Digest,
    /// sha256 of the uncompressed tar (goes into `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// Number of bytes written.
    pub size: u64,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
    pub media_type: &'static str,
}

/// The output end: counts and (unless the stream is uncompressed, where the
/// blob digest *is* the diff_id) hashes every byte written.
struct Counted<W> {
    inner: W,
    hasher: Option<Sha256>,
    size: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Multi-member gzip compressed on the rayon pool.
///
/// Hand-rolled rather than taken from `gzp`: gzp's default features need
/// cmake (libz-ng-sys), its member boundaries depend on its own buffering,
/// and it brings ~20 crates; this is a few dozen lines over flate2 and
/// measured as fast (notes §4). Members cover fixed-size slices of the input,
/// so the output is byte-identical whatever the thread count.
struct GzipMembers<W> {
    out: W,
    level: u32,
    buf: Vec<u8>,
    in_flight: VecDeque<Receiver<Compressed>>,
    max_in_flight: usize,
    members: u64,
    /// Input and output buffers back from finished members, reused for the
    /// next ones: a fixed set of allocations instead of two fresh 8 MiB
    /// buffers per member, which the allocator's per-thread arenas (input
    /// freed on a worker, output freed here) let grow with the layer size.
    spare_in: Vec<Vec<u8>>,
    spare_out: Vec<Vec<u8>>,
}

/// A finished member: the compressed bytes (or the error), and the input
/// buffer handed back for reuse.
type Compressed = (io::Result<Vec<u8>>, Vec<u8>);

/// Bytes of each sample [`incompressible`] tries.
const PROBE_SAMPLE: usize = 32 << 10;
/// Samples per member.
const PROBE_SAMPLES: usize = 4;

/// Whether a member's data will not shrink: a few samples spread over it
/// (start, quarters), each deflated at level 1, all stay above 97% of
/// their size. Already-compressed files (`.gz`, `.jpg`, `.zip`, media,
/// packed binaries) and random bytes do; such a member is then *stored*
/// (deflate level 0: the bytes framed as they are) instead of searched for
/// matches at full effort for nothing. The probe costs about 1.5% of a
/// member's compression and depends only on the data, so the output stays
/// byte-identical on every run.
fn incompressible(data: &[u8]) -> bool {
    if data.len() < PROBE_SAMPLE * PROBE_SAMPLES {
        return false;
    }
    let step = data.len() / PROBE_SAMPLES;
    // Room for what deflate makes of random bytes (up to ~1.1x).
    let mut out = Vec::with_capacity(PROBE_SAMPLE * 2);
    (0..PROBE_SAMPLES).all(|i| {
        let sample = &data[i * step..i * step + PROBE_SAMPLE];
        out.clear();
        let mut c = flate2::Compress::new(flate2::Compression::fast(), false);
        matches!(
            c.compress_vec(sample, &mut out, flate2::FlushCompress::Finish),
            Ok(flate2::Status::StreamEnd)
        ) && out.len() * 100 > sample.len() * 97
    })
}

fn compress_member(data: &[u8], level: u32, mut out: Vec<u8>) -> io::Result<Vec<u8>> {
    let level = if level > 0 && incompressible(data) {
        0
    } else {
        level
    };
    // Room for the worst case (incompressible input: zlib's deflateBound
    // plus the gzip header and trailer), so the buffer never reallocates:
    // a doubling realloc would touch twice the memory. Untouched capacity
    // is not resident, so compressible members cost only what they use.
    let bound = data.len() + data.len() / 4096 + data.len() / 16384 + 64;
    out.clear();
    out.reserve(bound);
    let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::new(level));
    enc.write_all(data)?;
    enc.finish()
}

/// Waits for a compressed member. On a rayon worker (a batch of layers runs
/// its producers on the pool) it keeps executing pool jobs while waiting:
/// blocking there could deadlock with every worker waiting for a member
/// queued behind it.
fn wait_member(rx: &Receiver<Compressed>) -> io::Result<Compressed> {
    let gone = || io::Error::other("a gzip compression job ended without a result");
    if rayon::current_thread_index().is_none() {
        return rx.recv().map_err(|_| gone());
    }
    loop {
        match rx.try_recv() {
            Ok(r) => return Ok(r),
            Err(TryRecvError::Disconnected) => return Err(gone()),
            Err(TryRecvError::Empty) => {}
        }
        if !matches!(rayon::yield_now(), Some(rayon::Yield::Executed)) {
            match rx.recv_timeout(Duration::from_millis(1)) {
                Ok(r) => return Ok(r),
                Err(RecvTimeoutError::Disconnected) => return Err(gone()),
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }
}

impl<W: Write> GzipMembers<W> {
    fn new(out: W, level: u32) -> Self {
        GzipMembers {
            out,
            level: level.min(9),
            buf: Vec::with_capacity(GZIP_MEMBER_SIZE),
            in_flight: VecDeque::new(),
            // One per worker, so every worker is busy while the producer
            // fills the next member, and no more: this bounds memory (each
            // member in flight holds 8 MiB of input and up to 8 MiB of
            // output; a push encodes a layer next to its uploads and stays
            // under 100 MiB on two cores). Capped so a many-core machine
            // stays near 100 MiB per layer.
            max_in_flight: rayon::current_num_threads().clamp(1, MAX_IN_FLIGHT),
            members: 0,
            spare_in: Vec::new(),
            spare_out: Vec::new(),
        }
    }

    fn submit(&mut self) -> io::Result<()> {
        let next = self
            .spare_in
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(GZIP_MEMBER_SIZE));
        let chunk = std::mem::replace(&mut self.buf, next);
        let out = self.spare_out.pop().unwrap_or_default();
        let (tx, rx) = mpsc::sync_channel(1);
        let level = self.level;
        rayon::spawn(move || {
            let member = compress_member(&chunk, level, out);
            // The receiver only disappears if the writer already failed.
            let _ = tx.send((member, chunk));
        });
        self.in_flight.push_back(rx);
        self.members += 1;
        while self.in_flight.len() > self.max_in_flight {
            self.drain_one()?;
        }
        Ok(())
    }

    fn drain_one(&mut self) -> io::Result<()> {
        if let Some(rx) = self.in_flight.pop_front() {
            let (member, mut input) = wait_member(&rx)?;
            let mut member = member?;
            self.out.write_all(&member)?;
            input.clear();
            member.clear();
            self.spare_in.push(input);
            self.spare_out.push(member);
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        // An empty layer still needs one (empty) member to be valid gzip.
        if !self.buf.is_empty() || self.members == 0 {
            self.submit()?;
        }
        while !self.in_flight.is_empty() {
            self.drain_one()?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for GzipMembers<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = GZIP_MEMBER_SIZE - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == GZIP_MEMBER_SIZE {
            self.submit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Members are only complete at GZIP_MEMBER_SIZE boundaries; flushing
        // early would change the output, so flush is a no-op until finish.
        Ok(())
    }
}

/// Bytes per chunk handed to the diff_id hashing thread.
const HASH_CHUNK: usize = 1 << 20;
/// Chunks allocated for it (the bound on how far hashing may lag).
const HASH_BUFFERS: usize = 4;

/// sha256 of the uncompressed stream, computed on a thread of its own.
///
/// Hashing costs about 1 s of CPU per GiB; done inline it would sit on the
/// producer's serial path (read file → tar → hash → compress). Fed in 1 MiB
/// chunks through a bounded channel, with the buffers recycled, it runs
/// beside compression at the cost of one memcpy, and memory stays at
/// `HASH_BUFFERS` MiB. A plain thread rather than a rayon job: the producer
/// blocks on it, which must never happen between rayon workers.
struct HashThread {
    cur: Vec<u8>,
    full: Option<SyncSender<Vec<u8>>>,
    empty: Receiver<Vec<u8>>,
    handle: Option<JoinHandle<Sha256>>,
}

fn hash_thread_gone() -> io::Error {
    io::Error::other("the sha256 thread of the layer writer stopped")
}

impl HashThread {
    fn new() -> io::Result<Self> {
        let (full_tx, full_rx) = mpsc::sync_channel::<Vec<u8>>(HASH_BUFFERS);
        let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(HASH_BUFFERS);
        for _ in 1..HASH_BUFFERS {
            empty_tx
                .send(Vec::with_capacity(HASH_CHUNK))
                .map_err(|_| hash_thread_gone())?;
        }
        let handle = std::thread::Builder::new()
            .name("layer-sha256".into())
            .spawn(move || {
                let mut h = Sha256::new();
                for mut chunk in full_rx {
                    h.update(&chunk);
                    chunk.clear();
                    // Fails only once the writer is gone; then nobody cares.
                    let _ = empty_tx.send(chunk);
                }
                h
            })?;
        Ok(HashThread {
            cur: Vec::with_capacity(HASH_CHUNK),
            full: Some(full_tx),
            empty: empty_rx,
            handle: Some(handle),
        })
    }

    fn update(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = (HASH_CHUNK - self.cur.len()).min(data.len());
            self.cur.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.cur.len() == HASH_CHUNK {
                self.send()?;
            }
        }
        Ok(())
    }

    fn send(&mut self) -> io::Result<()> {
        let next = self.empty.recv().map_err(|_| hash_thread_gone())?;
        let chunk = std::mem::replace(&mut self.cur, next);
        self.full
            .as_ref()
            .ok_or_else(hash_thread_gone)?
            .send(chunk)
            .map_err(|_| hash_thread_gone())
    }

    fn finish(mut self) -> io::Result<Sha256> {
        if !self.cur.is_empty() {
            self.send()?;
        }
        drop(self.full.take());
        self.handle
            .take()
            .ok_or_else(hash_thread_gone)?
            .join()
            .map_err(|_| io::Error::other("the sha256 thread of the layer writer panicked"))
    }
}

enum Encoder<W: Write> {
    Plain(Counted<W>),
    Gzip(GzipMembers<Counted<W>>),
    Zstd(zstd::stream::write::Encoder<'static, Counted<W>>),
}

/// A `Write` for the uncompressed tar that compresses into `W` and computes
/// both digests in the same pass. Call [`LayerSink::finish`] at the end.
pub struct LayerSink<W: Write> {
    diff: HashThread,
    uncompressed: u64,
    enc: Encoder<W>,
    compression: Compression,
    flavor: MediaFlavor,
}

impl<W: Write> LayerSink<W> {
    /// A sink compressing with `compression`. `zstd_workers` is the number
    /// of libzstd worker threads (at least 1: libzstd's output is the same
    /// for any worker count ≥ 1 but differs from its single-threaded mode,
    /// so 0 is never used, keeping digests independent of the machine).
    pub fn new(
        out: W,
        compression: Compression,
        flavor: MediaFlavor,
        zstd_workers: u32,
    ) -> io::Result<Self> {
        let counted = |hash| Counted {
            inner: out,
            hasher: hash,
            size: 0,
        };
        let enc = match compression {
            Compression::None => Encoder::Plain(counted(None)),
            Compression::Gzip { level } => {
                Encoder::Gzip(GzipMembers::new(counted(Some(Sha256::new())), level))
            }
            Compression::Zstd { level } => {
                let mut z = zstd::stream::write::Encoder::new(counted(Some(Sha256::new())), level)?;
                z.multithread(zstd_workers.max(1))?;
                Encoder::Zstd(z)
            }
        };
        Ok(LayerSink {
            diff: HashThread::new()?,
            uncompressed: 0,
            enc,
            compression,
            flavor,
        })
    }

    /// Ends the compressed stream and returns the descriptor and the writer.
    pub fn finish(self) -> io::Result<(LayerDescriptor, W)> {
        let counted = match self.enc {
            Encoder::Plain(c) => c,
            Encoder::Gzip(g) => g.finish()?,
            Encoder::Zstd(z) => z.finish()?,
        };
        let mut counted = counted;
        counted.flush()?;
        let diff_id = self.diff.finish()?.finalize();
        let digest = match counted.hasher {
            Some(h) => h.finalize(),
            None => diff_id.clone(),
        };
        let desc = LayerDescriptor {
            digest,
            diff_id,
            size: counted.size,
            uncompressed_size: self.uncompressed,
            media_type: media_type(self.compression, self.flavor),
        };
        Ok((desc, counted.inner))
    }
}

impl<W: Write> Write for LayerSink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &mut self.enc {
            Encoder::Plain(c) => c.write(buf)?,
            Encoder::Gzip(g) => g.write(buf)?,
            Encoder::Zstd(z) => z.write(buf)?,
        };
        self.diff.update(&buf[..n])?;
        self.uncompressed += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.enc {
            Encoder::Plain(c) => c.flush(),
            Encoder::Gzip(g) => g.flush(),
            // Not forwarded: a zstd flush ends a block early, which would
            // make the output depend on when callers flush.
            Encoder::Zstd(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pseudo_random(n: usize) -> Vec<u8> {
        // xorshift: compressible enough to be quick, varied enough to matter.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if i % 3 == 0 {
                    (x & 0xff) as u8
                } else {
                    b'a' + (x % 4) as u8
                }
            })
            .collect()
    }

    #[test]
    fn gzip_members_decode_to_the_input_and_digests_match() {
        let data = pseudo_random(GZIP_MEMBER_SIZE * 2 + 12345);
        let mut sink = LayerSink::new(
            Vec::new(),
            Compression::Gzip { level: 1 },
            MediaFlavor::Oci,
            1,
        )
        .unwrap();
        sink.write_all(&data).unwrap();
        let (desc, blob) = sink.finish().unwrap();
        assert_eq!(desc.diff_id, Digest::of(&data));
        assert_eq!(desc.digest, Digest::of(&blob));
        assert_eq!(desc.size, blob.len() as u64);
        assert_eq!(desc.uncompressed_size, data.len() as u64);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&blob[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(
            back == data,
            "multi-member gzip did not decode to the input"
        );
        // Three members: two full ones and the tail.
        let members = blob.windows(3).filter(|w| *w == [0x1f, 0x8b, 0x08]).count();
        assert!(
            members >= 3,
            "expected at least 3 gzip members, saw {members}"
        );
    }

    /// xorshift bytes: no redundancy a compressor can find.
    fn random(n: usize) -> Vec<u8> {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn incompressible_members_are_stored_and_others_compressed() {
        assert!(incompressible(&random(GZIP_MEMBER_SIZE)));
        assert!(!incompressible(&pseudo_random(GZIP_MEMBER_SIZE)));
        assert!(!incompressible(&vec![0u8; GZIP_MEMBER_SIZE]));
        // Half random, half zeros in every sample: not skipped.
        let mixed: Vec<u8> = random(GZIP_MEMBER_SIZE)
            .iter()
            .enumerate()
            .map(|(i, b)| if (i / 1024) % 2 == 0 { *b } else { 0 })
            .collect();
        assert!(!incompressible(&mixed));
        // A stored member decodes to its input and costs a few bytes per
        // deflate block.
        let data = random(GZIP_MEMBER_SIZE + 999);
        let mut sink =
            LayerSink::new(Vec::new(), Compression::default(), MediaFlavor::Oci, 1).unwrap();
        sink.write_all(&data).unwrap();
        let (desc, blob) = sink.finish().unwrap();
        assert_eq!(desc.diff_id, Digest::of(&data));
        assert!(blob.len() < data.len() + data.len() / 1000 + 128);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&blob[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == data);
    }

    #[test]
    fn empty_input_is_valid_in_every_format() {
        for c in [
            Compression::None,
            Compression::Gzip { level: 6 },
            Compression::Zstd { level: 3 },
        ] {
            let sink = LayerSink::new(Vec::new(), c, MediaFlavor::Docker, 2).unwrap();
            let (desc, blob) = sink.finish().unwrap();
            assert_eq!(desc.diff_id, Digest::of(b""));
            assert_eq!(desc.digest, Digest::of(&blob));
            match c {
                Compression::None => assert!(blob.is_empty()),
                Compression::Gzip { .. } => {
                    let mut out = Vec::new();
                    flate2::read::MultiGzDecoder::new(&blob[..])
                        .read_to_end(&mut out)
                        .unwrap();
                    assert!(out.is_empty() && !blob.is_empty());
                }
                Compression::Zstd { .. } => {
                    assert!(zstd::decode_all(&blob[..]).unwrap().is_empty());
                }
            }
        }
    }
}
