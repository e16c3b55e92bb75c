//! Bringing an image's blobs into the store from a local source, checking
//! everything on the way, and the entry points the CLI and builder call:
//! [`load_archive`] (`strata load`) and [`resolve_source`] (`FROM` with a
//! local, `docker-archive:` or `oci-layout:` name).

use rayon::prelude::*;

use super::{docker_archive, oci_layout};
use crate::cas::BlobStore;
use crate::digest::{Digest, Sha256};
use crate::error::{Error, IoContext, Result, invalid};
use crate::image::{Descriptor, Image, MAX_MANIFEST_SIZE, ParsedManifest};
use crate::layer::Decompressed;
use crate::platform::Platform;
use crate::reference::{ImageSource, Reference};
use crate::store::Store;

/// An image brought into the store.
#[derive(Clone, Debug)]
pub struct LoadedImage {
    /// The names it was tagged with (none for an unnamed image).
    pub names: Vec<Reference>,
    /// What the names point to: the manifest, or the index it came in.
    pub top_digest: Digest,
    /// The image for the requested platform.
    pub image: Image,
}

/// Something that can put a blob it holds into the store, verified.
pub(crate) trait BlobSource: Sync {
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
    src: &dyn BlobSource,
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

/// `strata load -i FILE`: reads a docker-archive or OCI archive tarball (or
/// an OCI layout directory),
/// verifies it, stores its blobs and tags its names. Returns each image.
pub fn load_archive(
    store: &Store,
    path: &std::path::Path,
    platform: &Platform,
) -> Result<Vec<LoadedImage>> {
    let loaded = if path.is_dir() {
        oci_layout::load_dir(store, path, platform)?
    } else {
        load_tar(store, path, platform)?
    };
    for l in &loaded {
        for n in &l.names {
            store.tag_image(n, &l.top_digest)?;
        }
    }
    Ok(loaded)
}

fn load_tar(
    store: &Store,
    path: &std::path::Path,
    platform: &Platform,
) -> Result<Vec<LoadedImage>> {
    let contents = super::archive_tar::ArchiveContents::scan(store.blobs(), path)?;
    let loaded = if contents.has("oci-layout") && contents.has("index.json") {
        oci_layout::load_from_archive(store, &contents, platform)?
    } else if contents.has("manifest.json") {
        docker_archive::load_from_archive(store, &contents)?
    } else {
        return Err(invalid(format!(
            "{} is neither a docker-archive (no manifest.json) nor an OCI archive (no oci-layout and index.json)",
            path.display()
        )));
    };
    Ok(loaded)
}

/// Finds the base image an [`ImageSource`] names, in the store or by
/// reading the archive or layout it points to (which stores its blobs, so
/// the next build finds them). `Ok(None)` means a plain reference that is
/// not in the store: the caller pulls it from its registry.
pub fn resolve_source(
    store: &Store,
    source: &ImageSource,
    platform: &Platform,
) -> Result<Option<Image>> {
    match source {
        ImageSource::Reference(r) => store.resolve_image_for(r, platform),
        ImageSource::DockerArchive(path) => {
            let contents = super::archive_tar::ArchiveContents::scan(store.blobs(), path)?;
            let mut images = if contents.has("oci-layout") && contents.has("index.json") {
                oci_layout::load_from_archive(store, &contents, platform)?
            } else {
                docker_archive::load_from_archive(store, &contents)?
            };
            match images.len() {
                1 => Ok(images.pop().map(|l| l.image)),
                0 => Err(Error::NotFound(format!(
                    "docker-archive {} holds no image",
                    path.display()
                ))),
                n => Err(invalid(format!(
                    "docker-archive {} holds {n} images; a base image archive must hold exactly one",
                    path.display()
                ))),
            }
        }
        ImageSource::OciLayout { path, tag } => {
            oci_layout::import_layout(store, path, tag.as_deref(), platform).map(|l| Some(l.image))
        }
    }
}
