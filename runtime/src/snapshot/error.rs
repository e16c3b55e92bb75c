//! Why a snapshot operation failed, in words that say what to do.

use std::io;
use std::path::PathBuf;

use crate::diff::DiffError;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Diff(#[from] DiffError),
    #[error("cannot {op} {path}: {cause}{}", crate::diff::permission_hint_for(.cause))]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    #[error("invalid snapshot key {key:?}: {why}")]
    InvalidKey { key: String, why: &'static str },
    #[error(
        "snapshot {path} already exists; remove it first (a leftover of an interrupted build is \
         garbage and safe to remove)"
    )]
    Exists { path: PathBuf },
    #[error("snapshot {path} does not exist or is not active (already committed or removed?)")]
    NotActive { path: PathBuf },
    #[error("lower layer {path} is missing or not a directory; was it removed while in use?")]
    MissingLower { path: PathBuf },
    #[error("{0}")]
    Unsupported(String),
}

impl SnapshotError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SnapshotError::Io {
            op,
            path: path.into(),
            cause: source,
        }
    }
}
