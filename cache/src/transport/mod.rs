//! Moving images in and out of the store: registries (`registry/`),
//! docker-archive tarballs (`docker load` / `docker save` format) and OCI
//! image layouts (directory or tar). Every transport verifies every blob it
//! brings in against its digest, and recomputes layer diff IDs instead of
//! trusting the config.

mod archive_tar;
pub mod docker_archive;
pub mod import;
pub mod oci_layout;
pub mod registry;
pub mod rootfs;
pub mod write_tar;

pub use import::{LoadedImage, diff_id, load_archive, resolve_source, verify_diff_ids};
pub use rootfs::{RootfsImport, import_rootfs};
