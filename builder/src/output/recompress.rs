//! `-o …,compression=gzip|zstd|uncompressed`: the built image with its
//! layers re-encoded for one output.
//!
//! Layers are stored gzip-compressed (what every consumer reads); an output
//! asking for another encoding gets a second manifest over re-encoded
//! blobs. The config — and so the image ID — is unchanged, because diff_ids
//! are digests of the uncompressed tars; every re-encoded layer is checked
//! against its diff_id. zstd has no Docker media type, so a zstd image gets
//! OCI media types, as BuildKit does; uncompressed layers keep Docker's
//! (`…rootfs.diff.tar`). Conversions are remembered in the store's cache
//! index, so a warm rebuild re-encodes nothing.

use std::io;

use anyhow::{Context as _, anyhow, bail};
use cache::image::media_type::ManifestFormat;
use cache::image::{Descriptor, Image};
use cache::layer::{Compression as Codec, Decompressed, LayerSink, MediaFlavor, WriteOptions};
use cache::store::Store;

use crate::ops::Layer;
use crate::ops::source::ensure_blob;
use crate::options::Compression;

/// `img` (whose layers are `layers`) with every layer encoded as `to`.
/// gzip returns the image as it is.
pub fn recompress(
    store: &Store,
    img: &Image,
    layers: &[Layer],
    to: Compression,
) -> anyhow::Result<Image> {
    let (codec, flavor, format) = match to {
        Compression::Gzip => return Ok(img.clone()),
        Compression::Zstd => (
            Codec::Zstd { level: 3 },
            MediaFlavor::Oci,
            ManifestFormat::Oci,
        ),
        Compression::Uncompressed => (Codec::None, MediaFlavor::Docker, ManifestFormat::Docker),
    };
    let mut descs = Vec::with_capacity(layers.len());
    for l in layers {
        descs.push(layer(store, l, codec, flavor).with_context(|| {
            let name = match to {
                Compression::Gzip => "gzip",
                Compression::Zstd => "zstd",
                Compression::Uncompressed => "uncompressed",
            };
            format!("re-encoding layer {} as {name}", l.desc.digest)
        })?);
    }
    Ok(store.write_image(img.config.raw(), &descs, format)?)
}

/// One layer re-encoded (or found re-encoded before).
fn layer(
    store: &Store,
    l: &Layer,
    codec: Codec,
    flavor: MediaFlavor,
) -> anyhow::Result<Descriptor> {
    let key = format!(
        "recompress:{}:{}",
        cache::layer::media_type(codec, flavor),
        l.desc.digest
    );
    if let Some(raw) = store.cache_get(&key)?
        && let Ok(d) = serde_json::from_slice::<Descriptor>(&raw)
        && store.blobs().has(&d.digest)
    {
        return Ok(d);
    }
    ensure_blob(store, l)?;
    let (mut input, _) = Decompressed::new(store.blobs().open(&l.desc.digest)?)?;
    let mut sink = LayerSink::new(
        store.blobs().writer()?,
        codec,
        flavor,
        WriteOptions::default().zstd_workers,
    )?;
    io::copy(&mut input, &mut sink)?;
    let (desc, w) = sink.finish()?;
    if desc.diff_id != l.diff_id {
        bail!(
            "the layer decompresses to {} but the image says {}",
            desc.diff_id,
            l.diff_id
        );
    }
    let (digest, size) = w.commit(Some(&desc.digest))?;
    let d = Descriptor::new(desc.media_type.to_string(), digest, size);
    let refs = cache::index::CacheRefs {
        blobs: vec![d.digest.clone()],
        snapshots: Vec::new(),
    };
    let value = serde_json::to_vec(&d).map_err(|e| anyhow!("{e}"))?;
    store.cache_put_with_refs(&key, &value, &refs)?;
    Ok(d)
}
