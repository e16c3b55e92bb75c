//! The docker-archive format: what `docker save` writes and `docker load`
//! and `podman load` read.
//!
//! strata writes the hybrid layout BuildKit and Docker ≥ 25 write, which
//! loads on both Docker's classic store (it reads `manifest.json`) and its
//! containerd store (which prefers `oci-layout` + `index.json`):
//!
//! ```text
//! blobs/sha256/<hex>   manifests, configs, layers
//! index.json           one descriptor per name, annotated with
//!                      io.containerd.image.name and org.opencontainers.image.ref.name
//! manifest.json        [{"Config": "blobs/sha256/…", "RepoTags": […], "Layers": […]}]
//! oci-layout           {"imageLayoutVersion":"1.0.0"}
//! ```
//!
//! Reading accepts that and the classic layout (`<id>.json`, `<id>/layer.tar`,
//! symlinked layers), with any layer compression.

use std::path::Path;

use super::archive_tar::ArchiveContents;
use super::closure::verify_diff_ids;
use super::model::{LoadedImage, ManifestEntry, OCI_LAYOUT_FILE, SaveItem, index_entry, new_index};
use super::write_tar::TarOut;
use crate::digest::Digest;
use crate::error::{Result, invalid};
use crate::image::media_type::{ManifestFormat, sniff_compression};
use crate::image::{Descriptor, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE, write_image};
use crate::reference::Reference;
use crate::store::Store;

/// Writes `items` as a docker-archive at `dest` (atomically).
pub fn save(store: &Store, items: &[SaveItem], dest: &Path) -> Result<()> {
    save_with(store, items, dest, &super::StoredOnly)
}

/// [`save`], streaming the layers `made` produces instead of reading them
/// from the store.
pub fn save_with(
    store: &Store,
    items: &[SaveItem],
    dest: &Path,
    made: &dyn super::LayerSource,
) -> Result<()> {
    if items.is_empty() {
        return Err(invalid("nothing to save: name at least one image"));
    }
    super::fetch_absent_layers(store, items, made)?;
    let mut out = TarOut::default();
    let mut index = new_index();
    // manifest.json: one entry per image, all its names in RepoTags.
    let mut entries: Vec<(Digest, ManifestEntry)> = Vec::new();
    for item in items {
        let img = &item.image;
        out.blob(&img.manifest_digest, img.manifest_raw.len() as u64);
        out.blob(&img.manifest.config.digest, img.manifest.config.size);
        for l in img.layers() {
            out.blob(&l.digest, l.size);
        }
        let desc = index_entry(item);
        if !index.manifests.contains(&desc) {
            index.manifests.push(desc);
        }
        let pos = match entries.iter().position(|(d, _)| d == &img.manifest_digest) {
            Some(p) => p,
            None => {
                entries.push((
                    img.manifest_digest.clone(),
                    ManifestEntry {
                        config: format!("blobs/sha256/{}", img.manifest.config.digest.hex()),
                        repo_tags: Some(Vec::new()),
                        layers: img
                            .layers()
                            .iter()
                            .map(|l| format!("blobs/sha256/{}", l.digest.hex()))
                            .collect(),
                    },
                ));
                entries.len() - 1
            }
        };
        if let Some(n) = &item.name
            && n.tag().is_some()
        {
            let tags = entries[pos].1.repo_tags.get_or_insert_with(Vec::new);
            let familiar = n.without_digest().familiar();
            if !tags.contains(&familiar) {
                tags.push(familiar);
            }
        }
    }
    let manifest_json: Vec<&ManifestEntry> = entries.iter().map(|(_, e)| e).collect();
    out.bytes(
        "manifest.json",
        serde_json::to_vec(&manifest_json).map_err(|e| invalid(e.to_string()))?,
    );
    out.bytes(
        "index.json",
        serde_json::to_vec(&index).map_err(|e| invalid(e.to_string()))?,
    );
    out.bytes("oci-layout", OCI_LAYOUT_FILE.to_vec());
    out.write_to(store.blobs(), made, dest)
}

/// Imports the images a docker-archive's `manifest.json` lists. Layers are
/// checked against the config's diff IDs, and a Docker schema 2 manifest is
/// made for each image (an archive without `index.json` carries none).
pub(crate) fn load_from_archive(
    store: &Store,
    contents: &ArchiveContents,
) -> Result<Vec<LoadedImage>> {
    let what = contents.what().to_string();
    let raw = contents.read(store.blobs(), "manifest.json", MAX_MANIFEST_SIZE)?;
    let entries: Option<Vec<ManifestEntry>> = serde_json::from_slice(&raw)
        .map_err(|e| invalid(format!("{what}: malformed manifest.json: {e}")))?;
    let entries = entries.ok_or_else(|| {
        invalid(format!(
            "{what}: manifest.json is null (an empty list [] is allowed)"
        ))
    })?;
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let cfg = contents.read(store.blobs(), &e.config, MAX_CONFIG_SIZE)?;
        let mut layers = Vec::new();
        for name in &e.layers {
            let (digest, size) = contents.to_blob(store.blobs(), name)?;
            let mut head = [0u8; 4];
            let n = std::io::Read::read(&mut store.blobs().open(&digest)?, &mut head)
                .map_err(|e| invalid(format!("{what}: cannot read layer {name}: {e}")))?;
            let c = sniff_compression(&head[..n]);
            layers.push(Descriptor::new(
                ManifestFormat::Docker.layer_type(c),
                digest,
                size,
            ));
        }
        let image = write_image(store.blobs(), None, &cfg, &layers, ManifestFormat::Docker)
            .map_err(|err| {
                invalid(format!(
                    "{what}: image {i} of manifest.json ({}): {err}",
                    e.config
                ))
            })?;
        verify_diff_ids(store.blobs(), &image)?;
        let mut names = Vec::new();
        for t in e.repo_tags.iter().flatten() {
            let r = Reference::parse(t)
                .map_err(|err| invalid(format!("{what}: RepoTags entry {t:?}: {err}")))?;
            if r.digest().is_some() {
                return Err(invalid(format!(
                    "{what}: RepoTags entry {t:?} has a digest; only name:tag is allowed"
                )));
            }
            names.push(r);
        }
        out.push(LoadedImage {
            names,
            top_digest: image.manifest_digest.clone(),
            image,
        });
    }
    Ok(out)
}
