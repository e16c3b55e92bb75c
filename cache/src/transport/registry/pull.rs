//! Pulling an image into the local store, and the two lighter reads the
//! builder needs: a base image's manifest digest and config without any
//! layers (enough for cache keys), and one layer on demand.
//!
//! Every blob goes through the store's writer and is committed only after
//! its sha256 matched, so a tampered or truncated download, or a SIGKILL in
//! the middle, leaves nothing behind. The tag is written last: a pull that
//! did not finish never names a half-present image.

use std::io::Write;

use super::client::{RegistryClient, Repo};
use super::error::{RegistryError, Result};
use super::fetch::FetchedManifest;
use super::parallel::{TRANSFER_WORKERS, for_each_bounded};
use crate::digest::Digest;
use crate::image::{Descriptor, MAX_CONFIG_SIZE, Manifest, ParsedManifest};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::store::Store;

/// Attempts per blob when a download breaks off in the middle.
const BLOB_ATTEMPTS: u32 = 3;

/// The repository a reference lives in.
pub fn repo_of(reference: &Reference) -> Repo {
    Repo::new(reference.registry(), reference.repository())
}

/// The tag or digest to ask the registry for (the digest wins: it pins).
pub fn registry_ref(reference: &Reference) -> String {
    match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => crate::reference::DEFAULT_TAG.to_string(),
    }
}

/// An image as the registry describes it, resolved to one platform, with
/// the (verified) manifest bytes and config — but no layers.
#[derive(Debug, Clone)]
pub struct RemoteImage {
    pub reference: Reference,
    /// The index the reference pointed at, if it pointed at one.
    pub index: Option<FetchedManifest>,
    /// The platform's image manifest.
    pub manifest: FetchedManifest,
    /// `manifest` parsed as an image manifest.
    pub image: Manifest,
    /// The config's exact bytes (verified against the manifest).
    pub config: Vec<u8>,
}

impl RemoteImage {
    /// The digest the reference resolves to on the registry: the index's if
    /// there is one, else the manifest's. This is what a tag is pointed at.
    pub fn top_digest(&self) -> &Digest {
        self.index
            .as_ref()
            .map_or(&self.manifest.digest, |i| &i.digest)
    }

    /// The platform manifest's digest.
    pub fn manifest_digest(&self) -> &Digest {
        &self.manifest.digest
    }

    /// The config's digest (the image ID).
    pub fn config_digest(&self) -> &Digest {
        &self.image.config.digest
    }

    /// The layer descriptors, bottom first.
    pub fn layers(&self) -> &[Descriptor] {
        &self.image.layers
    }

    /// Writes the index (if any), manifest and config into the store, each
    /// verified against its digest. Layers are not downloaded: for each one
    /// the store lacks, it records that this reference serves it, so the
    /// image is whole in the store's eyes and its layers come on demand.
    pub fn store_metadata(&self, store: &Store) -> Result<()> {
        let blobs = store.blobs();
        for l in self.layers() {
            store.record_origin(l, &self.reference)?;
        }
        blobs.put_bytes(&self.config, Some(self.config_digest()))?;
        blobs.put_bytes(&self.manifest.bytes, Some(&self.manifest.digest))?;
        if let Some(i) = &self.index {
            blobs.put_bytes(&i.bytes, Some(&i.digest))?;
        }
        Ok(())
    }
}

/// Resolves `reference` on its registry to one platform's manifest and
/// config. Downloads a few KiB, never a layer.
pub fn resolve_remote(
    client: &RegistryClient,
    reference: &Reference,
    platform: &Platform,
) -> Result<RemoteImage> {
    let repo = repo_of(reference);
    let top = client.get_manifest(&repo, &registry_ref(reference))?;
    let (index, manifest) = match &top.parsed {
        ParsedManifest::Image(_) => (None, top),
        ParsedManifest::Index(idx) => {
            let chosen = idx
                .select(platform, &format!("{reference}"))
                .map_err(|e| {
                    RegistryError::Other(format!("{e}; pass --platform with one of those"))
                })?
                .digest
                .clone();
            let child = client.get_manifest(&repo, &chosen.to_string())?;
            (Some(top), child)
        }
    };
    let image = match &manifest.parsed {
        ParsedManifest::Image(m) => (**m).clone(),
        ParsedManifest::Index(_) => {
            return Err(RegistryError::Other(format!(
                "{reference}: the index entry for {platform} is itself an index; nested indexes are not supported"
            )));
        }
    };
    if image.config.size > MAX_CONFIG_SIZE {
        return Err(RegistryError::Other(format!(
            "{reference}: the config blob {} claims {} bytes, more than the {MAX_CONFIG_SIZE} strata accepts",
            image.config.digest, image.config.size
        )));
    }
    let mut config = Vec::with_capacity(usize::try_from(image.config.size).unwrap_or(0));
    client.get_blob(
        &repo,
        &image.config.digest,
        Some(image.config.size),
        &mut config,
    )?;
    Ok(RemoteImage {
        reference: reference.clone(),
        index,
        manifest,
        image,
        config,
    })
}

/// For cache keys: the platform manifest digest and the config bytes of a
/// registry image, without downloading layers or touching the store.
pub fn fetch_manifest_and_config(
    client: &RegistryClient,
    reference: &Reference,
    platform: &Platform,
) -> Result<(Digest, Vec<u8>)> {
    let r = resolve_remote(client, reference, platform)?;
    Ok((r.manifest.digest, r.config))
}

/// Downloads one blob of `reference`'s repository into the store (verified
/// against digest and size; nothing is kept on failure). Returns false if
/// the store already had it.
pub fn fetch_blob(
    client: &RegistryClient,
    store: &Store,
    reference: &Reference,
    blob: &Descriptor,
) -> Result<bool> {
    fetch_into_store(
        client,
        store,
        &repo_of(reference),
        &blob.digest,
        Some(blob.size),
    )
}

/// [`fetch_blob`] when only the digest is known (the size is then not
/// bounded in advance; the digest is still verified).
pub fn fetch_blob_by_digest(
    client: &RegistryClient,
    store: &Store,
    reference: &Reference,
    digest: &Digest,
) -> Result<bool> {
    fetch_into_store(client, store, &repo_of(reference), digest, None)
}

/// Streams one blob into the store through a temp file, committed only once
/// verified; a download that breaks off is retried from scratch.
fn fetch_into_store(
    client: &RegistryClient,
    store: &Store,
    repo: &Repo,
    digest: &Digest,
    size: Option<u64>,
) -> Result<bool> {
    let blobs = store.blobs();
    if blobs.has(digest) {
        return Ok(false);
    }
    // One deadline for every attempt: a registry that stalls is not given
    // a fresh budget by each retry.
    let deadline = client.blob_deadline(size);
    let mut attempt = 1;
    loop {
        // A fresh temp file per attempt; dropping a writer deletes it.
        let mut w = blobs.writer()?;
        match client.get_blob_until(repo, digest, size, &mut w, deadline) {
            Ok(_) => {
                w.commit(Some(digest))?;
                // Only tidiness: a leftover origin record of a present blob
                // is ignored by every reader and dropped by the next prune.
                let _ = store.origins().remove(digest);
                return Ok(true);
            }
            Err(e) if e.is_transient() && attempt < BLOB_ATTEMPTS => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

/// [`fetch_into_store`] in one pass that also hands every byte, as it
/// arrives, to `also` (a layer being unpacked while it downloads). One
/// attempt only: `also` cannot take bytes a second time, so a download that
/// breaks off is not retried here; the caller starts over. The blob is
/// committed only once its digest and size matched; on any error nothing
/// is kept, and `also` must discard what it got. Returns how many bytes
/// reached `also` (0 when nothing did, so another source may be tried).
pub(super) fn fetch_into_store_teed(
    client: &RegistryClient,
    store: &Store,
    repo: &Repo,
    desc: &Descriptor,
    also: &mut dyn Write,
) -> std::result::Result<(), (RegistryError, u64)> {
    let deadline = client.blob_deadline(Some(desc.size));
    let mut w = store.blobs().writer().map_err(|e| (e.into(), 0))?;
    let mut tee = Tee {
        store: &mut w,
        also,
        written: 0,
    };
    let got = client.get_blob_until(repo, &desc.digest, Some(desc.size), &mut tee, deadline);
    let written = tee.written;
    got.map_err(|e| (e, written))?;
    w.commit(Some(&desc.digest))
        .map_err(|e| (e.into(), written))?;
    let _ = store.origins().remove(&desc.digest);
    Ok(())
}

/// Writes every byte to the store's blob writer and to a second consumer.
struct Tee<'a> {
    store: &'a mut dyn Write,
    also: &'a mut dyn Write,
    written: u64,
}

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.store.write_all(buf)?;
        self.written += buf.len() as u64;
        self.also.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.store.flush()?;
        self.also.flush()
    }
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// What the tag now points at (index or manifest).
    pub digest: Digest,
    /// The platform manifest.
    pub manifest_digest: Digest,
    /// The image ID (config digest).
    pub config_digest: Digest,
    /// Layers downloaded now.
    pub downloaded: Vec<Digest>,
    /// Layers the store already had.
    pub present: Vec<Digest>,
    /// Whether the reference was tagged in the store (digest-only references
    /// are not).
    pub tagged: bool,
}

/// Pulls `reference` for `platform` into the store and tags it: index (if
/// any), manifest, config and every layer, verified; the tag last.
pub fn pull(
    client: &RegistryClient,
    store: &Store,
    reference: &Reference,
    platform: &Platform,
) -> Result<PullReport> {
    pull_with_progress(client, store, reference, platform, &|_| {})
}

/// What a pull reports while it runs, for progress output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// The reference resolved; these layers follow.
    Resolved {
        manifest: Digest,
        layers: usize,
        bytes: u64,
    },
    /// A layer the store already has.
    LayerPresent(Digest),
    /// A layer download starts.
    LayerStarted { digest: Digest, size: u64 },
    /// A layer is downloaded, verified and stored.
    LayerDone(Digest),
}

/// [`pull`], calling `progress` (from several threads) as it goes.
pub fn pull_with_progress(
    client: &RegistryClient,
    store: &Store,
    reference: &Reference,
    platform: &Platform,
    progress: &(dyn Fn(PullEvent) + Sync),
) -> Result<PullReport> {
    let remote = resolve_remote(client, reference, platform)?;
    progress(PullEvent::Resolved {
        manifest: remote.manifest.digest.clone(),
        layers: remote.layers().len(),
        bytes: remote.layers().iter().map(|l| l.size).sum(),
    });
    let repo = repo_of(reference);
    let (downloaded, present) = fetch_layers(client, store, &repo, remote.layers(), progress)?;
    remote.store_metadata(store)?;
    let tagged = reference.tag().is_some();
    if tagged {
        store.tag_image(reference, remote.top_digest())?;
    }
    Ok(PullReport {
        digest: remote.top_digest().clone(),
        manifest_digest: remote.manifest.digest.clone(),
        config_digest: remote.config_digest().clone(),
        downloaded,
        present,
        tagged,
    })
}

/// Downloads the layers the store lacks, a few at a time.
fn fetch_layers(
    client: &RegistryClient,
    store: &Store,
    repo: &Repo,
    layers: &[Descriptor],
    progress: &(dyn Fn(PullEvent) + Sync),
) -> Result<(Vec<Digest>, Vec<Digest>)> {
    let fetched = for_each_bounded(layers, TRANSFER_WORKERS, |layer| {
        if store.blobs().has(&layer.digest) {
            progress(PullEvent::LayerPresent(layer.digest.clone()));
        } else {
            progress(PullEvent::LayerStarted {
                digest: layer.digest.clone(),
                size: layer.size,
            });
        }
        let new = fetch_into_store(client, store, repo, &layer.digest, Some(layer.size))?;
        if new {
            progress(PullEvent::LayerDone(layer.digest.clone()));
        }
        Ok(new)
    })?;
    let (mut downloaded, mut present) = (Vec::new(), Vec::new());
    for (layer, new) in layers.iter().zip(fetched) {
        if new {
            downloaded.push(layer.digest.clone());
        } else {
            present.push(layer.digest.clone());
        }
    }
    Ok((downloaded, present))
}
