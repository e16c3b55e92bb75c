//! The image model: manifests, indexes, configs and descriptors, and
//! [`Image`], one platform's image as resolved from the store.

pub mod chain;
pub mod config;
pub mod descriptor;
pub mod manifest;
pub mod media_type;
pub mod write;

pub use chain::chain_ids;
pub use config::ImageConfig;
pub use descriptor::Descriptor;
pub use manifest::{Index, Manifest, ParsedManifest};
pub use media_type::{LayerCompression, ManifestFormat};
pub use write::{to_oci, with_annotations, write_image};

use crate::cas::BlobStore;
use crate::digest::Digest;
use crate::error::{Result, invalid};
use crate::platform::Platform;

/// The largest manifest or index strata reads (registries cap at 4 MiB).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// The largest config strata reads.
pub const MAX_CONFIG_SIZE: u64 = 64 << 20;

/// One platform's image whose manifest and config are in the store.
#[derive(Clone, Debug)]
pub struct Image {
    /// Digest of the single-platform manifest.
    pub manifest_digest: Digest,
    /// The manifest's exact bytes.
    pub manifest_raw: Vec<u8>,
    pub manifest: Manifest,
    pub config: ImageConfig,
    /// The index this manifest was chosen from, when the name pointed to one.
    pub index_digest: Option<Digest>,
}

impl Image {
    /// Reads the image at `digest` from the store. If it is an index, the
    /// manifest for `platform` is chosen (it must be in the store too). The
    /// manifest and config are verified against their digests, and the
    /// number of layers must match the config's diff IDs.
    pub fn load(blobs: &BlobStore, digest: &Digest, platform: &Platform) -> Result<Image> {
        let raw = blobs.read_verified(digest, MAX_MANIFEST_SIZE)?;
        let what = format!("manifest {digest}");
        match ParsedManifest::parse(&raw, None, &what)? {
            ParsedManifest::Image(m) => Self::from_manifest(blobs, digest.clone(), raw, *m, None),
            ParsedManifest::Index(idx) => {
                let chosen = idx
                    .select(platform, &format!("image index {digest}"))?
                    .digest
                    .clone();
                let raw = blobs.read_verified(&chosen, MAX_MANIFEST_SIZE)?;
                let what = format!("manifest {chosen}");
                match ParsedManifest::parse(&raw, None, &what)? {
                    ParsedManifest::Image(m) => {
                        Self::from_manifest(blobs, chosen, raw, *m, Some(digest.clone()))
                    }
                    ParsedManifest::Index(_) => Err(invalid(format!(
                        "image index {digest} points to another index for {platform}; nested indexes are not supported"
                    ))),
                }
            }
        }
    }

    fn from_manifest(
        blobs: &BlobStore,
        manifest_digest: Digest,
        manifest_raw: Vec<u8>,
        manifest: Manifest,
        index_digest: Option<Digest>,
    ) -> Result<Image> {
        let cfg_raw = blobs.read_verified(&manifest.config.digest, MAX_CONFIG_SIZE)?;
        let config = ImageConfig::parse(cfg_raw, &format!("config {}", manifest.config.digest))?;
        if config.diff_ids().len() != manifest.layers.len() {
            return Err(invalid(format!(
                "manifest {manifest_digest} has {} layers but its config lists {} diff_ids",
                manifest.layers.len(),
                config.diff_ids().len()
            )));
        }
        Ok(Image {
            manifest_digest,
            manifest_raw,
            manifest,
            config,
            index_digest,
        })
    }

    /// The image ID (config digest), as `docker images` shows it.
    pub fn id(&self) -> &Digest {
        self.config.image_id()
    }

    /// The layer descriptors, bottom first.
    pub fn layers(&self) -> &[Descriptor] {
        &self.manifest.layers
    }

    /// Manifest + config + layer bytes: what the image occupies as blobs.
    pub fn size(&self) -> u64 {
        self.manifest_raw.len() as u64
            + self.manifest.config.size
            + self.manifest.layers.iter().map(|l| l.size).sum::<u64>()
    }

    /// The digests of every blob this image needs (manifest, config, layers).
    pub fn blob_digests(&self) -> Vec<Digest> {
        let mut v = vec![
            self.manifest_digest.clone(),
            self.manifest.config.digest.clone(),
        ];
        v.extend(self.manifest.layers.iter().map(|l| l.digest.clone()));
        v
    }
}
