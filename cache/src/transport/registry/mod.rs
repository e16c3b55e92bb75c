//! A client for the OCI distribution API (what Docker Hub, GHCR, Quay,
//! `docker-registry` and friends speak): pulling and pushing manifests and
//! blobs, with bearer/basic auth, retries, and a sha256 check on every byte
//! that comes in.
//!
//! Layout: [`client`] is the HTTP engine (auth, retries), [`endpoint`] picks
//! scheme and host, [`auth`] reads credentials and challenges, [`manifest`]
//! knows the media types, [`fetch`] downloads with verification, [`upload`]
//! sends blobs and manifests.

pub mod auth;
pub mod client;
pub mod endpoint;
pub mod error;
pub mod fetch;
pub mod manifest;
pub mod pull;
pub mod push;
pub mod retry;
pub mod upload;

pub use client::{ClientOptions, RegistryClient, Repo};
pub use error::{RegistryError, Result};
pub use fetch::{FetchedManifest, ManifestHead};
pub use pull::{
    PullReport, RemoteImage, fetch_blob, fetch_manifest_and_config, pull, resolve_remote,
};
pub use push::{PushReport, push, push_store_blob};
pub use upload::{BlobPushed, BlobSource, MountOutcome};
