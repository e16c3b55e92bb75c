//! `FROM name` where `--build-context name=DIR` names a directory: the
//! directory is the stage's root filesystem, as in BuildKit — one layer of
//! its files, an empty config (no Env, no Cmd), one history entry.
//!
//! The layer is written into the store on every build (mtimes clamped to
//! 0, so unchanged files give the same layer and the steps after it hit the
//! cache). Files the current user owns become root's, as files copied from
//! a context do; other owners are kept.

use std::path::Path;

use anyhow::Context as _;
use cache::image::media_type::ManifestFormat;
use cache::layer::{Compression, MediaFlavor, OwnerSource, WriteOptions, write_dir};
use cache::store::Store;
use serde_json::json;

/// Writes the image for `dir` into the store; returns its manifest digest.
pub fn image_from_dir(store: &Store, name: &str, dir: &Path) -> anyhow::Result<String> {
    if !dir.is_dir() {
        anyhow::bail!("--build-context {name}={}: not a directory", dir.display());
    }
    let opts = WriteOptions {
        compression: Compression::default(),
        flavor: MediaFlavor::Docker,
        source_date_epoch: Some(0),
        owners: OwnerSource::Xattr,
        ..Default::default()
    };
    let mut w = store.blobs().writer()?;
    let desc = write_dir(dir, &opts, &mut w)
        .with_context(|| format!("reading --build-context {name}={}", dir.display()))?;
    let (digest, size) = w.commit(Some(&desc.digest))?;
    let platform = crate::platform::host();
    let config = json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "created": "1970-01-01T00:00:00Z",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [desc.diff_id.to_string()]},
        "history": [{
            "created": "1970-01-01T00:00:00Z",
            "created_by": format!("--build-context {name}=<directory>"),
        }],
    });
    let layer = cache::image::Descriptor::new(desc.media_type, digest, size);
    let img = store.write_image(
        &serde_json::to_vec(&config)?,
        &[layer],
        ManifestFormat::Docker,
    )?;
    Ok(img.manifest_digest.to_string())
}
