//! Uploading a blob while its bytes are being made: a layer compressed
//! straight into the upload, with no temp blob written first and read back.
//!
//! The distribution API fits a stream whose digest is known only at the
//! end: `POST` opens an upload, `PATCH`es with `Content-Range` carry the
//! chunks as they fill, and the closing `PUT ?digest=` carries the rest and
//! names the digest, which the registry checks. A blob that fits in one chunk goes in that
//! single `PUT`. Memory is one chunk per upload.
//!
//! The [`Write`] side never fails: the same bytes usually also go to the
//! local store (through a tee), and a broken upload must not break that
//! copy. It remembers the first error instead and drops later bytes;
//! [`StreamedUpload::finish`] reports it, and the caller uploads the stored
//! blob the ordinary way (which restarts and retries).

use std::io::Write;

use super::client::{Call, RegistryClient, Repo, check_status};
use super::endpoint::Endpoint;
use super::error::{RegistryError, Result};
use super::upload::{BlobPushed, location_or, with_digest};
use crate::digest::Digest;

/// The most a streamed upload holds in memory at once (the client's chunk
/// size if smaller): several layers upload at a time, each with a chunk.
pub const STREAM_CHUNK: usize = 8 << 20;

/// One upload in progress, fed through [`Write`].
pub struct StreamedUpload<'a> {
    client: &'a RegistryClient,
    repo: Repo,
    ep: Endpoint,
    location: String,
    buf: Vec<u8>,
    chunk: usize,
    /// Bytes the registry has acknowledged.
    sent: u64,
    failed: Option<RegistryError>,
}

impl RegistryClient {
    /// Opens an upload into `repo` whose bytes follow through the returned
    /// writer (`POST /v2/<repo>/blobs/uploads/`).
    pub fn start_streamed_upload(&self, repo: &Repo) -> Result<StreamedUpload<'_>> {
        let ep = self.primary_endpoint(repo, true);
        let location = self.start_upload(repo, &ep)?;
        let chunk = self.options().chunk_size.clamp(1, STREAM_CHUNK);
        Ok(StreamedUpload {
            client: self,
            repo: repo.clone(),
            ep,
            location,
            buf: Vec::new(),
            chunk,
            sent: 0,
            failed: None,
        })
    }
}

impl StreamedUpload<'_> {
    /// Ends the upload as the blob `digest` (the registry checks it):
    /// the rest of the bytes, then `PUT ?digest=`. The first error of the
    /// stream, if any, is returned here.
    pub fn finish(mut self, digest: &Digest) -> Result<BlobPushed> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let how = if self.sent == 0 {
            BlobPushed::Monolithic
        } else {
            BlobPushed::Chunked
        };
        // The last bytes ride on the closing PUT (the API allows a final
        // chunk there), saving a round trip.
        let body = std::mem::take(&mut self.buf);
        let call = Call {
            method: "PUT",
            url: with_digest(&self.location, digest),
            headers: vec![("content-type", "application/octet-stream".into())],
            body: Some(&body),
            registry: &self.repo.registry,
            endpoint: &self.ep,
            scopes: vec![self.repo.scope("pull,push")],
            deadline: None,
        };
        let what = format!("blob {digest} upload to {}", self.repo.display());
        check_status(self.client.execute(&call)?, &call, &what, &[201, 204])?;
        Ok(how)
    }

    /// Sends the buffered bytes as the next chunk.
    fn patch(&mut self) -> Result<()> {
        let end = self.sent + self.buf.len() as u64 - 1;
        let call = Call {
            method: "PATCH",
            url: self.location.clone(),
            headers: vec![
                ("content-type", "application/octet-stream".into()),
                ("content-range", format!("{}-{end}", self.sent)),
            ],
            body: Some(&self.buf),
            registry: &self.repo.registry,
            endpoint: &self.ep,
            scopes: vec![self.repo.scope("pull,push")],
            deadline: None,
        };
        let what = format!("chunked upload to {}", self.repo.display());
        let resp = check_status(self.client.execute(&call)?, &call, &what, &[202, 204])?;
        self.location = location_or(&resp, &self.ep, &self.location);
        self.sent = end + 1;
        self.buf.clear();
        Ok(())
    }
}

impl Write for StreamedUpload<'_> {
    /// Buffers, sending a chunk whenever one is full. Never fails: see the
    /// module doc.
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.failed.is_some() {
            return Ok(data.len());
        }
        let mut rest = data;
        while !rest.is_empty() {
            let room = self.chunk - self.buf.len();
            let (now, later) = rest.split_at(rest.len().min(room));
            if self.buf.capacity() == 0 {
                self.buf.reserve_exact(self.chunk);
            }
            self.buf.extend_from_slice(now);
            rest = later;
            if self.buf.len() == self.chunk
                && let Err(e) = self.patch()
            {
                self.failed = Some(e);
                self.buf = Vec::new();
                break;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
