//! Fuzz target: manifests, indexes and configs come from registries,
//! archives and OCI layouts. Parsing any bytes, under any declared media
//! type, must never panic.
#![no_main]

use cache::image::{ImageConfig, ParsedManifest};
use libfuzzer_sys::fuzz_target;

const DECLARED: &[Option<&str>] = &[
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json"),
    Some("text/plain"),
];

fuzz_target!(|data: &[u8]| {
    for declared in DECLARED {
        if let Ok(m) = ParsedManifest::parse(data, *declared, "fuzz") {
            let _ = format!("{m:?}");
        }
    }
    if let Ok(c) = ImageConfig::parse(data.to_vec(), "fuzz") {
        let _ = c.parsed();
    }
});
