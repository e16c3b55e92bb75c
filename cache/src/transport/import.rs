//! The entry points the CLI and builder call to bring a local image in:
//! [`load_archive`] (`strata load`) and [`resolve_source`] (`FROM` with a
//! local, `docker-archive:` or `oci-layout:` name). They tell the formats
//! apart and hand over to the adapter; the adapters themselves only share
//! `model.rs` and `closure.rs`.

use super::archive_tar::ArchiveContents;
use super::model::LoadedImage;
use super::{docker_archive, oci_layout};
use crate::error::{Error, Result, invalid};
use crate::image::Image;
use crate::platform::Platform;
use crate::reference::ImageSource;
use crate::store::Store;

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
    let contents = ArchiveContents::scan(store.blobs(), path)?;
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
            let contents = ArchiveContents::scan(store.blobs(), path)?;
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
