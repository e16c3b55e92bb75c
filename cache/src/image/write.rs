//! Writing a new image: config bytes and layer descriptors in, a manifest in
//! the blob store out.
//!
//! The builder produces the config JSON itself (it knows the Dockerfile
//! semantics); this module only checks that the pieces agree (one diff ID per
//! layer, every layer blob present with the stated size, or absent with an
//! origin record of that size) and writes a deterministic manifest, so the
//! same inputs always give the same digest.

use super::descriptor::Descriptor;
use super::manifest::Manifest;
use super::media_type::{ManifestFormat, layer_compression};
use super::{Image, ImageConfig};
use crate::cas::BlobStore;
use crate::error::{Error, Result, invalid};
use crate::origin::OriginIndex;

/// Stores `config_json` and a manifest for it and `layers` (bottom first)
/// using `format`'s media types. Each layer must be in `blobs`, or — when
/// `origins` is given — absent with an origin record, so that whatever
/// needs its bytes later can fetch them. Layer media types are translated to
/// that format's spelling. Returns the new image; its `manifest_digest` is
/// what a tag should point to.
pub fn write_image(
    blobs: &BlobStore,
    origins: Option<&OriginIndex>,
    config_json: &[u8],
    layers: &[Descriptor],
    format: ManifestFormat,
) -> Result<Image> {
    let config = ImageConfig::parse(config_json.to_vec(), "new image config")?;
    if config.diff_ids().len() != layers.len() {
        return Err(invalid(format!(
            "new image: the config lists {} diff_ids but {} layers were given",
            config.diff_ids().len(),
            layers.len()
        )));
    }
    let mut out_layers = Vec::with_capacity(layers.len());
    for l in layers {
        let (size, where_) = match (blobs.size(&l.digest), origins) {
            (Ok(size), _) => (size, "in the store"),
            (Err(Error::BlobNotFound { .. }), Some(o)) => match o.get(&l.digest)? {
                Some(rec) => (rec.size, "in its origin record"),
                None => {
                    return Err(invalid(format!(
                        "new image: layer {} is not in the store and nothing records where to fetch it from",
                        l.digest
                    )));
                }
            },
            (Err(e), _) => return Err(e),
        };
        if size != l.size {
            return Err(invalid(format!(
                "new image: layer {} is {size} bytes {where_} but its descriptor says {}",
                l.digest, l.size
            )));
        }
        let mut l = l.clone();
        if let Some(c) = layer_compression(&l.media_type) {
            l.media_type = format.layer_type(c).to_string();
        }
        out_layers.push(l);
    }
    let config_digest = blobs.put_bytes(config.raw(), Some(config.digest()))?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(format.manifest_type().to_string()),
        config: Descriptor::new(
            format.config_type(),
            config_digest,
            config.raw().len() as u64,
        ),
        layers: out_layers,
        subject: None,
        annotations: Default::default(),
    };
    store_manifest(blobs, manifest, config, "new")
}

/// Serialises `manifest`, stores it and returns the image it makes with
/// `config`. `what` names the manifest in an error ("new", "annotated", …).
fn store_manifest(
    blobs: &BlobStore,
    manifest: Manifest,
    config: ImageConfig,
    what: &str,
) -> Result<Image> {
    let manifest_raw = serde_json::to_vec(&manifest)
        .map_err(|e| invalid(format!("cannot serialize the {what} manifest: {e}")))?;
    let manifest_digest = blobs.put_bytes(&manifest_raw, None)?;
    Ok(Image {
        manifest_digest,
        manifest_raw,
        manifest,
        config,
        index_digest: None,
    })
}

/// The same image with `annotations` on its manifest (`--annotation`),
/// written with OCI media types: Docker's schema 2 manifest has no
/// annotations field. Blobs are unchanged, so the image ID stays; the new
/// manifest is stored.
pub fn with_annotations(
    blobs: &BlobStore,
    image: &Image,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<Image> {
    let oci = to_oci(blobs, image)?;
    if annotations.is_empty() {
        return Ok(oci);
    }
    let mut manifest = oci.manifest.clone();
    manifest
        .annotations
        .extend(annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
    store_manifest(blobs, manifest, image.config.clone(), "annotated")
}

/// The same image with OCI media types: manifest, config and layer types
/// translated, blobs unchanged (so the image ID stays; the manifest digest
/// changes). OCI layout readers (skopeo's `oci:`, umoci) skip descriptors
/// with Docker media types, so an export to a layout needs this. An image
/// that already is OCI is returned as is. The new manifest is stored.
pub fn to_oci(blobs: &BlobStore, image: &Image) -> Result<Image> {
    if !image.manifest.is_docker() {
        return Ok(image.clone());
    }
    let layers: Vec<Descriptor> = image
        .manifest
        .layers
        .iter()
        .map(|l| {
            let mut l = l.clone();
            l.media_type = match l.media_type.as_str() {
                super::media_type::DOCKER_LAYER_FOREIGN_GZIP => {
                    super::media_type::OCI_LAYER_NONDIST_GZIP.to_string()
                }
                t => match layer_compression(t) {
                    Some(c) => ManifestFormat::Oci.layer_type(c).to_string(),
                    None => t.to_string(),
                },
            };
            l
        })
        .collect();
    let mut config = image.manifest.config.clone();
    config.media_type = ManifestFormat::Oci.config_type().to_string();
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(ManifestFormat::Oci.manifest_type().to_string()),
        config,
        layers,
        subject: image.manifest.subject.clone(),
        annotations: image.manifest.annotations.clone(),
    };
    store_manifest(blobs, manifest, image.config.clone(), "converted")
}
