//! Helpers shared by the parser conformance tests (included with `mod`).
#![allow(dead_code)]

use std::path::PathBuf;

/// The shared corpus: `$STRATA_SHARED/corpus`, else `../../shared/corpus`
/// next to this repository. A missing corpus fails the test loudly.
pub fn corpus(sub: &str) -> PathBuf {
    let shared = std::env::var_os("STRATA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")));
    let dir = shared.join("corpus").join(sub);
    assert!(
        dir.is_dir(),
        "test corpus {} not found: set STRATA_SHARED to the shared folder",
        dir.display()
    );
    dir
}

/// Reads a corpus JSON file.
pub fn cases(sub: &str) -> Vec<serde_json::Value> {
    let path = corpus(sub).join("cases.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON in {}: {e}", path.display()))
}
