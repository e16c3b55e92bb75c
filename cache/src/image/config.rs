//! The image config blob, kept as the exact bytes it was read or built from.
//!
//! A config is identified by the sha256 of its bytes (that is the image ID),
//! and Docker-only fields such as `Healthcheck`, `OnBuild` and `Shell` must
//! survive a pull/save/push round trip. So the raw bytes are the truth; the
//! parsed oci-spec view is only for reading fields and is never serialized
//! back.

use oci_spec::image::ImageConfiguration;

use super::chain::chain_ids;
use crate::digest::Digest;
use crate::error::{Result, invalid};
use crate::platform::Platform;

/// An image config: raw bytes, their digest, and a parsed view.
#[derive(Clone, Debug)]
pub struct ImageConfig {
    raw: Vec<u8>,
    digest: Digest,
    parsed: ImageConfiguration,
    diff_ids: Vec<Digest>,
}

impl ImageConfig {
    /// Parses config bytes. `what` names the source in error messages.
    pub fn parse(raw: Vec<u8>, what: &str) -> Result<Self> {
        let parsed: ImageConfiguration = serde_json::from_slice(&raw)
            .map_err(|e| invalid(format!("{what}: malformed image config: {e}")))?;
        if parsed.rootfs().typ() != "layers" {
            return Err(invalid(format!(
                "{what}: rootfs.type is {:?}, expected \"layers\"",
                parsed.rootfs().typ()
            )));
        }
        let diff_ids = parsed
            .rootfs()
            .diff_ids()
            .iter()
            .map(|s| {
                s.parse::<Digest>()
                    .map_err(|e| invalid(format!("{what}: bad rootfs.diff_ids entry: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ImageConfig {
            digest: Digest::of(&raw),
            raw,
            parsed,
            diff_ids,
        })
    }

    /// The exact bytes.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The digest of the bytes, which is also the image ID.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The image ID Docker shows: the config digest.
    pub fn image_id(&self) -> &Digest {
        &self.digest
    }

    /// The parsed fields (read-only).
    pub fn parsed(&self) -> &ImageConfiguration {
        &self.parsed
    }

    /// The uncompressed layer digests, in order (bottom layer first).
    pub fn diff_ids(&self) -> &[Digest] {
        &self.diff_ids
    }

    /// The chain IDs computed from the diff IDs.
    pub fn chain_ids(&self) -> Vec<Digest> {
        chain_ids(&self.diff_ids)
    }

    /// The platform the config says the image is for.
    pub fn platform(&self) -> Platform {
        Platform {
            os: self.parsed.os().to_string(),
            architecture: self.parsed.architecture().to_string(),
            variant: self.parsed.variant().clone(),
        }
    }

    /// The creation time as seconds since the epoch, if the config has a
    /// parseable `created`.
    pub fn created_unix(&self) -> Option<i64> {
        let s = self.parsed.created().as_deref()?;
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(|t| t.unix_timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_raw_bytes_and_docker_fields() {
        let raw = br#"{"architecture":"amd64","os":"linux","created":"2024-01-02T03:04:05.123456789Z","config":{"Healthcheck":{"Test":["CMD","true"]},"OnBuild":["RUN x"],"Shell":["/bin/bash","-c"]},"rootfs":{"type":"layers","diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]}}"#;
        let c = ImageConfig::parse(raw.to_vec(), "t").expect("parse");
        assert_eq!(c.raw(), &raw[..]);
        assert_eq!(c.image_id(), &Digest::of(raw));
        assert_eq!(c.diff_ids().len(), 1);
        assert_eq!(c.platform(), Platform::linux_amd64());
        assert_eq!(c.created_unix(), Some(1_704_164_645));
        let text = String::from_utf8_lossy(c.raw());
        assert!(text.contains("Healthcheck") && text.contains("OnBuild") && text.contains("Shell"));
    }

    #[test]
    fn rejects_bad_configs() {
        assert!(ImageConfig::parse(b"{}".to_vec(), "t").is_err());
        let bad = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["nope"]}}"#;
        let err = ImageConfig::parse(bad.to_vec(), "cfg.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cfg.json") && err.contains("diff_ids"),
            "{err}"
        );
    }
}
