//! Source vertices: a base image's layers, fetched lazily.
//!
//! Resolving a base only reads its manifest and config (the resolver stored
//! them); layer blobs are fetched from the registry only when something
//! needs their bytes (a RUN's root filesystem, a COPY --from, an export), so
//! a fully cached build downloads no layer.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use cache::reference::Reference;
use cache::store::Store;

use super::Layer;

/// The layers of a stored image, marked with where to fetch them from.
pub fn image_layers(
    store: &Store,
    reference: &str,
    manifest_digest: &str,
) -> anyhow::Result<Vec<Layer>> {
    let digest = manifest_digest.parse().map_err(|e| {
        anyhow::anyhow!("base image {reference}: bad digest {manifest_digest:?}: {e}")
    })?;
    let img = store
        .image(&digest, &cache::platform::Platform::host())
        .with_context(|| format!("reading base image {reference} from the store"))?;
    let diff_ids = img.config.diff_ids().to_vec();
    Ok(img
        .layers()
        .iter()
        .zip(diff_ids)
        .map(|(d, diff_id)| Layer {
            desc: d.clone(),
            diff_id,
            origin: Some(reference.to_string()),
        })
        .collect())
}

/// Makes sure a layer's blob is in the store, fetching it from its origin.
pub fn ensure_blob(store: &Store, layer: &Layer) -> anyhow::Result<()> {
    if store.blobs().has(&layer.desc.digest) {
        return Ok(());
    }
    let origin = layer
        .origin
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("layer {} is missing from the store and has no origin to fetch it from: rebuild with --no-cache", layer.desc.digest))?;
    let reference = Reference::parse(origin)?;
    let client = cache::transport::registry::RegistryClient::from_env()?;
    cache::transport::registry::fetch_blob(&client, store, &reference, &layer.desc)
        .with_context(|| format!("fetching layer {} of {origin}", layer.desc.digest))?;
    Ok(())
}

/// The directory holding a layer unpacked in overlay form, shared by every
/// step that stacks on it: `<root>/snapshots/layer-<diff_id hex>`.
pub fn layer_dir(store: &Store, layer: &Layer) -> PathBuf {
    store.snapshots_dir().join(layer_dir_name(layer))
}

/// The name of a layer's directory under `<root>/snapshots/`: one plain
/// name, because that is what a cache entry can keep alive
/// ([`cache::index::CacheRefs::snapshots`]); `strata prune` removes every
/// directory there that no entry names.
pub fn layer_dir_name(layer: &Layer) -> String {
    format!("layer-{}", layer.diff_id.hex())
}

/// Whether a layer directory is complete (it is renamed into place only
/// after a full unpack).
pub fn layer_dir_ready(dir: &Path) -> bool {
    dir.is_dir()
}
