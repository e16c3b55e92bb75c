//! Why a diff could not be produced.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("cannot {op} {path}: {cause}{}", permission_hint(.cause))]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    /// The tree holds something a layer diff cannot express correctly.
    #[error("{path}: {what}")]
    Unsupported { path: PathBuf, what: String },
    /// An exclude path that cannot name a place inside the root.
    #[error("exclude path {path:?} is invalid: {why}")]
    BadExclude { path: PathBuf, why: &'static str },
}

impl DiffError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        DiffError::Io {
            op,
            path: path.into(),
            cause: source,
        }
    }
}

/// Most permission errors here come from walking a snapshot from outside the
/// user namespace that owns its files; say so, since the raw errno does not.
pub(crate) fn permission_hint(e: &io::Error) -> &'static str {
    if e.kind() == io::ErrorKind::PermissionDenied {
        " (files written by a build step may belong to subordinate ids; run this inside the \
         build's user namespace, e.g. through the sandbox's run_in_userns)"
    } else {
        ""
    }
}
