//! What a registry client must know about manifests beyond the shared image
//! model ([`crate::image`]): the `Accept` header, and which media type to
//! remember for bytes a registry served.
//!
//! The client never re-serializes a manifest: it keeps the registry's bytes,
//! hashes them, and only reads the parsed form to know what else to fetch.

use crate::image::ParsedManifest;
use crate::image::media_type::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};

/// The `Accept` header for manifest requests: every format we can read, so a
/// registry never down-converts (which would change the digest).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// Whether `t` is one of the four manifest media types we handle.
pub fn is_manifest_type(t: &str) -> bool {
    matches!(
        t,
        OCI_MANIFEST | OCI_INDEX | DOCKER_MANIFEST | DOCKER_MANIFEST_LIST
    )
}

/// The media type to send a manifest with: the `Content-Type` the registry
/// served it with when that is a manifest type (the JSON may lack a
/// `mediaType` field), else what the document says or implies.
pub fn effective_media_type(content_type: Option<&str>, parsed: &ParsedManifest) -> String {
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim())
        .filter(|c| is_manifest_type(c));
    match (header, parsed) {
        (Some(h), _) => h.to_string(),
        (None, ParsedManifest::Image(m)) if m.is_docker() => DOCKER_MANIFEST.to_string(),
        (None, ParsedManifest::Image(m)) => m.media_type().to_string(),
        (None, ParsedManifest::Index(i)) => i.media_type().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_wins_then_document() {
        let m = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":1},"layers":[]}"#;
        let p = ParsedManifest::parse(m, None, "t").expect("parse");
        assert_eq!(effective_media_type(None, &p), DOCKER_MANIFEST);
        assert_eq!(
            effective_media_type(
                Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
                &p
            ),
            OCI_MANIFEST
        );
        assert_eq!(
            effective_media_type(Some("text/plain"), &p),
            DOCKER_MANIFEST
        );
        let i = br#"{"schemaVersion":2,"manifests":[]}"#;
        let p = ParsedManifest::parse(i, None, "t").expect("parse");
        assert_eq!(effective_media_type(None, &p), OCI_INDEX);
    }
}
