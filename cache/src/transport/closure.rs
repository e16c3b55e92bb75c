//! Copying an image's closure (index → manifest → config and layers) from a
//! local source into the store, and checking its layers against the diff
//! IDs its config lists. Both local adapters (docker-archive, OCI layout)
//! import through here.

use rayon::prelude::*;

use crate::cas::BlobStore;
use crate::digest::{Digest, Sha256};
use crate::error::{Error, IoContext, Result, invalid};
use crate::image::{Descriptor, Image, MAX_MANIFEST_SIZE, ParsedManifest};
use crate::layer::Decompressed;
use crate::platform::Platform;
use crate::store::Store;

/// Something that can put a blob it holds into the store, verified.
pub(crate) trait BlobProvider: Sync {
    /// Makes sure `desc`'s blob is in the store, copying and verifying it.
    fn fetch(&self, blobs: &BlobStore, desc: &Descriptor) -> Result<()>;
    /// Names the source in messages.
    fn what(&self) -> String;
}

/// Copies the closure of `top` (index → the `platform` manifest → config and
/// layers) from `src` into the store, then loads the image and checks its
/// diff IDs against the layer contents.
pub(crate) fn import_closure(
    store: &Store,
    src: &dyn BlobProvider,
    top: &Descriptor,
    platform: &Platform,
) -> Result<Image> {
    let blobs = store.blobs();
    src.fetch(blobs, top)?;
    let raw = blobs.read_verified(&top.digest, MAX_MANIFEST_SIZE)?;
    let what = format!("{}: manifest {}", src.what(), top.digest);
    let manifest = match ParsedManifest::parse(&raw, Some(&top.media_type), &what)? {
        ParsedManifest::Image(m) => *m,
        ParsedManifest::Index(idx) => {
            let child = idx.select(platform, &what)?.clone();
            src.fetch(blobs, &child)?;
            let raw = blobs.read_verified(&child.digest, MAX_MANIFEST_SIZE)?;
            let what = format!("{}: manifest {}", src.what(), child.digest);
            match ParsedManifest::parse(&raw, Some(&child.media_type), &what)? {
                ParsedManifest::Image(m) => *m,
                ParsedManifest::Index(_) => {
                    return Err(invalid(format!(
                        "{what}: nested image indexes are not supported"
                    )));
                }
            }
        }
    };
    src.fetch(blobs, &manifest.config)?;
    manifest
        .layers
        .par_iter()
        .try_for_each(|l| src.fetch(blobs, l))?;
    let image = Image::load(blobs, &top.digest, platform)?;
    verify_diff_ids(blobs, &image)?;
    Ok(image)
}

/// Decompresses every layer (in parallel) and checks that it hashes to the
/// diff ID the config lists for it.
pub fn verify_diff_ids(blobs: &BlobStore, image: &Image) -> Result<()> {
    image
        .layers()
        .par_iter()
        .zip(image.config.diff_ids().par_iter())
        .enumerate()
        .try_for_each(|(i, (layer, expected))| {
            let actual = diff_id(blobs, &layer.digest)?;
            if &actual != expected {
                return Err(Error::DigestMismatch {
                    what: format!(
                        "layer {i} ({}) of image {}: its uncompressed content does not match rootfs.diff_ids[{i}]",
                        layer.digest,
                        image.id()
                    ),
                    expected: expected.clone(),
                    actual,
                });
            }
            Ok(())
        })
}

/// The sha256 of a layer blob's decompressed content.
pub fn diff_id(blobs: &BlobStore, layer: &Digest) -> Result<Digest> {
    let path = blobs.path(layer);
    let (mut r, _) = Decompressed::new(blobs.open(layer)?).ctx("read layer", &path)?;
    let mut h = Sha256::new();
    h.update_from(&mut r).ctx("decompress layer", &path)?;
    Ok(h.finalize())
}
