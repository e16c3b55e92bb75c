//! Moving images in and out of the store: registries (`registry/`),
//! docker-archive tarballs (`docker load` / `docker save` format) and OCI
//! image layouts (directory or tar). Every transport verifies every blob it
//! brings in against its digest, and recomputes layer diff IDs instead of
//! trusting the config. Writers fetch layers the store only has an origin
//! record for ([`fetch_absent_layers`]) before writing anything.

mod archive_tar;
pub mod docker_archive;
pub mod import;
pub mod oci_layout;
pub mod registry;
pub mod rootfs;
pub mod write_tar;

pub use import::{LoadedImage, diff_id, load_archive, resolve_source, verify_diff_ids};
pub use rootfs::{RootfsImport, import_rootfs};

/// Brings every layer of `items` the store lacks into it, from the origins
/// the store recorded: an image recorded by a fully cached build names base
/// layers that were never downloaded, and an archive or layout must hold
/// them all.
pub(crate) fn fetch_absent_layers(
    store: &crate::store::Store,
    items: &[docker_archive::SaveItem],
) -> crate::error::Result<()> {
    for item in items {
        registry::ensure_image_blobs(store, &item.image).map_err(|e| match e {
            registry::RegistryError::Store(e) => e,
            e => crate::error::Error::Fetch(e.to_string()),
        })?;
    }
    Ok(())
}
