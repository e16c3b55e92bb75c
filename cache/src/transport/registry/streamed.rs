//! Uploading a blob while its bytes are being made: a layer compressed
//! straight into the upload, with no temp blob written first and read back.
//!
//! The distribution API fits a stream whose digest is known only at the
//! end: `POST` opens an upload, `PATCH`es with `Content-Range` carry the
//! chunks as they fill, and the closing `PUT ?digest=` carries the rest and
//! names the digest, which the registry checks. A blob that fits in one
//! chunk goes in that single `PUT`.
//!
//! The chunks are sent by a thread of their own, so the maker goes on
//! filling the next chunk while one is on the wire; a rendezvous channel
//! keeps memory at two chunks per upload. The writer the maker gets never
//! fails: the same bytes usually also go to the local store (through a
//! tee), and a broken upload must not break that copy. The first upload
//! error is kept and returned at the end instead, and the caller uploads
//! the stored blob the ordinary way (which restarts and retries).

use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::client::{Call, RegistryClient, Repo, check_status};
use super::endpoint::Endpoint;
use super::error::{RegistryError, Result};
use super::upload::{BlobPushed, location_or, with_digest};
use crate::digest::Digest;

/// The most bytes one chunk holds (the client's chunk size if smaller):
/// several layers upload at a time, each with two chunks in memory.
pub const STREAM_CHUNK: usize = 4 << 20;

impl RegistryClient {
    /// Uploads into `repo` the blob `make` writes, while it writes it.
    /// `make` returns its own result and the blob's digest (known only
    /// once it is made). Returns `make`'s error if it fails; else its
    /// result and how the upload went — an upload error does not stop
    /// `make`, whose writer keeps accepting bytes.
    pub fn upload_while_made<T, E>(
        &self,
        repo: &Repo,
        make: impl FnOnce(&mut dyn Write) -> std::result::Result<(T, Digest), E>,
    ) -> std::result::Result<(T, Result<BlobPushed>), E> {
        let mut up = match self.start_streamed_upload(repo) {
            Ok(up) => up,
            Err(e) => {
                let (t, _) = make(&mut std::io::sink())?;
                return Ok((t, Err(e)));
            }
        };
        let chunk = up.chunk;
        std::thread::scope(|s| {
            let (tx, rx) = sync_channel::<Vec<u8>>(0);
            // Sent chunks come back to be filled again: two buffers per
            // upload, allocated once.
            let (back, spare) = sync_channel::<Vec<u8>>(1);
            let sender = s.spawn(move || {
                for mut data in rx {
                    up.send(&data);
                    data.clear();
                    let _ = back.try_send(data);
                }
                up
            });
            let mut w = Chunks {
                tx: Some(tx),
                spare,
                buf: Vec::new(),
                chunk,
            };
            let made = make(&mut w);
            let rest = std::mem::take(&mut w.buf);
            drop(w);
            let up = sender.join();
            let (t, digest) = made?;
            let how = match up {
                Ok(up) => up.finish(rest, &digest),
                Err(_) => Err(RegistryError::Other(
                    "the upload thread stopped unexpectedly".into(),
                )),
            };
            Ok((t, how))
        })
    }

    /// Opens an upload (`POST /v2/<repo>/blobs/uploads/`).
    fn start_streamed_upload(&self, repo: &Repo) -> Result<StreamedUpload<'_>> {
        let ep = self.primary_endpoint(repo, true);
        let location = self.start_upload(repo, &ep)?;
        let chunk = self.options().chunk_size.clamp(1, STREAM_CHUNK);
        Ok(StreamedUpload {
            client: self,
            repo: repo.clone(),
            ep,
            location,
            chunk,
            sent: 0,
            failed: None,
        })
    }
}

/// The maker's writer: fills a chunk, hands it to the sending thread.
struct Chunks {
    tx: Option<SyncSender<Vec<u8>>>,
    /// Buffers the sending thread is done with.
    spare: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    chunk: usize,
}

impl Write for Chunks {
    /// Never fails: see the module doc.
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            if self.buf.capacity() == 0 {
                match self.spare.try_recv() {
                    Ok(b) => self.buf = b,
                    Err(_) => self.buf.reserve_exact(self.chunk),
                }
            }
            let room = self.chunk - self.buf.len();
            let (now, later) = rest.split_at(rest.len().min(room));
            self.buf.extend_from_slice(now);
            rest = later;
            if self.buf.len() == self.chunk {
                let full = std::mem::take(&mut self.buf);
                if let Some(tx) = &self.tx
                    && tx.send(full).is_err()
                {
                    self.tx = None;
                }
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One upload in progress, on the sending thread.
struct StreamedUpload<'a> {
    client: &'a RegistryClient,
    repo: Repo,
    ep: Endpoint,
    location: String,
    chunk: usize,
    /// Bytes the registry has acknowledged.
    sent: u64,
    failed: Option<RegistryError>,
}

impl StreamedUpload<'_> {
    /// Sends one full chunk, unless an earlier one failed (then the bytes
    /// are dropped and the first error kept).
    fn send(&mut self, data: &[u8]) {
        if self.failed.is_none()
            && let Err(e) = self.patch(data)
        {
            self.failed = Some(e);
        }
    }

    /// Ends the upload as the blob `digest` (the registry checks it): the
    /// last bytes, `rest`, ride on the closing `PUT ?digest=` (the API
    /// allows a final chunk there), saving a round trip. The first error
    /// of the stream, if any, is returned here.
    fn finish(mut self, rest: Vec<u8>, digest: &Digest) -> Result<BlobPushed> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let how = if self.sent == 0 {
            BlobPushed::Monolithic
        } else {
            BlobPushed::Chunked
        };
        let call = Call {
            method: "PUT",
            url: with_digest(&self.location, digest),
            headers: vec![("content-type", "application/octet-stream".into())],
            body: Some(&rest),
            registry: &self.repo.registry,
            endpoint: &self.ep,
            scopes: vec![self.repo.scope("pull,push")],
            deadline: None,
        };
        let what = format!("blob {digest} upload to {}", self.repo.display());
        check_status(self.client.execute(&call)?, &call, &what, &[201, 204])?;
        Ok(how)
    }

    /// `PATCH`es `data` as the next chunk.
    fn patch(&mut self, data: &[u8]) -> Result<()> {
        let end = self.sent + data.len() as u64 - 1;
        let call = Call {
            method: "PATCH",
            url: self.location.clone(),
            headers: vec![
                ("content-type", "application/octet-stream".into()),
                ("content-range", format!("{}-{end}", self.sent)),
            ],
            body: Some(data),
            registry: &self.repo.registry,
            endpoint: &self.ep,
            scopes: vec![self.repo.scope("pull,push")],
            deadline: None,
        };
        let what = format!("chunked upload to {}", self.repo.display());
        let resp = check_status(self.client.execute(&call)?, &call, &what, &[202, 204])?;
        self.location = location_or(&resp, &self.ep, &self.location);
        self.sent = end + 1;
        Ok(())
    }
}
