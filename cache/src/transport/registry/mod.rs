//! A client for the OCI distribution API (what Docker Hub, GHCR, Quay,
//! `docker-registry` and friends speak): pulling and pushing manifests and
//! blobs, with bearer/basic auth, retries, and a sha256 check on every byte
//! that comes in.
//!
//! Layout: [`client`] is the HTTP engine (auth, retries), [`endpoint`] picks
//! scheme and host, [`auth`] reads credentials and challenges, [`manifest`]
//! knows the media types, [`fetch`] downloads with verification, [`upload`]
//! sends blobs and manifests, [`streamed`] sends a blob while it is being
//! made (its digest known only at the end). On top: [`pull`] and [`push`] move images
//! between a registry and the local [`crate::store::Store`], [`lazy`] fetches
//! a blob the store only has an origin record for, and [`artifact`] stores
//! small OCI artifacts (the builder's registry cache).
//!
//! For the builder: [`fetch_manifest_and_config`] (base image metadata for
//! cache keys, no layers), [`fetch_blob`] (one layer, lazily, into the store),
//! [`ensure_blob`] (one blob from wherever the store recorded it came from),
//! [`resolve_remote`] + [`RemoteImage::store_metadata`], [`pull`], [`push`],
//! [`put_artifact`] / [`get_artifact`].

pub mod artifact;
pub mod auth;
pub mod client;
pub mod endpoint;
pub mod error;
pub mod fetch;
pub mod lazy;
pub mod manifest;
pub mod parallel;
pub mod pull;
pub mod push;
pub mod retry;
pub mod streamed;
pub mod upload;

pub use artifact::{Artifact, SmallBlob, get_artifact, get_small_blob, put_artifact};
pub use client::{BlobDeadline, ClientOptions, RegistryClient, Repo};
pub use error::{RegistryError, Result};
pub use fetch::{FetchedManifest, ManifestHead};
pub use lazy::{Teed, ensure_blob, ensure_blob_with, ensure_image_blobs, fetch_blob_teed};
pub use pull::{
    PullEvent, PullReport, RemoteImage, fetch_blob, fetch_blob_by_digest,
    fetch_manifest_and_config, pull, pull_with_progress, resolve_remote,
};
pub use push::{PushReport, push, push_store_blob, push_with_origins};
pub use upload::{BlobPushed, BlobSource, MountOutcome};
