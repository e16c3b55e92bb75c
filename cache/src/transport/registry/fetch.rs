//! Reading from a registry: manifests (GET and HEAD) and blobs, every byte
//! checked against the digest it was asked for before anyone may use it.
//!
//! Blobs stream into any `Write` (the store's temp file) while being hashed;
//! the sha256 and the length are compared at the end, and a download that
//! grows past its descriptor's size is cut off at once so a hostile registry
//! cannot fill the disk. On any error the caller must discard what was
//! written: the store only commits a blob after this returns `Ok`.

use std::io::{Read, Write};
use std::time::Instant;

use super::client::{Call, RegistryClient, Repo, check_status, read_small};
use super::endpoint::Endpoint;
use super::error::{RegistryError, Result};
use super::manifest::{MANIFEST_ACCEPT, effective_media_type};
use crate::digest::{Digest, Sha256};
use crate::image::ParsedManifest;

/// A manifest exactly as the registry served it, verified.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The registry's bytes, never re-serialized.
    pub bytes: Vec<u8>,
    /// sha256 of `bytes`.
    pub digest: Digest,
    /// The media type to push these bytes with again.
    pub media_type: String,
    /// What the bytes say.
    pub parsed: ParsedManifest,
}

/// What a HEAD on a manifest tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    pub digest: Digest,
    pub media_type: Option<String>,
    pub size: Option<u64>,
}

/// Read buffer for blob streaming: large enough that hashing, not syscalls,
/// dominates; small enough that memory stays flat.
const COPY_BUF: usize = 256 * 1024;

impl RegistryClient {
    /// `GET /v2/<repo>/manifests/<reference>`, where `reference` is a tag or a
    /// digest. The bytes are checked against the digest when the reference
    /// is one, and against the `Docker-Content-Digest` header when sent.
    pub fn get_manifest(&self, repo: &Repo, reference: &str) -> Result<FetchedManifest> {
        let pinned: Option<Digest> = reference.parse().ok();
        self.with_read_endpoints(repo, |ep| {
            let url = ep.url(&format!("/v2/{}/manifests/{reference}", repo.repository));
            let call = Call {
                method: "GET",
                url: url.clone(),
                headers: vec![("accept", MANIFEST_ACCEPT.to_string())],
                body: None,
                registry: &repo.registry,
                endpoint: ep,
                scopes: vec![repo.scope("pull")],
                deadline: None,
            };
            let what = format!("manifest {}:{reference}", repo.display());
            let mut resp = check_status(self.execute(&call)?, &call, &what, &[200])?;
            let header_digest = header(&resp, "docker-content-digest");
            let content_type = header(&resp, "content-type");
            let bytes = read_small(&mut resp, &url)?;
            let actual = Digest::of(&bytes);
            let expected = match (&pinned, &header_digest) {
                (Some(d), _) => Some(d.clone()),
                (None, Some(h)) => h.parse::<Digest>().ok(),
                (None, None) => None,
            };
            if let Some(expected) = expected
                && expected != actual
            {
                return Err(RegistryError::DigestMismatch {
                    what,
                    url,
                    expected,
                    actual,
                });
            }
            let parsed =
                ParsedManifest::parse(&bytes, content_type.as_deref(), &what).map_err(|e| {
                    RegistryError::Protocol {
                        url: url.clone(),
                        why: e.to_string(),
                    }
                })?;
            Ok(FetchedManifest {
                media_type: effective_media_type(content_type.as_deref(), &parsed),
                bytes,
                digest: actual,
                parsed,
            })
        })
    }

    /// `HEAD /v2/<repo>/manifests/<reference>`: the digest a tag points at,
    /// without downloading anything. `None` if the tag does not exist.
    pub fn head_manifest(&self, repo: &Repo, reference: &str) -> Result<Option<ManifestHead>> {
        self.with_read_endpoints(repo, |ep| {
            let url = ep.url(&format!("/v2/{}/manifests/{reference}", repo.repository));
            let call = Call {
                method: "HEAD",
                url: url.clone(),
                headers: vec![("accept", MANIFEST_ACCEPT.to_string())],
                body: None,
                registry: &repo.registry,
                endpoint: ep,
                scopes: vec![repo.scope("pull")],
                deadline: None,
            };
            let resp = self.execute(&call)?;
            if resp.status().as_u16() == 404 {
                return Ok(None);
            }
            let what = format!("manifest {}:{reference}", repo.display());
            let resp = check_status(resp, &call, &what, &[200])?;
            let digest = match header(&resp, "docker-content-digest") {
                Some(d) => d.parse::<Digest>().map_err(|e| RegistryError::Protocol {
                    url: url.clone(),
                    why: format!("bad Docker-Content-Digest header: {e}"),
                })?,
                // Without the header a HEAD cannot tell the digest; fall back
                // to a GET, which hashes the bytes.
                None => {
                    return self.get_manifest(repo, reference).map(|m| {
                        Some(ManifestHead {
                            size: Some(m.bytes.len() as u64),
                            media_type: Some(m.media_type),
                            digest: m.digest,
                        })
                    });
                }
            };
            Ok(Some(ManifestHead {
                digest,
                media_type: header(&resp, "content-type"),
                size: header(&resp, "content-length").and_then(|s| s.parse().ok()),
            }))
        })
    }

    /// `HEAD /v2/<repo>/blobs/<digest>`: the blob's size if the repository
    /// has it, `None` if not.
    pub fn blob_exists(&self, repo: &Repo, digest: &Digest) -> Result<Option<u64>> {
        let ep = self.primary_endpoint(repo, true);
        let url = ep.url(&format!("/v2/{}/blobs/{digest}", repo.repository));
        let call = Call {
            method: "HEAD",
            url,
            headers: Vec::new(),
            body: None,
            registry: &repo.registry,
            endpoint: &ep,
            scopes: vec![repo.scope("pull")],
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

    /// `GET /v2/<repo>/blobs/<digest>` streamed into `out`, hashed on the way.
    /// Returns the byte count. On `Err` the caller must throw away whatever
    /// reached `out` — it is unverified. The download must finish within
    /// the blob's deadline ([`super::client::BlobDeadline`]).
    pub fn get_blob(
        &self,
        repo: &Repo,
        digest: &Digest,
        expected_size: Option<u64>,
        out: &mut dyn Write,
    ) -> Result<u64> {
        let deadline = self.blob_deadline(expected_size);
        self.get_blob_until(repo, digest, expected_size, out, deadline)
    }

    /// When a download of a blob of `size` bytes starting now must be over.
    pub fn blob_deadline(&self, size: Option<u64>) -> Instant {
        Instant::now() + self.options().blob_deadline.for_size(size)
    }

    /// [`Self::get_blob`] with a deadline the caller set (one for all the
    /// attempts at a blob). Past it the error names the registry and the
    /// blob, and is not retried.
    pub fn get_blob_until(
        &self,
        repo: &Repo,
        digest: &Digest,
        expected_size: Option<u64>,
        out: &mut dyn Write,
        deadline: Instant,
    ) -> Result<u64> {
        let started_at = Instant::now();
        let res = self.get_blob_inner(repo, digest, expected_size, out, deadline);
        match res {
            Err(e) if Instant::now() >= deadline && !e.is_integrity_error() => {
                let limits = self.options().blob_deadline;
                Err(RegistryError::Deadline {
                    registry: repo.registry.clone(),
                    what: format!("blob {digest} of {}", repo.display()),
                    secs: deadline.saturating_duration_since(started_at).as_secs_f64(),
                    base: limits.base.as_secs_f64(),
                    min_rate: limits.min_rate,
                })
            }
            other => other,
        }
    }

    fn get_blob_inner(
        &self,
        repo: &Repo,
        digest: &Digest,
        expected_size: Option<u64>,
        out: &mut dyn Write,
        deadline: Instant,
    ) -> Result<u64> {
        let mut started = false;
        self.with_read_endpoints(repo, |ep| {
            if started {
                // Bytes from a failed mirror already reached `out`: do not
                // append the upstream copy after them.
                return Err(RegistryError::Other(format!(
                    "the download of {digest} from a mirror broke off; retry the command"
                )));
            }
            let url = ep.url(&format!("/v2/{}/blobs/{digest}", repo.repository));
            let call = Call {
                method: "GET",
                url: url.clone(),
                headers: Vec::new(),
                body: None,
                registry: &repo.registry,
                endpoint: ep,
                scopes: vec![repo.scope("pull")],
                deadline: Some(deadline),
            };
            let what = format!("blob {digest} of {}", repo.display());
            let mut resp = check_status(self.execute(&call)?, &call, &what, &[200])?;
            started = true;
            let mut reader = Deadlined {
                inner: resp.body_mut().as_reader(),
                deadline,
            };
            copy_verified(&mut reader, out, digest, expected_size, &what, &url)
        })
    }

    /// The endpoint writes (and existence checks before writes) go to.
    pub(crate) fn primary_endpoint(&self, repo: &Repo, for_write: bool) -> Endpoint {
        let mut eps = self.endpoints(&repo.registry, for_write);
        // `endpoints` always returns the registry itself last.
        eps.pop().unwrap_or_else(|| Endpoint {
            scheme: "https",
            host: repo.registry.clone(),
            mirror: false,
        })
    }

    /// Runs a read against the mirror first (if any), then the registry,
    /// moving on only when the mirror fails for a reason other than bad
    /// content (a mirror that serves wrong bytes is reported, not hidden).
    fn with_read_endpoints<T>(
        &self,
        repo: &Repo,
        mut op: impl FnMut(&Endpoint) -> Result<T>,
    ) -> Result<T> {
        let eps = self.endpoints(&repo.registry, false);
        let mut last = None;
        for ep in &eps {
            match op(ep) {
                Ok(v) => return Ok(v),
                Err(e) if ep.mirror && !e.is_integrity_error() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            RegistryError::Other(format!("no endpoint for registry {}", repo.registry))
        }))
    }
}

/// A body reader that fails once the blob's deadline has passed, so a
/// registry that trickles bytes just fast enough to beat every per-read
/// timeout still cannot hold the download open for ever.
struct Deadlined<R> {
    inner: R,
    deadline: Instant,
}

impl<R: Read> Read for Deadlined<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if Instant::now() >= self.deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the blob's deadline passed",
            ));
        }
        self.inner.read(buf)
    }
}

/// Copies `reader` to `out`, hashing; fails on a digest or size mismatch and
/// stops reading as soon as more than `expected_size` bytes arrive.
pub fn copy_verified(
    reader: &mut dyn Read,
    out: &mut dyn Write,
    expected: &Digest,
    expected_size: Option<u64>,
    what: &str,
    url: &str,
) -> Result<u64> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; COPY_BUF];
    let mut total: u64 = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // A broken download is a network failure (retryable), not a
                // local I/O error.
                return Err(RegistryError::Transport {
                    method: "GET".into(),
                    url: url.to_string(),
                    hint: format!(" ({what} broke off after {total} bytes)"),
                    cause: Box::new(ureq::Error::Io(e)),
                });
            }
        };
        total += n as u64;
        if let Some(max) = expected_size
            && total > max
        {
            return Err(RegistryError::SizeMismatch {
                what: what.to_string(),
                url: url.to_string(),
                expected: max,
                actual: total,
            });
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| RegistryError::io(format!("writing {what}"), e))?;
    }
    if let Some(max) = expected_size
        && total != max
    {
        return Err(RegistryError::SizeMismatch {
            what: what.to_string(),
            url: url.to_string(),
            expected: max,
            actual: total,
        });
    }
    let actual = hasher.finalize();
    if &actual != expected {
        return Err(RegistryError::DigestMismatch {
            what: what.to_string(),
            url: url.to_string(),
            expected: expected.clone(),
            actual,
        });
    }
    Ok(total)
}

/// A response header as a string, if present and ASCII.
pub(crate) fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_verified_accepts_right_bytes_and_rejects_wrong_ones() {
        let data = b"hello layer".to_vec();
        let d = Digest::of(&data);
        let mut out = Vec::new();
        let n = copy_verified(&mut &data[..], &mut out, &d, Some(11), "blob", "u").expect("ok");
        assert_eq!((n, out.as_slice()), (11, &data[..]));

        let mut out = Vec::new();
        let err = copy_verified(&mut &b"hello LAYER"[..], &mut out, &d, None, "blob", "u")
            .expect_err("tampered");
        let msg = err.to_string();
        assert!(
            msg.contains(&d.to_string()) && msg.contains("expected"),
            "{msg}"
        );

        let err = copy_verified(&mut &data[..], &mut Vec::new(), &d, Some(5), "blob", "u")
            .expect_err("too long");
        assert!(
            matches!(err, RegistryError::SizeMismatch { expected: 5, actual, .. } if actual > 5),
            "{err}"
        );
        let err = copy_verified(&mut &data[..], &mut Vec::new(), &d, Some(50), "blob", "u")
            .expect_err("too short");
        assert!(
            matches!(err, RegistryError::SizeMismatch { actual: 11, .. }),
            "{err}"
        );
    }
}
