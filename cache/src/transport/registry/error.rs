//! Everything that can go wrong talking to a registry, worded so that the
//! user learns which registry, which URL or digest, and what to do next.
//! One error type for the whole client keeps the CLI's messages uniform.

use std::io;

use crate::digest::Digest;

/// A failed registry operation.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry wants credentials we do not have, or rejected ours.
    #[error(
        "401 Unauthorized from {host} for {url}: log in with `docker login {host}` \
         (strata reads $DOCKER_CONFIG/config.json or ~/.docker/config.json){detail}"
    )]
    Unauthorized {
        host: String,
        url: String,
        detail: String,
    },
    /// Authenticated, but not allowed to do this.
    #[error(
        "403 Forbidden from {host} for {url}: the credentials for {host} may not {action} this repository{detail}"
    )]
    Forbidden {
        host: String,
        url: String,
        action: &'static str,
        detail: String,
    },
    /// The manifest, tag or blob does not exist.
    #[error("{what} not found at {url} (404): check the name, tag or digest")]
    NotFound { what: String, url: String },
    /// Any other unexpected HTTP status (after retries, for 5xx).
    #[error("{method} {url} answered {status}{detail}")]
    Status {
        method: String,
        url: String,
        status: u16,
        detail: String,
    },
    /// The connection failed, timed out or broke (after retries).
    // The cause is part of the message and deliberately not a `source()`:
    // `{:#}` chains would print it twice.
    #[error("{method} {url} failed: {cause}{hint}")]
    Transport {
        method: String,
        url: String,
        hint: String,
        cause: Box<ureq::Error>,
    },
    /// Content whose sha256 is not the digest it was asked for or announced as.
    #[error(
        "digest mismatch for {what} from {url}: expected {expected}, got {actual}; the registry served wrong content, nothing was stored"
    )]
    DigestMismatch {
        what: String,
        url: String,
        expected: Digest,
        actual: Digest,
    },
    /// Content of another length than its descriptor says.
    #[error(
        "size mismatch for {what} from {url}: expected {expected} bytes, got {actual}; nothing was stored"
    )]
    SizeMismatch {
        what: String,
        url: String,
        expected: u64,
        actual: u64,
    },
    /// A response that breaks the distribution API (bad JSON, missing header…).
    #[error("unexpected answer from {url}: {why}")]
    Protocol { url: String, why: String },
    /// No manifest in an index matches the wanted platform.
    #[error(
        "{reference} has no image for platform {wanted} (it has: {available}); pass --platform with one of those"
    )]
    NoMatchingPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
    /// The Docker credentials file could not be read.
    #[error("cannot use the registry credentials in {path}: {why}")]
    Credentials { path: String, why: String },
    /// Local I/O while streaming (the destination writer or the upload source).
    #[error("{context}: {cause}")]
    Io { context: String, cause: io::Error },
    /// The local store refused or failed (its message names the path or blob).
    #[error(transparent)]
    Store(#[from] crate::error::Error),
    /// A blob download did not finish within its overall deadline.
    #[error(
        "{what} from registry {registry} did not arrive within {secs:.0} s (the deadline is {base:.0} s plus the blob's size at {min_rate} bytes/s): the registry stalled or is too slow; try again later, or allow more time with STRATA_BLOB_DEADLINE=BASE_SECONDS:MIN_BYTES_PER_SECOND"
    )]
    Deadline {
        registry: String,
        what: String,
        secs: f64,
        base: f64,
        min_rate: u64,
    },
    /// Something else, already phrased for the user.
    #[error("{0}")]
    Other(String),
}

impl RegistryError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, cause: io::Error) -> Self {
        RegistryError::Io {
            context: context.into(),
            cause,
        }
    }

    /// True when the network broke; the operation may succeed if repeated.
    pub fn is_transient(&self) -> bool {
        matches!(self, RegistryError::Transport { .. })
    }

    /// True for digest and size mismatches: the registry (or a proxy) served
    /// content that is not what was asked for.
    pub fn is_integrity_error(&self) -> bool {
        matches!(
            self,
            RegistryError::DigestMismatch { .. } | RegistryError::SizeMismatch { .. }
        )
    }
}

/// Shorthand for results of this module.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
