//! Shared helpers for the semantics test files: locating the shared corpus.
#![allow(dead_code)]

use std::path::PathBuf;

/// The shared corpus directory: `$STRATA_SHARED/corpus`, else
/// `<repo>/../shared/corpus`. A missing corpus fails the test loudly; these
/// tests never skip.
pub fn corpus_dir() -> PathBuf {
    let shared = match std::env::var_os("STRATA_SHARED") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")),
    };
    let corpus = shared.join("corpus");
    assert!(
        corpus.is_dir(),
        "shared test corpus not found at {}; set STRATA_SHARED to the folder holding corpus/",
        corpus.display()
    );
    corpus
}

/// Reads a corpus file as bytes-exact UTF-8 text.
pub fn read(rel: &str) -> String {
    let path = corpus_dir().join(rel);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read corpus file {}: {e}", path.display()))
}

/// Reads and parses a corpus JSON file.
pub fn json(rel: &str) -> serde_json::Value {
    let text = read(rel);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("corpus file {rel} is not JSON: {e}"))
}
