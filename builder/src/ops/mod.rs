//! The worker (BuildKit's word): what executes a vertex's work on the
//! store — a source (base image layers), an exec (RUN in the runtime's
//! sandbox) or a file op (COPY/ADD/WORKDIR). Each returns at most one new
//! layer; the ops with keys (`crate::vertex`) call it, the solver chains
//! them. [`exec::Executor`] holds the sandbox, the snapshotter and the
//! layer directories being unpacked.
//!
//! [`source`] finds base layers, [`exec`] unpacks layers into their shared
//! directories ([`pull_unpack`] while they download) and runs RUN, [`mounts`] turns RUN `--mount`s into the
//! runtime's (and [`pipes`] adds a heredoc script's), [`from`] reads a
//! `--from` stage or image in place, [`dest`] places a COPY/WORKDIR in the
//! image below it, [`file`] turns selected files into layer entries,
//! [`archive`] unpacks ADD's local tars (told by content), [`commit`]
//! makes a step's directory the layer (no tar, no compression: outputs make
//! blobs when they need them), and [`predict`] knows a file layer's diff_id
//! before it is written.

pub mod archive;
pub mod commit;
pub mod dest;
pub mod exec;
pub mod exit;
pub mod file;
pub mod from;
pub mod mounts;
pub mod pipes;
pub mod predict;
pub mod pull_unpack;
pub mod source;

use cache::digest::Digest;
use cache::image::Descriptor;
use serde::{Deserialize, Serialize};

/// One layer of a filesystem state: the blob and its uncompressed digest.
/// A layer built here has no stored blob: `desc` is its uncompressed tar
/// (digest = diff_id), made from its directory on demand (see [`commit`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub desc: Descriptor,
    pub diff_id: Digest,
    /// The image reference the blob can be fetched from when it is not in
    /// the store yet (base layers stay lazy until something needs them).
    #[serde(default)]
    pub origin: Option<String>,
}

/// What a vertex's cache entry holds: the layer it added, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedResult {
    pub layer: Option<Layer>,
    /// When the step ran (RFC 3339). The image's `created` and history
    /// times come from here, as in BuildKit, so a fully cached build — in
    /// this store or one filled with `--cache-from` — gives the same image.
    #[serde(default)]
    pub created: Option<String>,
}
