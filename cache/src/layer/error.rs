//! The one error type of the layer module. Every variant names the path (on
//! disk or inside the layer) it is about, because a layer error without the
//! entry that caused it is useless to someone debugging an image.

use std::io;
use std::path::PathBuf;

/// What went wrong while writing, reading or unpacking a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// An I/O error on a file of the host (a source file, the destination
    /// directory, the output writer).
    #[error("{action} {}: {cause}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    /// An entry whose path (or link target) would land outside the root it is
    /// unpacked into. Nothing is written for it.
    #[error("layer entry {}: refused, {reason}", entry.display())]
    Escape { entry: PathBuf, reason: String },
    /// An entry that is malformed or cannot be represented.
    #[error("layer entry {}: {reason}", entry.display())]
    Invalid { entry: PathBuf, reason: String },
    /// The tar stream itself is broken (bad header, truncated data).
    #[error("reading layer stream: {0}")]
    Stream(io::Error),
    /// Writing the layer to its output failed.
    #[error("writing layer output: {0}")]
    Output(io::Error),
}

impl LayerError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LayerError::Io {
            action,
            path: path.into(),
            cause: source,
        }
    }

    pub(crate) fn invalid(entry: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        LayerError::Invalid {
            entry: entry.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn escape(entry: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        LayerError::Escape {
            entry: entry.into(),
            reason: reason.into(),
        }
    }
}

/// Shorthand used throughout the layer module.
pub type Result<T, E = LayerError> = std::result::Result<T, E>;
