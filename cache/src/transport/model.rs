//! The image model the local transports share: what an archive or layout
//! holds and hands back, independent of its format. docker-archive and OCI
//! layout both build on this module and never on each other, as
//! go-containerregistry's `tarball` and `layout` build on its shared `v1`
//! model (and helpers such as `partial`), not on one another.
//!
//! strata's docker-archives are hybrids (an OCI layout plus Docker's
//! `manifest.json`), so both formats' small files are described here:
//! `OCI_LAYOUT_FILE`, the `index.json` entry of a named image
//! (`index_entry`) and a `manifest.json` entry ([`ManifestEntry`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::image::descriptor::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use crate::image::{Descriptor, Image, Index, media_type};
use crate::reference::Reference;

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

/// An image to put in an archive, with the name (if any) to give it.
#[derive(Clone, Debug)]
pub struct SaveItem {
    pub name: Option<Reference>,
    pub image: Image,
}

/// One entry of a docker-archive's `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ManifestEntry {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

/// The `oci-layout` file content.
pub(crate) const OCI_LAYOUT_FILE: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The `index.json` descriptor of `item`'s manifest, annotated with its full
/// name (`io.containerd.image.name`) and its tag
/// (`org.opencontainers.image.ref.name`) when it has them.
pub(crate) fn index_entry(item: &SaveItem) -> Descriptor {
    let img = &item.image;
    let mut d = Descriptor::new(
        img.manifest.media_type(),
        img.manifest_digest.clone(),
        img.manifest_raw.len() as u64,
    );
    if let Some(n) = &item.name {
        d = d.with_annotation(ANNOTATION_IMAGE_NAME, n.to_string());
        if let Some(t) = n.tag() {
            d = d.with_annotation(ANNOTATION_REF_NAME, t);
        }
    }
    d
}

/// An empty OCI image index.
pub(crate) fn new_index() -> Index {
    Index {
        schema_version: 2,
        media_type: Some(media_type::OCI_INDEX.to_string()),
        manifests: Vec::new(),
        annotations: BTreeMap::new(),
    }
}
