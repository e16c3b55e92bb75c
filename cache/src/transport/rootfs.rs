//! `docker import`: a one-layer image from a root filesystem tarball.
//!
//! The tarball (plain, gzip or zstd) becomes the single layer, recompressed
//! with gzip by the layer module in the same pass that computes its diff ID,
//! and a minimal config is written for it (`os`, `architecture`, `created`,
//! one history entry). No name is given here; the caller tags the result.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use crate::error::{Error, IoContext, Result, invalid};
use crate::image::{Descriptor, Image, ManifestFormat};
use crate::layer::{Compression, Decompressed, LayerSink, MediaFlavor};
use crate::platform::Platform;
use crate::store::Store;

/// Options for [`import_rootfs`].
#[derive(Clone, Debug, Default)]
pub struct RootfsImport {
    /// The platform to record in the config (default: this machine's).
    pub platform: Option<Platform>,
    /// A history comment (`docker import -m`).
    pub message: Option<String>,
    /// Manifest media types (default OCI).
    pub format: ManifestFormat,
}

/// Imports the tarball at `path` as a one-layer image.
pub fn import_rootfs(store: &Store, path: &Path, opts: &RootfsImport) -> Result<Image> {
    let file = File::open(path).ctx("open root filesystem tarball", path)?;
    let (input, _) = Decompressed::new(file).ctx("read", path)?;
    let mut input = BufReader::with_capacity(1 << 20, input);
    // A tar header has "ustar" at offset 257; refusing anything else early
    // gives a clear message instead of an image nobody can unpack.
    let head = input.fill_buf().ctx("read", path)?;
    if head.len() < 262 || &head[257..262] != b"ustar" {
        return Err(invalid(format!(
            "{} is not a tar archive (plain, gzip or zstd); give `strata import` a root filesystem tarball",
            path.display()
        )));
    }
    let flavor = match opts.format {
        ManifestFormat::Oci => MediaFlavor::Oci,
        ManifestFormat::Docker => MediaFlavor::Docker,
    };
    let writer = store.blobs().writer()?;
    let mut sink =
        LayerSink::new(writer, Compression::default(), flavor, 2).ctx("start compressing", path)?;
    io::copy(&mut input, &mut sink).map_err(|e| Error::Io {
        op: "read and compress",
        path: path.to_path_buf(),
        cause: e,
    })?;
    let (layer, writer) = sink.finish().ctx("finish compressing", path)?;
    let (digest, size) = writer.commit(Some(&layer.digest))?;
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| invalid(format!("cannot format the current time: {e}")))?;
    let mut history = serde_json::json!({
        "created": now,
        "created_by": format!("strata import {}", path.display()),
    });
    if let Some(m) = &opts.message {
        history["comment"] = serde_json::Value::String(m.clone());
    }
    let mut config = serde_json::json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "created": now,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [history],
    });
    if let Some(v) = &platform.variant {
        config["variant"] = serde_json::Value::String(v.clone());
    }
    let config = serde_json::to_vec(&config).map_err(|e| invalid(e.to_string()))?;
    let desc = Descriptor::new(layer.media_type, digest, size);
    store.write_image(&config, &[desc], opts.format)
}
