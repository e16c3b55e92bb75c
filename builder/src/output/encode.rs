//! Layer blobs for outputs: each output gets the encoding it needs, made
//! once per layer and encoding and remembered.
//!
//! Layers built here are kept as directories (`crate::ops::commit`); their
//! blob is the uncompressed tar, made on demand. A docker-archive takes the
//! image as stored ([`Want::AsStored`]: layers built here uncompressed,
//! streamed from their directories, as `docker save` writes them; base
//! layers as pulled). An OCI archive, a push and a cache export take gzip
//! ([`Want::Gzip`]), and `compression=` asks for one encoding everywhere.
//! A layer not yet in the wanted encoding is encoded — from its directory
//! or by decompressing its blob — into a blob of the store, in parallel
//! across layers; the result is remembered in the cache index under the
//! layer's diff_id and encoding, so the next push or export costs nothing
//! (and `strata prune` may drop it). The config, and so the image ID, never
//! changes: diff_ids are digests of the uncompressed tars, and every
//! encoded layer is checked against its diff_id. zstd has no Docker media
//! type, so a zstd image gets OCI media types, as BuildKit does.

use std::io;

use anyhow::{Context as _, anyhow, bail};
use cache::image::media_type::ManifestFormat;
use cache::image::{Descriptor, Image};
use cache::layer::{Compression as Codec, Decompressed, LayerSink, MediaFlavor, WriteOptions};
use cache::store::Store;
use cache::transport::registry::RegistryError;
use cache::transport::registry::parallel::{TRANSFER_WORKERS, for_each_bounded};

use crate::ops::Layer;
use crate::ops::exec::Executor;
use crate::options::Compression;

/// The encoding an output wants its layers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// As the store keeps them (a docker-archive by default).
    AsStored,
    Gzip,
    Zstd,
    Uncompressed,
}

impl Want {
    /// `compression=` if given, else `default`.
    pub fn from_option(c: Option<Compression>, default: Want) -> Want {
        match c {
            None => default,
            Some(Compression::Gzip) => Want::Gzip,
            Some(Compression::Zstd) => Want::Zstd,
            Some(Compression::Uncompressed) => Want::Uncompressed,
        }
    }
}

/// The codec, media-type flavor and manifest format of an encoding
/// (`None`: as stored).
pub(crate) fn params(want: Want) -> Option<(Codec, MediaFlavor, ManifestFormat)> {
    match want {
        Want::AsStored => None,
        Want::Gzip => Some((
            Codec::default(),
            MediaFlavor::Docker,
            ManifestFormat::Docker,
        )),
        Want::Zstd => Some((
            Codec::Zstd { level: 3 },
            MediaFlavor::Oci,
            ManifestFormat::Oci,
        )),
        Want::Uncompressed => Some((Codec::None, MediaFlavor::Docker, ManifestFormat::Docker)),
    }
}

/// Whether `l` is in `codec` already. `stored`: every layer must be a
/// blob of the store (a push), so an uncompressed layer kept as a
/// directory is not.
pub(crate) fn keeps(store: &Store, l: &Layer, codec: Codec, stored: bool) -> bool {
    encoding_of(&l.desc) == Some(codec_kind(codec))
        && !(stored && crate::ops::commit::is_dir_layer(store, l))
}

/// `img` (whose layers are `layers`) with every layer in the encoding
/// `want`: the same image when nothing needs encoding. `stored`: every
/// layer must be a blob of the store (a push), so an uncompressed layer
/// kept as a directory is written out too.
pub fn encode(
    store: &Store,
    executor: &Executor,
    img: &Image,
    layers: &[Layer],
    want: Want,
    stored: bool,
) -> anyhow::Result<Image> {
    let Some((codec, flavor, format)) = params(want) else {
        return Ok(img.clone());
    };
    if layers.iter().all(|l| keeps(store, l, codec, stored)) {
        return Ok(img.clone());
    }
    // Plain threads, not the rayon pool: an encoder waiting for its share
    // of the budget must not hold a worker the gzip members need.
    let budget = Budget::new();
    let descs = for_each_bounded(layers, TRANSFER_WORKERS, |l| {
        let one = || {
            if keeps(store, l, codec, stored) {
                return Ok(l.desc.clone());
            }
            if let Some(d) = remembered(store, l, codec, flavor)? {
                return Ok(d);
            }
            let _share = budget.take(l);
            encode_now(store, executor, l, codec, flavor, &mut io::sink())
        };
        one().map_err(|e: anyhow::Error| RegistryError::Other(format!("{e:#}")))
    })?;
    image_over(store, img, &descs, format)
}

/// `img` over the layer descriptors `descs` (the same config, so the same
/// image ID), stored, keeping the manifest's annotations (`--annotation`).
pub(crate) fn image_over(
    store: &Store,
    img: &Image,
    descs: &[Descriptor],
    format: ManifestFormat,
) -> anyhow::Result<Image> {
    let out = store.write_image(img.config.raw(), descs, format)?;
    if img.manifest.annotations.is_empty() {
        return Ok(out);
    }
    Ok(cache::image::with_annotations(
        store.blobs(),
        &out,
        &img.manifest.annotations,
    )?)
}

/// Memory for layers being encoded at once. An encoder holds about three
/// times `min(layer, 24 MiB)` (gzip members in flight, their output, the
/// upload's chunks; untouched capacity is not resident), so one big layer
/// and a few small ones fit, and a push or export of many big layers stays
/// under 100 MiB. Encoders share the CPUs anyway: a gzip layer already
/// keeps every core busy.
const ENCODE_BUDGET: u64 = 72 << 20;

/// The memory one layer's encoder may take (see [`ENCODE_BUDGET`]).
fn encode_cost(l: &Layer) -> u64 {
    3 * l.desc.size.clamp(1 << 16, 24 << 20)
}

/// A share of [`ENCODE_BUDGET`], waited for and given back on drop.
pub(crate) struct Budget {
    left: std::sync::Mutex<u64>,
    freed: std::sync::Condvar,
}

impl Budget {
    pub(crate) fn new() -> Budget {
        Budget {
            left: std::sync::Mutex::new(ENCODE_BUDGET),
            freed: std::sync::Condvar::new(),
        }
    }

    /// Waits until `l`'s encoder fits (it always fits alone).
    pub(crate) fn take(&self, l: &Layer) -> Share<'_> {
        let cost = encode_cost(l).min(ENCODE_BUDGET);
        let mut left = self.left.lock().unwrap_or_else(|p| p.into_inner());
        while *left < cost {
            left = self.freed.wait(left).unwrap_or_else(|p| p.into_inner());
        }
        *left -= cost;
        Share { budget: self, cost }
    }
}

/// A layer encoder's share of the budget.
pub(crate) struct Share<'a> {
    budget: &'a Budget,
    cost: u64,
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        let mut left = self.budget.left.lock().unwrap_or_else(|p| p.into_inner());
        *left += self.cost;
        self.budget.freed.notify_all();
    }
}

/// `l` as a gzip blob of the store (encoded once, remembered).
pub fn gzip_layer(store: &Store, executor: &Executor, l: &Layer) -> anyhow::Result<Layer> {
    let desc = layer(store, executor, l, Codec::default(), MediaFlavor::Docker)
        .with_context(|| format!("compressing layer {}", l.diff_id))?;
    Ok(Layer {
        desc,
        diff_id: l.diff_id.clone(),
        origin: None,
    })
}

/// `img`'s layers as [`Layer`]s (diff_ids from its config), for an image
/// read back from the store (`strata push`, `strata save`).
pub fn layers_of(img: &Image) -> Vec<Layer> {
    img.layers()
        .iter()
        .zip(img.config.diff_ids())
        .map(|(d, diff_id)| Layer {
            desc: d.clone(),
            diff_id: diff_id.clone(),
            origin: None,
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    None,
    Gzip,
    Zstd,
}

fn codec_kind(c: Codec) -> Kind {
    match c {
        Codec::None => Kind::None,
        Codec::Gzip { .. } => Kind::Gzip,
        Codec::Zstd { .. } => Kind::Zstd,
    }
}

/// A layer descriptor's encoding, from its media type.
fn encoding_of(d: &Descriptor) -> Option<Kind> {
    let mt = d.media_type.as_str();
    if mt.ends_with("gzip") {
        Some(Kind::Gzip)
    } else if mt.ends_with("zstd") {
        Some(Kind::Zstd)
    } else if mt.ends_with(".tar") {
        Some(Kind::None)
    } else {
        None
    }
}

/// One layer in `codec`: found encoded before, or encoded now.
fn layer(
    store: &Store,
    executor: &Executor,
    l: &Layer,
    codec: Codec,
    flavor: MediaFlavor,
) -> anyhow::Result<Descriptor> {
    match remembered(store, l, codec, flavor)? {
        Some(d) => Ok(d),
        None => encode_now(store, executor, l, codec, flavor, &mut io::sink()),
    }
}

/// The cache-index key under which a layer's encoding is remembered.
fn memo_key(l: &Layer, codec: Codec, flavor: MediaFlavor) -> String {
    format!(
        "encode:{}:{}",
        cache::layer::media_type(codec, flavor),
        l.diff_id
    )
}

/// `l`'s encoding in `codec` if it was made before and its blob is still
/// in the store.
pub(crate) fn remembered(
    store: &Store,
    l: &Layer,
    codec: Codec,
    flavor: MediaFlavor,
) -> anyhow::Result<Option<Descriptor>> {
    if let Some(raw) = store.cache_get(&memo_key(l, codec, flavor))?
        && let Ok(d) = serde_json::from_slice::<Descriptor>(&raw)
        && store.blobs().has(&d.digest)
    {
        return Ok(Some(d));
    }
    Ok(None)
}

/// Encodes `l` in `codec` into a blob of the store — from its directory or
/// by decompressing its blob — and remembers it; every encoded byte also
/// goes to `also` as it is made (an upload). The result is checked against
/// the layer's diff_id.
pub(crate) fn encode_now(
    store: &Store,
    executor: &Executor,
    l: &Layer,
    codec: Codec,
    flavor: MediaFlavor,
    also: &mut dyn io::Write,
) -> anyhow::Result<Descriptor> {
    let encoded = (|| {
        let input = crate::ops::file::open_layer(store, executor, l)?;
        let (mut plain, _) = Decompressed::new(io::BufReader::with_capacity(1 << 16, input))?;
        let out = Tee {
            blob: store.blobs().writer()?,
            also,
        };
        let mut sink = LayerSink::new(out, codec, flavor, WriteOptions::default().zstd_workers)?;
        io::copy(&mut plain, &mut sink)?;
        let (desc, out) = sink.finish()?;
        if desc.diff_id != l.diff_id {
            bail!(
                "the layer's tar is {} but the image says {}",
                desc.diff_id,
                l.diff_id
            );
        }
        let (digest, size) = out.blob.commit(Some(&desc.digest))?;
        Ok(Descriptor::new(desc.media_type.to_string(), digest, size))
    })()
    .with_context(|| format!("encoding layer {} as {}", l.diff_id, codec_name(codec)))?;
    let refs = cache::index::CacheRefs {
        blobs: vec![encoded.digest.clone()],
        snapshots: Vec::new(),
    };
    let value = serde_json::to_vec(&encoded).map_err(|e| anyhow!("{e}"))?;
    store.cache_put_with_refs(&memo_key(l, codec, flavor), &value, &refs)?;
    Ok(encoded)
}

/// The encoder's output: the store's blob writer, and a second consumer.
struct Tee<'a> {
    blob: cache::cas::BlobWriter,
    also: &'a mut dyn io::Write,
}

impl io::Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.blob.write_all(buf)?;
        self.also.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.blob.flush()?;
        self.also.flush()
    }
}

/// How an error names an encoding.
fn codec_name(c: Codec) -> &'static str {
    match c {
        Codec::None => "uncompressed",
        Codec::Zstd { .. } => "zstd",
        Codec::Gzip { .. } => "gzip",
    }
}
