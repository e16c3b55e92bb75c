//! Small OCI artifacts: a manifest with an `artifactType`, a config of our
//! choosing and any blobs as "layers". The builder uses this for
//! `--cache-to/--cache-from type=registry`: cache metadata rides in the
//! config, and the layers it refers to are ordinary blobs of the repository.
//!
//! Artifacts are written as OCI image manifests (not the withdrawn artifact
//! manifest type) because every registry accepts those.

use serde_json::json;

use super::client::{RegistryClient, Repo};
use super::error::{RegistryError, Result};
use crate::digest::Digest;
use crate::image::media_type::OCI_MANIFEST;
use crate::image::{Descriptor, MAX_MANIFEST_SIZE, ParsedManifest};

/// OCI's media type for "no config": the two bytes `{}`.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// The largest artifact config or in-memory blob read back.
pub const MAX_ARTIFACT_BLOB: u64 = 64 << 20;

/// A blob carried in memory (cache metadata, small indexes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmallBlob {
    pub media_type: String,
    pub data: Vec<u8>,
}

impl SmallBlob {
    /// Its descriptor.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.media_type.clone(),
            Digest::of(&self.data),
            self.data.len() as u64,
        )
    }
}

/// An artifact as read back from a registry.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The manifest's digest.
    pub digest: Digest,
    /// The manifest's exact bytes.
    pub manifest: Vec<u8>,
    /// `artifactType`, if the manifest has one.
    pub artifact_type: Option<String>,
    /// The config descriptor and bytes (verified).
    pub config: SmallBlob,
    /// The "layers": small blobs and references to big ones; fetch them with
    /// [`RegistryClient::get_blob`] or [`get_small_blob`].
    pub layers: Vec<Descriptor>,
}

/// Uploads `config` and `small` blobs, then PUTs a manifest at `tag` listing
/// the small blobs followed by `existing` (blobs already pushed, e.g. with
/// [`super::push_store_blob`]). Returns the manifest digest.
pub fn put_artifact(
    client: &RegistryClient,
    repo: &Repo,
    tag: &str,
    artifact_type: &str,
    config: Option<&SmallBlob>,
    small: &[SmallBlob],
    existing: &[Descriptor],
) -> Result<Digest> {
    let empty = SmallBlob {
        media_type: OCI_EMPTY.to_string(),
        data: b"{}".to_vec(),
    };
    let config = config.unwrap_or(&empty);
    for b in std::iter::once(config).chain(small.iter()) {
        let d = Digest::of(&b.data);
        client.push_blob(
            repo,
            &d,
            b.data.len() as u64,
            None,
            &mut std::io::Cursor::new(&b.data),
        )?;
    }
    let layers: Vec<Descriptor> = small
        .iter()
        .map(SmallBlob::descriptor)
        .chain(existing.iter().cloned())
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": config.descriptor(),
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&manifest)
        .map_err(|e| RegistryError::Other(format!("cannot encode the artifact manifest: {e}")))?;
    client.put_manifest(repo, tag, OCI_MANIFEST, &bytes)
}

/// Reads the artifact at `reference` (tag or digest): manifest and config,
/// both verified. `None` if the registry has no such tag.
pub fn get_artifact(
    client: &RegistryClient,
    repo: &Repo,
    reference: &str,
) -> Result<Option<Artifact>> {
    let m = match client.get_manifest(repo, reference) {
        Ok(m) => m,
        Err(RegistryError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let ParsedManifest::Image(parsed) = &m.parsed else {
        return Err(RegistryError::Other(format!(
            "{}:{reference} is an image index, not an artifact manifest",
            repo.display()
        )));
    };
    let artifact_type = serde_json::from_slice::<serde_json::Value>(&m.bytes)
        .ok()
        .and_then(|v| v.get("artifactType")?.as_str().map(str::to_string));
    let config = SmallBlob {
        media_type: parsed.config.media_type.clone(),
        data: get_small_blob(client, repo, &parsed.config)?,
    };
    Ok(Some(Artifact {
        digest: m.digest.clone(),
        artifact_type,
        config,
        layers: parsed.layers.clone(),
        manifest: m.bytes,
    }))
}

/// Downloads a blob into memory, verified; refuses blobs over
/// [`MAX_ARTIFACT_BLOB`] (fetch those into the store instead).
pub fn get_small_blob(client: &RegistryClient, repo: &Repo, blob: &Descriptor) -> Result<Vec<u8>> {
    if blob.size > MAX_ARTIFACT_BLOB.max(MAX_MANIFEST_SIZE) {
        return Err(RegistryError::Other(format!(
            "blob {} of {} is {} bytes, too big to read into memory; fetch it into the store",
            blob.digest,
            repo.display(),
            blob.size
        )));
    }
    let mut out = Vec::with_capacity(usize::try_from(blob.size).unwrap_or(0));
    client.get_blob(repo, &blob.digest, Some(blob.size), &mut out)?;
    Ok(out)
}
