//! Source vertices: a base image's layers, fetched lazily.
//!
//! Resolving a base only reads its manifest and config (the resolver stored
//! them, with an origin record per layer); layer blobs are fetched from the
//! registry only when something needs their bytes (a RUN's root filesystem,
//! a COPY --from, an export), so a fully cached build downloads no layer —
//! not even to record its image, which names absent layers through their
//! origin records ([`record_origin`]).

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

/// Makes sure a layer's blob is in the store, fetching it from the origins
/// the store recorded for it or, failing those, from the layer's own origin.
/// The recorded ones come first because a layer of a local image (`FROM` a
/// tag this store built lazily) names that local tag, which no registry
/// serves.
pub fn ensure_blob(
    store: &Store,
    client: &cache::transport::registry::RegistryClient,
    layer: &Layer,
) -> anyhow::Result<()> {
    if store.blobs().has(&layer.desc.digest) {
        return Ok(());
    }
    let hint = layer.origin.as_deref().map(Reference::parse).transpose()?;
    let recorded = store.origins().get(&layer.desc.digest)?.is_some();
    if hint.is_none() && !recorded {
        return Err(anyhow::anyhow!(
            "layer {} is missing from the store and has no origin to fetch it from: rebuild with --no-cache",
            layer.desc.digest
        ));
    }
    cache::transport::registry::ensure_blob_with(client, store, &layer.desc, hint.as_ref())
        .with_context(|| {
            format!(
                "fetching layer {} of {}",
                layer.desc.digest,
                layer.origin.as_deref().unwrap_or("a base image")
            )
        })?;
    Ok(())
}

/// Makes sure the store can name a layer in an image without holding its
/// blob: present, or absent with an origin record (the layer's own origin
/// is recorded if the store has none yet). This is what lets a fully
/// cached build record its image without downloading base layers.
pub fn record_origin(store: &Store, layer: &Layer) -> anyhow::Result<()> {
    if store.blobs().has(&layer.desc.digest) || store.origins().get(&layer.desc.digest)?.is_some() {
        return Ok(());
    }
    let origin = layer.origin.as_deref().ok_or_else(|| {
        anyhow::anyhow!(
            "layer {} is missing from the store and has no origin to fetch it from: rebuild with --no-cache",
            layer.desc.digest
        )
    })?;
    let reference = Reference::parse(origin)?;
    store
        .record_origin(&layer.desc, &reference)
        .with_context(|| format!("recording where layer {} comes from", layer.desc.digest))?;
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
