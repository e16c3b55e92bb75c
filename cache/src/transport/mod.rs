//! Moving images in and out of the store: registries (`registry/`),
//! docker-archive tarballs (`docker load` / `docker save` format) and OCI
//! image layouts (directory or tar). The last two are adapters over one
//! shared image model ([`model`], `closure.rs`) and never import each
//! other; [`import`] tells them apart for `strata load` and `FROM`. Every
//! transport verifies every blob it brings in against its digest, and
//! recomputes layer diff IDs instead of trusting the config. Writers fetch layers the store only has an origin
//! record for ([`fetch_absent_layers`]) before writing anything, and stream
//! the layers built here from their directories through a [`LayerSource`]
//! (the caller's: making a layer's tar may need a user namespace).

mod archive_tar;
mod closure;
pub mod docker_archive;
pub mod import;
pub mod model;
pub mod oci_layout;
pub mod registry;
pub mod rootfs;
pub mod write_tar;

pub use closure::{diff_id, verify_diff_ids};
pub use import::{load_archive, resolve_source};
pub use model::{LoadedImage, SaveItem};
pub use rootfs::{RootfsImport, import_rootfs};

/// Makes the bytes of layer blobs the store does not hold but can produce:
/// layers built here, kept as directories (see [`crate::origin`]). A
/// writer streams them into its output and verifies them against their
/// digest there, so a directory that no longer makes its layer's exact
/// tar fails the output instead of corrupting it.
pub trait LayerSource: Sync {
    /// Whether this source makes the blob `digest`.
    fn makes(&self, digest: &crate::digest::Digest) -> bool;
    /// A reader of the blob's bytes.
    fn open(&self, digest: &crate::digest::Digest) -> std::io::Result<Box<dyn std::io::Read + '_>>;
}

/// Only what the store holds (or can fetch): no layer made on demand.
pub struct StoredOnly;

impl LayerSource for StoredOnly {
    fn makes(&self, _: &crate::digest::Digest) -> bool {
        false
    }
    fn open(&self, digest: &crate::digest::Digest) -> std::io::Result<Box<dyn std::io::Read + '_>> {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("blob {digest} is not in the store"),
        ))
    }
}

/// Brings every layer of `items` the store lacks into it, from the origins
/// the store recorded: an image recorded by a fully cached build names base
/// layers that were never downloaded, and an archive or layout must hold
/// them all.
pub(crate) fn fetch_absent_layers(
    store: &crate::store::Store,
    items: &[SaveItem],
    made: &dyn LayerSource,
) -> crate::error::Result<()> {
    for item in items {
        let mut image = item.image.clone();
        image.manifest.layers.retain(|l| !made.makes(&l.digest));
        registry::ensure_image_blobs(store, &image).map_err(|e| match e {
            registry::RegistryError::Store(e) => e,
            e => crate::error::Error::Fetch(e.to_string()),
        })?;
    }
    Ok(())
}
