//! Image manifests (OCI and Docker schema 2) and image indexes (OCI index,
//! Docker manifest list), parsed from the exact bytes that were hashed.
//!
//! Manifests are never re-serialized once read: their digest is the hash of
//! the bytes we got, and pushing or saving them again must reproduce that
//! digest, so callers keep the raw bytes next to the parsed value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::descriptor::Descriptor;
use super::media_type::{self, is_index, is_manifest, is_schema1};
use crate::error::{Result, invalid};
use crate::platform::Platform;

/// A single-image manifest: one config and its layers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index / manifest list: one manifest per platform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What a manifest blob turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParsedManifest {
    Image(Box<Manifest>),
    Index(Index),
}

/// Just enough of any manifest to tell which kind it is.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<u32>,
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
    layers: Option<serde_json::Value>,
}

impl ParsedManifest {
    /// Parses manifest bytes. `declared` is the media type the bytes came
    /// with (a registry Content-Type, a descriptor), used when the JSON has
    /// no `mediaType` field. `what` names the source in error messages.
    pub fn parse(bytes: &[u8], declared: Option<&str>, what: &str) -> Result<Self> {
        let probe: Probe = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("{what}: not a JSON manifest: {e}")))?;
        let mt = probe.media_type.as_deref().or(declared).map(str::to_string);
        if let Some(mt) = &mt
            && is_schema1(mt)
        {
            return Err(invalid(format!(
                "{what}: Docker schema 1 manifests are not supported; push the image again with a current Docker or use its schema 2 / OCI manifest"
            )));
        }
        if probe.schema_version != Some(2) {
            return Err(invalid(format!(
                "{what}: schemaVersion is {:?}, only 2 is supported",
                probe.schema_version
            )));
        }
        let index = match mt.as_deref() {
            Some(t) if is_index(t) => true,
            Some(t) if is_manifest(t) => false,
            // No (or an unknown) media type: judge by shape, as OCI allows.
            _ => probe.manifests.is_some() && probe.layers.is_none(),
        };
        if index {
            let idx: Index = serde_json::from_slice(bytes)
                .map_err(|e| invalid(format!("{what}: malformed image index: {e}")))?;
            Ok(ParsedManifest::Index(idx))
        } else {
            let m: Manifest = serde_json::from_slice(bytes)
                .map_err(|e| invalid(format!("{what}: malformed image manifest: {e}")))?;
            Ok(ParsedManifest::Image(Box::new(m)))
        }
    }
}

impl Manifest {
    /// Whether this manifest uses Docker media types.
    pub fn is_docker(&self) -> bool {
        self.media_type.as_deref() == Some(media_type::DOCKER_MANIFEST)
            || self.config.media_type == media_type::DOCKER_CONFIG
    }

    /// The media type the manifest declares, defaulting to OCI.
    pub fn media_type(&self) -> &str {
        self.media_type
            .as_deref()
            .unwrap_or(media_type::OCI_MANIFEST)
    }
}

impl Index {
    /// The manifest for `platform`, skipping attestation manifests (BuildKit
    /// stores provenance as `unknown/unknown` entries). Errors list what the
    /// index has, so the user can pick a `--platform`.
    pub fn select(&self, platform: &Platform, what: &str) -> Result<&Descriptor> {
        let candidates: Vec<&Descriptor> = self
            .manifests
            .iter()
            .filter(|d| {
                d.annotations
                    .get("vnd.docker.reference.type")
                    .map(String::as_str)
                    != Some("attestation-manifest")
            })
            .collect();
        if let Some(d) = candidates
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
        {
            return Ok(d);
        }
        let have: Vec<String> = candidates
            .iter()
            .map(|d| {
                d.platform
                    .as_ref()
                    .map_or("(no platform)".to_string(), |p| p.to_string())
            })
            .collect();
        Err(crate::error::Error::NotFound(format!(
            "{what} has no image for platform {platform}; it has: {}",
            if have.is_empty() {
                "nothing".to_string()
            } else {
                have.join(", ")
            }
        )))
    }

    /// The media type the index declares, defaulting to OCI.
    pub fn media_type(&self) -> &str {
        self.media_type.as_deref().unwrap_or(media_type::OCI_INDEX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    fn d(s: &str) -> String {
        Digest::of(s.as_bytes()).to_string()
    }

    #[test]
    fn parses_docker_and_oci_manifests() {
        let docker = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","size":7,"digest":"{}"}},"layers":[{{"mediaType":"{}","size":9,"digest":"{}"}}]}}"#,
            media_type::DOCKER_MANIFEST,
            media_type::DOCKER_CONFIG,
            d("c"),
            media_type::DOCKER_LAYER_GZIP,
            d("l")
        );
        let ParsedManifest::Image(m) =
            ParsedManifest::parse(docker.as_bytes(), None, "t").expect("parse")
        else {
            panic!("not an image manifest")
        };
        assert!(m.is_docker());
        assert_eq!(m.layers.len(), 1);
        assert_eq!(m.layers[0].size, 9);
        // No mediaType field: recognized by shape.
        let oci = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{}","size":7,"digest":"{}"}},"layers":[]}}"#,
            media_type::OCI_CONFIG,
            d("c")
        );
        assert!(matches!(
            ParsedManifest::parse(oci.as_bytes(), None, "t"),
            Ok(ParsedManifest::Image(m)) if !m.is_docker()
        ));
    }

    #[test]
    fn rejects_schema1_bad_digest_and_garbage() {
        let s1 = r#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        let err = ParsedManifest::parse(
            s1.as_bytes(),
            Some(media_type::DOCKER_MANIFEST_V1_SIGNED),
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("schema 1"), "{err}");
        let bad = r#"{"schemaVersion":2,"config":{"mediaType":"x","size":1,"digest":"sha256:zz"},"layers":[]}"#;
        assert!(ParsedManifest::parse(bad.as_bytes(), None, "t").is_err());
        assert!(ParsedManifest::parse(b"not json", None, "t").is_err());
    }

    #[test]
    fn index_selects_platform_and_skips_attestations() {
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[
              {{"mediaType":"{m}","size":1,"digest":"{}","platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
              {{"mediaType":"{m}","size":2,"digest":"{}","platform":{{"architecture":"amd64","os":"linux"}}}},
              {{"mediaType":"{m}","size":3,"digest":"{}","platform":{{"architecture":"unknown","os":"unknown"}},
                "annotations":{{"vnd.docker.reference.type":"attestation-manifest"}}}}]}}"#,
            media_type::OCI_INDEX,
            d("arm"),
            d("amd"),
            d("att"),
            m = media_type::OCI_MANIFEST
        );
        let ParsedManifest::Index(i) =
            ParsedManifest::parse(idx.as_bytes(), None, "t").expect("parse")
        else {
            panic!("not an index")
        };
        assert_eq!(
            i.select(&Platform::linux_amd64(), "t").expect("amd64").size,
            2
        );
        assert_eq!(
            i.select(&"linux/arm64".parse().expect("p"), "t")
                .expect("arm64")
                .size,
            1
        );
        let err = i
            .select(&"linux/s390x".parse().expect("p"), "idx")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("linux/amd64") && err.contains("linux/arm64/v8"),
            "{err}"
        );
        assert!(!err.contains("unknown"), "{err}");
    }
}
