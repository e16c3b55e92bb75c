//! Getting a base image ready: `FROM <reference>` resolved to an image whose
//! manifest and config are in the store, as a [`LayerStack`] whose layers the
//! engine unpacks only when a step needs them ([`Engine::lowers`]).
//!
//! Lookup order is Docker's for a builder without a daemon: the local store
//! (a tag or digest an earlier build, `strata load` or `strata pull` wrote),
//! then the registry. From the registry only the manifest and config are
//! fetched (a few KiB: enough for cache keys); each layer blob is downloaded
//! the first time a step needs it (a RUN's lowers, the final image), so a
//! build whose steps all hit the cache downloads no layer. The reference is
//! tagged in the store once all of its layers are there, so a later build
//! finds it locally (and offline). `docker-archive:PATH` and
//! `oci-layout:PATH[:tag]` read the file or directory directly (the cache
//! crate's `resolve_source`).

use anyhow::Context as _;
use cache::digest::Digest;
use cache::reference::{ImageSource, Reference};
use cache::transport::registry;

use super::Engine;
use super::stack::LayerStack;

/// A base image in the store.
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// The reference as given.
    pub reference: String,
    /// The platform manifest's digest (for cache keys).
    pub manifest_digest: Digest,
    /// The config's exact bytes (Docker-only fields included).
    pub config: Vec<u8>,
    /// Its layers, bottom first.
    pub stack: LayerStack,
}

impl BaseImage {
    /// The config digest (the image ID).
    pub fn id(&self) -> Digest {
        Digest::of(&self.config)
    }
}

/// A registry base to tag in the store once its layers are all there.
#[derive(Debug, Clone)]
pub(crate) struct PendingTag {
    reference: Reference,
    /// What the tag points to (the index, if the name named one).
    top: Digest,
    layers: Vec<Digest>,
}

impl Engine {
    /// Tags every pending registry base whose layers are all in the store.
    pub(crate) fn tag_complete_bases(&self) -> anyhow::Result<()> {
        let mut pending = self
            .pending_tags
            .lock()
            .map_err(|_| anyhow::anyhow!("internal: a build thread panicked"))?;
        let blobs = self.store.blobs();
        let mut keep = Vec::with_capacity(pending.len());
        for p in pending.drain(..) {
            if p.layers.iter().all(|d| blobs.has(d)) {
                self.store
                    .tag_image(&p.reference, &p.top)
                    .with_context(|| format!("tagging base image {}", p.reference))?;
            } else {
                keep.push(p);
            }
        }
        *pending = keep;
        Ok(())
    }

    /// Resolves `reference` (a name, `docker-archive:PATH` or
    /// `oci-layout:PATH[:tag]`) for the engine's platform, from the store or
    /// else from its registry (manifest and config only). Layers are neither
    /// downloaded nor unpacked here.
    pub fn base_image(&self, reference: &str) -> anyhow::Result<BaseImage> {
        let source = ImageSource::parse(reference)
            .with_context(|| format!("base image {reference:?} is not a valid image name"))?;
        let platform = &self.opts.platform;
        let local = cache::transport::resolve_source(&self.store, &source, platform)
            .with_context(|| format!("looking up base image {reference}"))?;
        let (image, origin) = match (local, &source) {
            (Some(img), ImageSource::Reference(r)) => (img, Some(r.to_string())),
            (Some(img), _) => (img, None),
            (None, ImageSource::Reference(r)) => {
                let remote = registry::resolve_remote(self.registry()?, r, platform)
                    .with_context(|| format!("resolving base image {reference} on its registry"))?;
                remote
                    .store_metadata(&self.store)
                    .with_context(|| format!("storing the manifest of {reference}"))?;
                let img = self
                    .store
                    .image(remote.manifest_digest(), platform)
                    .with_context(|| format!("reading the manifest of {reference}"))?;
                if r.tag().is_some() {
                    self.pending_tags
                        .lock()
                        .map_err(|_| anyhow::anyhow!("internal: a build thread panicked"))?
                        .push(PendingTag {
                            reference: r.clone(),
                            top: remote.top_digest().clone(),
                            layers: img.layers().iter().map(|l| l.digest.clone()).collect(),
                        });
                    self.tag_complete_bases()?;
                }
                (img, Some(r.to_string()))
            }
            (None, _) => anyhow::bail!("base image {reference} was not found"),
        };
        let stack =
            LayerStack::from_image(image.layers(), image.config.diff_ids(), origin.as_deref())
                .with_context(|| format!("base image {reference}"))?;
        Ok(BaseImage {
            reference: reference.to_string(),
            manifest_digest: image.manifest_digest.clone(),
            config: image.config.raw().to_vec(),
            stack,
        })
    }
}
