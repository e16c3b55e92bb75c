//! Just enough of the manifest formats for a registry client: media types,
//! the `Accept` header, and reading descriptors (config, layers, child
//! manifests with their platform) out of manifest bytes.
//!
//! The client never re-serializes a manifest: it keeps the registry's bytes,
//! hashes them, and only *reads* these fields to know what else to fetch.
//! Both OCI and Docker schema 2 spellings are accepted, since registries
//! serve either and the fields used here are the same in both.

use serde::Deserialize;

use crate::digest::Digest;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 image manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 2 manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI empty config/descriptor, used by artifacts with no real config.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// The `Accept` header for manifest requests: every format we can read, so a
/// registry never down-converts (which would change the digest).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// Whether a manifest is a single image or a list of per-platform manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An image manifest (config + layers).
    Image,
    /// An image index / manifest list.
    Index,
}

/// A content descriptor as manifests carry them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<DescriptorPlatform>,
    #[serde(default)]
    pub artifact_type: Option<String>,
}

/// The `platform` object of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DescriptorPlatform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl DescriptorPlatform {
    /// `os/arch[/variant]`.
    pub fn display(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    artifact_type: Option<String>,
}

/// The parts of a manifest the client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedManifest {
    pub kind: ManifestKind,
    /// The media type: the `Content-Type` the registry sent if it is a
    /// manifest type, else the document's `mediaType`, else inferred.
    pub media_type: String,
    /// Image manifests: the config descriptor.
    pub config: Option<Descriptor>,
    /// Image manifests: the layers, in order.
    pub layers: Vec<Descriptor>,
    /// Indexes: the child manifests.
    pub manifests: Vec<Descriptor>,
    /// OCI artifacts: the `artifactType`, if any.
    pub artifact_type: Option<String>,
}

/// Parses manifest bytes. `content_type` is the registry's header, if any.
pub fn parse_manifest(bytes: &[u8], content_type: Option<&str>) -> Result<ParsedManifest, String> {
    let raw: Raw = serde_json::from_slice(bytes)
        .map_err(|e| format!("the manifest is not valid JSON: {e}"))?;
    if raw.schema_version == Some(1) {
        return Err(
            "this is a Docker schema 1 manifest, which is deprecated and not supported; \
             re-push the image with a current Docker or skopeo"
                .to_string(),
        );
    }
    let header_type = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim().to_string())
        .filter(|c| is_manifest_type(c));
    let media_type = header_type.or(raw.media_type.clone()).unwrap_or_else(|| {
        if raw.manifests.is_some() {
            OCI_INDEX.to_string()
        } else {
            OCI_MANIFEST.to_string()
        }
    });
    let kind = if media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST {
        ManifestKind::Index
    } else {
        ManifestKind::Image
    };
    match kind {
        ManifestKind::Index if raw.manifests.is_none() => {
            return Err(format!("a {media_type} document without `manifests`"));
        }
        ManifestKind::Image if raw.config.is_none() => {
            return Err(format!("a {media_type} document without `config`"));
        }
        _ => {}
    }
    Ok(ParsedManifest {
        kind,
        media_type,
        config: raw.config,
        layers: raw.layers.unwrap_or_default(),
        manifests: raw.manifests.unwrap_or_default(),
        artifact_type: raw.artifact_type,
    })
}

/// Whether `t` is one of the four manifest media types.
pub fn is_manifest_type(t: &str) -> bool {
    matches!(
        t,
        OCI_MANIFEST | OCI_INDEX | DOCKER_MANIFEST | DOCKER_MANIFEST_LIST
    )
}

/// A wanted platform: `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedPlatform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl WantedPlatform {
    /// `linux/amd64`, the default.
    pub fn linux_amd64() -> Self {
        WantedPlatform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "invalid platform {s:?}: expected OS/ARCH[/VARIANT], e.g. linux/amd64"
            ));
        }
        Ok(WantedPlatform {
            os: parts[0].to_ascii_lowercase(),
            architecture: parts[1].to_ascii_lowercase(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }

    /// Whether an index entry's platform satisfies this request. A missing
    /// variant on either side matches; `arm64` without variant means `v8`.
    pub fn matches(&self, p: &DescriptorPlatform) -> bool {
        if self.os != p.os || self.architecture != p.architecture {
            return false;
        }
        let norm = |arch: &str, v: Option<&str>| match (arch, v) {
            ("arm64", None) => Some("v8".to_string()),
            (_, v) => v.map(str::to_string),
        };
        match (
            norm(&self.architecture, self.variant.as_deref()),
            norm(&p.architecture, p.variant.as_deref()),
        ) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }
}

impl std::fmt::Display for WantedPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Picks the child manifest for `wanted` out of an index: the first entry
/// that matches (indexes list preferred entries first). Entries that are not
/// image manifests (attestations, signatures) are skipped. Err lists what the
/// index offers.
pub fn select_platform<'a>(
    index: &'a ParsedManifest,
    wanted: &WantedPlatform,
) -> Result<&'a Descriptor, String> {
    let images = index.manifests.iter().filter(|d| {
        d.media_type.is_empty() || d.media_type == OCI_MANIFEST || d.media_type == DOCKER_MANIFEST
    });
    let mut available = Vec::new();
    for d in images {
        match &d.platform {
            Some(p) if p.os == "unknown" => continue,
            Some(p) if wanted.matches(p) => return Ok(d),
            Some(p) => available.push(p.display()),
            None => available.push("(no platform)".into()),
        }
    }
    Err(if available.is_empty() {
        "nothing".to_string()
    } else {
        available.join(", ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn index() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST_LIST}","manifests":[
            {{"mediaType":"{DOCKER_MANIFEST}","digest":"{D1}","size":10,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
            {{"mediaType":"{DOCKER_MANIFEST}","digest":"{D2}","size":11,"platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":12,"platform":{{"os":"unknown","architecture":"unknown"}}}}]}}"#
        )
    }

    #[test]
    fn picks_the_wanted_platform_and_lists_the_rest() {
        let idx = parse_manifest(index().as_bytes(), None).expect("parse");
        assert_eq!(idx.kind, ManifestKind::Index);
        let amd = select_platform(&idx, &WantedPlatform::linux_amd64()).expect("amd64");
        assert_eq!(amd.digest.to_string(), D2);
        let arm = select_platform(&idx, &WantedPlatform::parse("linux/arm64").expect("p"))
            .expect("arm64");
        assert_eq!(arm.digest.to_string(), D1);
        let err = select_platform(&idx, &WantedPlatform::parse("linux/s390x").expect("p"))
            .expect_err("no s390x");
        assert_eq!(err, "linux/arm64/v8, linux/amd64");
    }

    #[test]
    fn media_type_comes_from_header_then_document_then_shape() {
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{D1}","size":1}},"layers":[]}}"#
        );
        let p = parse_manifest(
            m.as_bytes(),
            Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"),
        )
        .expect("parse");
        assert_eq!(p.media_type, DOCKER_MANIFEST);
        assert_eq!(p.kind, ManifestKind::Image);
        let p = parse_manifest(m.as_bytes(), Some("application/octet-stream")).expect("parse");
        assert_eq!(p.media_type, OCI_MANIFEST);
        assert!(
            parse_manifest(br#"{"schemaVersion":1,"fsLayers":[]}"#, None)
                .expect_err("schema1")
                .contains("schema 1")
        );
        assert!(
            parse_manifest(
                br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}"#,
                None
            )
            .is_err()
        );
    }
}
