//! Pushing an image from the local store to a registry, byte for byte: the
//! manifest (and index) bytes we hold are sent as they are, so the pushed
//! digest equals the local one and `skopeo inspect --raw` shows the same
//! document we pulled or built.
//!
//! Blobs go first (config and layers, each skipped if present, mounted from
//! the source repository when it is on the same registry), then platform
//! manifests by digest, then the tag.

use super::client::{RegistryClient, Repo};
use super::error::{RegistryError, Result};
use super::lazy::ensure_blob_with;
use super::manifest::effective_media_type;
use super::parallel::{TRANSFER_WORKERS, for_each_bounded};
use super::pull::{fetch_blob, registry_ref, repo_of};
use super::upload::{BlobPushed, MountOutcome};
use crate::digest::Digest;
use crate::image::{Descriptor, MAX_MANIFEST_SIZE, Manifest, ParsedManifest};
use crate::reference::Reference;
use crate::store::Store;

/// What a push did.
#[derive(Debug, Clone, Default)]
pub struct PushReport {
    /// The digest the destination tag now points at.
    pub digest: Option<Digest>,
    /// Each blob and how it got there.
    pub blobs: Vec<(Digest, BlobPushed)>,
    /// Manifests (platform manifests, then the index) that were PUT.
    pub manifests: Vec<Digest>,
}

/// Pushes the local image `source` to `dest` (which may be the same name).
pub fn push(
    client: &RegistryClient,
    store: &Store,
    source: &Reference,
    dest: &Reference,
) -> Result<PushReport> {
    push_with_origins(client, store, source, dest, &[])
}

/// [`push`] for an image whose blobs may also be found in `origins` — the
/// base images it was built `FROM`. A blob the store lacks (a base layer a
/// build never downloaded) is mounted from an origin on the destination's
/// registry, or fetched (verified) from an origin elsewhere and uploaded;
/// blobs the store has are still mounted when an origin on the same
/// registry allows it. The origins the store recorded for absent blobs are
/// tried after `origins`, so a plain [`push`] of a lazily recorded image
/// works too.
pub fn push_with_origins(
    client: &RegistryClient,
    store: &Store,
    source: &Reference,
    dest: &Reference,
    origins: &[Reference],
) -> Result<PushReport> {
    let top = store.resolve_digest(source)?.ok_or_else(|| {
        RegistryError::Other(format!(
            "no image named {source} in the local store: pull or build it first (see `strata images`)"
        ))
    })?;
    let repo = repo_of(dest);
    let origins = Origins::new(source, dest, origins);
    let mut report = PushReport::default();
    let raw = store.blobs().read_verified(&top, MAX_MANIFEST_SIZE)?;
    let parsed = ParsedManifest::parse(&raw, None, &format!("manifest {top} of {source}"))?;
    if let ParsedManifest::Index(idx) = &parsed {
        let missing: Vec<&Descriptor> = idx
            .manifests
            .iter()
            .filter(|d| !store.blobs().has(&d.digest))
            .collect();
        if !missing.is_empty() {
            return Err(RegistryError::Other(format!(
                "{source} is an image index with {} platform manifests, {} of which are not in the local store \
                 (a pull keeps only one platform); push it by platform manifest digest instead, \
                 e.g. `strata push {}@{} {}`",
                idx.manifests.len(),
                missing.len(),
                source.without_digest().familiar_name(),
                idx.manifests
                    .iter()
                    .find(|d| store.blobs().has(&d.digest))
                    .map_or("sha256:…".to_string(), |d| d.digest.to_string()),
                dest.familiar()
            )));
        }
        for child in &idx.manifests {
            let child_raw = store
                .blobs()
                .read_verified(&child.digest, MAX_MANIFEST_SIZE)?;
            let what = format!("manifest {} of {source}", child.digest);
            match ParsedManifest::parse(&child_raw, Some(&child.media_type), &what)? {
                ParsedManifest::Image(m) => {
                    push_image_blobs(client, store, &repo, &m, &origins, &mut report)?;
                    let mt = if child.media_type.is_empty() {
                        effective_media_type(None, &ParsedManifest::Image(m))
                    } else {
                        child.media_type.clone()
                    };
                    client.put_manifest(&repo, &child.digest.to_string(), &mt, &child_raw)?;
                    report.manifests.push(child.digest.clone());
                }
                ParsedManifest::Index(_) => {
                    return Err(RegistryError::Other(format!(
                        "{what} is a nested index; pushing nested indexes is not supported"
                    )));
                }
            }
        }
    } else if let ParsedManifest::Image(m) = &parsed {
        push_image_blobs(client, store, &repo, m, &origins, &mut report)?;
    }
    let media_type = effective_media_type(None, &parsed);
    let pushed = client.put_manifest(&repo, &registry_ref(dest), &media_type, &raw)?;
    report.manifests.push(pushed.clone());
    report.digest = Some(pushed);
    Ok(report)
}

/// Other places a pushed image's blobs live.
struct Origins {
    /// Repositories on the destination's registry to mount from.
    mount_from: Vec<String>,
    /// Images on other registries to fetch missing blobs from.
    remote: Vec<Reference>,
}

impl Origins {
    fn new(source: &Reference, dest: &Reference, extra: &[Reference]) -> Origins {
        let mut o = Origins {
            mount_from: Vec::new(),
            remote: Vec::new(),
        };
        for r in std::iter::once(source).chain(extra.iter()) {
            if r.registry() == dest.registry() {
                let repo = r.repository().to_string();
                if repo != dest.repository() && !o.mount_from.contains(&repo) {
                    o.mount_from.push(repo);
                }
            } else if !std::ptr::eq(r, source) {
                // The source name is local; only real origins are fetched from.
                o.remote.push(r.clone());
            }
        }
        o
    }
}

/// Config and layers of one image manifest, a few at a time.
fn push_image_blobs(
    client: &RegistryClient,
    store: &Store,
    repo: &Repo,
    m: &Manifest,
    origins: &Origins,
    report: &mut PushReport,
) -> Result<()> {
    let blobs: Vec<&Descriptor> = std::iter::once(&m.config).chain(m.layers.iter()).collect();
    let hows = for_each_bounded(&blobs, TRANSFER_WORKERS, |blob| {
        ensure_blob(client, store, repo, blob, origins)
    })?;
    for (blob, how) in blobs.iter().zip(hows) {
        report.blobs.push((blob.digest.clone(), how));
    }
    Ok(())
}

/// One blob into `repo`: present, mounted, or uploaded — fetching it from a
/// remote origin first if the store lacks it.
fn ensure_blob(
    client: &RegistryClient,
    store: &Store,
    repo: &Repo,
    blob: &Descriptor,
    origins: &Origins,
) -> Result<BlobPushed> {
    if !store.blobs().has(&blob.digest) {
        if client.blob_exists(repo, &blob.digest)?.is_some() {
            return Ok(BlobPushed::Existed);
        }
        for from in &origins.mount_from {
            if client.mount_blob(repo, &blob.digest, from)? == MountOutcome::Mounted {
                return Ok(BlobPushed::Mounted);
            }
        }
        for origin in &origins.remote {
            match fetch_blob(client, store, origin, blob) {
                Ok(_) => break,
                Err(RegistryError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        if !store.blobs().has(&blob.digest) {
            if let Some(how) = mount_recorded(client, store, repo, blob)? {
                return Ok(how);
            }
            ensure_blob_with(client, store, blob, None)?;
        }
    }
    push_store_blob(
        client,
        store,
        repo,
        blob,
        origins.mount_from.first().map(String::as_str),
    )
}

/// Mounts a blob the store lacks from a repository its origin record names
/// on the destination's registry: cheaper than a download and an upload.
fn mount_recorded(
    client: &RegistryClient,
    store: &Store,
    repo: &Repo,
    blob: &Descriptor,
) -> Result<Option<BlobPushed>> {
    let Some(rec) = store.origins().get(&blob.digest)? else {
        return Ok(None);
    };
    for r in rec.parsed_references() {
        if r.registry() == repo.registry
            && r.repository() != repo.repository
            && client.mount_blob(repo, &blob.digest, r.repository())? == MountOutcome::Mounted
        {
            return Ok(Some(BlobPushed::Mounted));
        }
    }
    Ok(None)
}

/// Makes sure `repo` has a blob of the local store: skipped if present,
/// mounted from `mount_from` if possible, else uploaded from the store.
/// A blob the store lacks (a base layer never downloaded) can still be
/// mounted; otherwise the error says to pull the image.
pub fn push_store_blob(
    client: &RegistryClient,
    store: &Store,
    repo: &Repo,
    blob: &Descriptor,
    mount_from: Option<&str>,
) -> Result<BlobPushed> {
    let blobs = store.blobs();
    if !blobs.has(&blob.digest) {
        if client.blob_exists(repo, &blob.digest)?.is_some() {
            return Ok(BlobPushed::Existed);
        }
        if let Some(from) = mount_from
            && client.mount_blob(repo, &blob.digest, from)? == MountOutcome::Mounted
        {
            return Ok(BlobPushed::Mounted);
        }
        return Err(RegistryError::Other(format!(
            "blob {} is not in the local store and {} does not have it; pull the source image (`strata pull`) and push again",
            blob.digest,
            repo.display()
        )));
    }
    let mut file = blobs.open(&blob.digest)?;
    client.push_blob(repo, &blob.digest, blob.size, mount_from, &mut file)
}
