//! Writing to a registry: blob existence checks, cross-repository mounts,
//! monolithic and chunked uploads, and manifest PUTs.
//!
//! The order for each blob is cheapest first: HEAD (the registry has it),
//! then a mount from a repository that has it (no bytes sent), then an
//! upload — one PUT for small blobs, PATCH chunks for big ones so that memory
//! stays flat and a proxy's body-size limit is not hit. Manifests are PUT
//! with the exact bytes and media type we hold; their digest therefore stays
//! the same across registries. A blob still being made (compressed while it
//! uploads) goes through [`super::streamed`] instead.

use std::io::{Read, Seek, SeekFrom};

use super::client::{Call, RegistryClient, Repo, check_status, percent_encode};
use super::endpoint::Endpoint;
use super::error::{RegistryError, Result};
use super::fetch::header;
use crate::digest::Digest;

/// Something a blob can be uploaded from, and re-read if an upload restarts.
pub trait BlobSource: Read + Seek {}
impl<T: Read + Seek> BlobSource for T {}

/// How a blob got into the target repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobPushed {
    /// It was already there.
    Existed,
    /// Mounted from another repository of the same registry.
    Mounted,
    /// Sent in one PUT.
    Monolithic,
    /// Sent in PATCH chunks, then a closing PUT.
    Chunked,
}

/// A whole-blob upload is restarted this many extra times after a failure
/// in the middle (the per-request retries are below this).
const UPLOAD_RESTARTS: u32 = 2;

impl RegistryClient {
    /// Makes sure `repo` has the blob: HEAD, else mount from `mount_from`
    /// (a repository path on the same registry), else upload from `source`.
    pub fn push_blob(
        &self,
        repo: &Repo,
        digest: &Digest,
        size: u64,
        mount_from: Option<&str>,
        source: &mut dyn BlobSource,
    ) -> Result<BlobPushed> {
        if self.blob_exists_for_push(repo, digest)?.is_some() {
            return Ok(BlobPushed::Existed);
        }
        let mut location = None;
        if let Some(from) = mount_from.filter(|f| *f != repo.repository) {
            match self.mount_blob(repo, digest, from)? {
                MountOutcome::Mounted => return Ok(BlobPushed::Mounted),
                MountOutcome::UploadStarted(loc) => location = Some(loc),
            }
        }
        let mut restarts = 0;
        loop {
            let attempt = self.upload_blob(repo, digest, size, source, location.take());
            match attempt {
                Err(e) if restarts < UPLOAD_RESTARTS && restartable(&e) => restarts += 1,
                other => return other,
            }
        }
    }

    /// HEAD with push scope (so a token obtained for it is reused by the
    /// upload that may follow).
    fn blob_exists_for_push(&self, repo: &Repo, digest: &Digest) -> Result<Option<u64>> {
        let ep = self.primary_endpoint(repo, true);
        let call = Call {
            method: "HEAD",
            url: ep.url(&format!("/v2/{}/blobs/{digest}", repo.repository)),
            headers: Vec::new(),
            body: None,
            registry: &repo.registry,
            endpoint: &ep,
            scopes: vec![repo.scope("pull,push")],
            deadline: None,
        };
        let resp = self.execute(&call)?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        let resp = check_status(resp, &call, &format!("blob {digest}"), &[200])?;
        Ok(Some(
            header(&resp, "content-length")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
        ))
    }

    /// `POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<other>`. A
    /// registry that cannot mount starts an ordinary upload instead (202),
    /// whose location is returned for reuse.
    pub fn mount_blob(&self, repo: &Repo, digest: &Digest, from: &str) -> Result<MountOutcome> {
        let ep = self.primary_endpoint(repo, true);
        let url = ep.url(&format!(
            "/v2/{}/blobs/uploads/?mount={}&from={}",
            repo.repository,
            percent_encode(&digest.to_string()),
            percent_encode(from)
        ));
        let call = Call {
            method: "POST",
            url,
            headers: vec![("content-length", "0".into())],
            body: Some(&[]),
            registry: &repo.registry,
            endpoint: &ep,
            scopes: vec![repo.scope("pull,push"), format!("repository:{from}:pull")],
            deadline: None,
        };
        let resp = check_status(
            self.execute(&call)?,
            &call,
            &format!("mount of {digest} from {from}"),
            &[201, 202],
        )?;
        if resp.status().as_u16() == 201 {
            return Ok(MountOutcome::Mounted);
        }
        Ok(MountOutcome::UploadStarted(location(
            &resp, &ep, &call.url,
        )?))
    }

    /// Uploads a blob: monolithic at or below the chunk threshold, chunked
    /// above. `location` continues an upload a mount attempt started.
    pub fn upload_blob(
        &self,
        repo: &Repo,
        digest: &Digest,
        size: u64,
        source: &mut dyn BlobSource,
        location: Option<String>,
    ) -> Result<BlobPushed> {
        source
            .seek(SeekFrom::Start(0))
            .map_err(|e| RegistryError::io(format!("rewinding {digest} for upload"), e))?;
        let ep = self.primary_endpoint(repo, true);
        let location = match location {
            Some(l) => l,
            None => self.start_upload(repo, &ep)?,
        };
        if size <= self.options().chunk_threshold {
            self.upload_monolithic(repo, &ep, digest, size, source, &location)?;
            Ok(BlobPushed::Monolithic)
        } else {
            self.upload_chunked(repo, &ep, digest, size, source, location)?;
            Ok(BlobPushed::Chunked)
        }
    }

    /// `POST /v2/<repo>/blobs/uploads/` → the upload's location.
    pub(super) fn start_upload(&self, repo: &Repo, ep: &Endpoint) -> Result<String> {
        let call = Call {
            method: "POST",
            url: ep.url(&format!("/v2/{}/blobs/uploads/", repo.repository)),
            headers: vec![("content-length", "0".into())],
            body: Some(&[]),
            registry: &repo.registry,
            endpoint: ep,
            scopes: vec![repo.scope("pull,push")],
            deadline: None,
        };
        let what = format!("upload to {}", repo.display());
        let resp = check_status(self.execute(&call)?, &call, &what, &[202])?;
        location(&resp, ep, &call.url)
    }

    fn upload_monolithic(
        &self,
        repo: &Repo,
        ep: &Endpoint,
        digest: &Digest,
        size: u64,
        source: &mut dyn BlobSource,
        location: &str,
    ) -> Result<()> {
        let mut body = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        source
            .take(size)
            .read_to_end(&mut body)
            .map_err(|e| RegistryError::io(format!("reading {digest} for upload"), e))?;
        if body.len() as u64 != size {
            return Err(RegistryError::Other(format!(
                "blob {digest} in the local store has {} bytes, its descriptor says {size}; run `strata store verify`",
                body.len()
            )));
        }
        let call = Call {
            method: "PUT",
            url: with_digest(location, digest),
            headers: vec![("content-type", "application/octet-stream".into())],
            body: Some(&body),
            registry: &repo.registry,
            endpoint: ep,
            scopes: vec![repo.scope("pull,push")],
            deadline: None,
        };
        let what = format!("blob {digest} upload to {}", repo.display());
        check_status(self.execute(&call)?, &call, &what, &[201, 204])?;
        Ok(())
    }

    fn upload_chunked(
        &self,
        repo: &Repo,
        ep: &Endpoint,
        digest: &Digest,
        size: u64,
        source: &mut dyn BlobSource,
        mut location: String,
    ) -> Result<()> {
        let chunk_size = self.options().chunk_size.max(1);
        let mut buf = vec![0u8; chunk_size];
        let mut offset: u64 = 0;
        let what = format!("blob {digest} chunked upload to {}", repo.display());
        while offset < size {
            let want =
                usize::try_from((size - offset).min(chunk_size as u64)).unwrap_or(chunk_size);
            source.read_exact(&mut buf[..want]).map_err(|e| {
                RegistryError::io(format!("reading {digest} at byte {offset} for upload"), e)
            })?;
            let end = offset + want as u64 - 1;
            let call = Call {
                method: "PATCH",
                url: location.clone(),
                headers: vec![
                    ("content-type", "application/octet-stream".into()),
                    ("content-range", format!("{offset}-{end}")),
                ],
                body: Some(&buf[..want]),
                registry: &repo.registry,
                endpoint: ep,
                scopes: vec![repo.scope("pull,push")],
                deadline: None,
            };
            let resp = check_status(self.execute(&call)?, &call, &what, &[202, 204])?;
            location = location_or(&resp, ep, &location);
            offset += want as u64;
        }
        let call = Call {
            method: "PUT",
            url: with_digest(&location, digest),
            headers: vec![("content-length", "0".into())],
            body: Some(&[]),
            registry: &repo.registry,
            endpoint: ep,
            scopes: vec![repo.scope("pull,push")],
            deadline: None,
        };
        check_status(self.execute(&call)?, &call, &what, &[201, 204])?;
        Ok(())
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with exactly `bytes`. Returns
    /// the digest, checked against what the registry reports.
    pub fn put_manifest(
        &self,
        repo: &Repo,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest> {
        let ep = self.primary_endpoint(repo, true);
        let url = ep.url(&format!("/v2/{}/manifests/{reference}", repo.repository));
        let call = Call {
            method: "PUT",
            url: url.clone(),
            headers: vec![("content-type", media_type.to_string())],
            body: Some(bytes),
            registry: &repo.registry,
            endpoint: &ep,
            scopes: vec![repo.scope("pull,push")],
            deadline: None,
        };
        let what = format!("manifest {}:{reference}", repo.display());
        let resp = check_status(self.execute(&call)?, &call, &what, &[201, 200, 202])?;
        let ours = Digest::of(bytes);
        if let Some(theirs) = header(&resp, "docker-content-digest").and_then(|h| h.parse().ok())
            && theirs != ours
        {
            return Err(RegistryError::DigestMismatch {
                what: format!("{what} (as stored by the registry)"),
                url,
                expected: ours,
                actual: theirs,
            });
        }
        Ok(ours)
    }
}

/// The answer to a mount request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOutcome {
    /// 201: the blob is now in the target repository.
    Mounted,
    /// 202: no mount; an upload session was opened at this URL instead.
    UploadStarted(String),
}

/// Errors after which a whole upload is worth starting again.
fn restartable(e: &RegistryError) -> bool {
    match e {
        RegistryError::Transport { .. } => true,
        RegistryError::Status { status, .. } => *status == 416 || *status >= 500,
        RegistryError::NotFound { .. } => true, // the upload session expired
        _ => false,
    }
}

fn location(resp: &ureq::http::Response<ureq::Body>, ep: &Endpoint, url: &str) -> Result<String> {
    header(resp, "location")
        .map(|l| ep.resolve(&l))
        .ok_or_else(|| RegistryError::Protocol {
            url: url.to_string(),
            why: "an upload answer without a Location header".into(),
        })
}

pub(super) fn location_or(
    resp: &ureq::http::Response<ureq::Body>,
    ep: &Endpoint,
    old: &str,
) -> String {
    header(resp, "location")
        .map(|l| ep.resolve(&l))
        .unwrap_or_else(|| old.to_string())
}

/// Adds `digest=<digest>` to an upload location that may already have a query.
pub(super) fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!(
        "{location}{sep}digest={}",
        percent_encode(&digest.to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_appended_to_the_location_query() {
        let d = Digest::of(b"");
        assert_eq!(
            with_digest("http://h/v2/a/blobs/uploads/u?_state=x", &d),
            format!(
                "http://h/v2/a/blobs/uploads/u?_state=x&digest=sha256%3A{}",
                d.hex()
            )
        );
        assert!(with_digest("http://h/u", &d).starts_with("http://h/u?digest="));
    }
}
