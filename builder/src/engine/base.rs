//! Getting a base image ready: `FROM <reference>` resolved to an image whose
//! manifest and config are in the store, as a [`LayerStack`] whose layers the
//! engine unpacks only when a step needs them ([`Engine::lowers`]).
//!
//! Lookup order is Docker's for a builder without a daemon: the local store
//! (a tag or digest an earlier build, `strata load` or `strata pull` wrote),
//! then the registry (pulled into the store and tagged, so the next build is
//! offline). `docker-archive:PATH` and `oci-layout:PATH[:tag]` read the file
//! or directory directly (the cache crate's `resolve_source`).

use anyhow::Context as _;
use cache::digest::Digest;
use cache::reference::ImageSource;
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

impl Engine {
    /// Resolves `reference` (a name, `docker-archive:PATH` or
    /// `oci-layout:PATH[:tag]`) for the engine's platform, pulling it if the
    /// store does not have it. Layers are not unpacked here.
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
                let report = registry::pull(self.registry()?, &self.store, r, platform)
                    .with_context(|| format!("pulling base image {reference}"))?;
                let img = self
                    .store
                    .image(&report.digest, platform)
                    .with_context(|| format!("reading the pulled image {reference}"))?;
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
