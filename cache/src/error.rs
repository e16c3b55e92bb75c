//! The error type of the store, the image model and the archive transports.
//! Every variant names the file, blob or reference it is about, so that a
//! message printed at the top of the CLI tells the user what to look at.

use std::io;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, DigestError};
use crate::reference::ReferenceError;

/// What went wrong in the store or while moving an image in or out.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The io error's text is in the message, so it is not a `source`:
    /// an error chain printed with `{:#}` would repeat it.
    #[error("cannot {op} {}: {cause}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    #[error(
        "digest mismatch for {what}: expected {expected}, the content hashes to {actual}; the source is corrupt or was tampered with"
    )]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("blob {digest} is not in the store at {}", root.display())]
    BlobNotFound { digest: Digest, root: PathBuf },
    // transparent: "{0}" plus a source would print the message twice
    // in an error chain.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// Malformed input: a manifest, config, archive or layout that does not
    /// follow its spec. The message says which and why.
    #[error("{0}")]
    Invalid(String),
    /// Something the user asked for does not exist (an image name, a tag in
    /// a layout).
    #[error("{0}")]
    NotFound(String),
    /// The store is in use by another process in a way that forbids this
    /// operation now.
    #[error("{0}")]
    Busy(String),
    /// A blob the store lacks could not be fetched from where its origin
    /// record says it came from (the registry is unreachable or lost it).
    #[error("{0}")]
    Fetch(String),
}

/// Result with the store [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches the operation and path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T> {
        self.map_err(|cause| Error::Io {
            op,
            path: path.to_path_buf(),
            cause,
        })
    }
}

/// A shorthand for [`Error::Invalid`].
pub(crate) fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}
