//! Helpers the integration tests in this folder share: where the test
//! registry is, a scratch directory that cleans up after itself, and the
//! `strata` command pointed at a store root. Each test file includes this
//! with `mod support;` and uses only some of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// The registry the tests talk to (CI: the peers registry on loopback).
pub fn registry() -> String {
    std::env::var("STRATA_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into())
}

/// Nanoseconds since the epoch: unique names and random seeds.
pub fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// `<pid>-<nanos>`: a name no other test run uses.
pub fn unique() -> String {
    format!("{}-{}", std::process::id(), nanos())
}

/// A fresh directory under the test temp dir, removed when dropped. Blobs in
/// a store are read-only files, but their directories are writable, so the
/// removal works as the unprivileged test user.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("strata-test-{tag}-{}", unique()));
        std::fs::create_dir_all(&p).expect("create scratch dir");
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `strata --root ROOT ARGS…`, with no registry mirror from the caller's
/// environment in the way.
pub fn strata_cmd(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    c.arg("--root")
        .arg(root)
        .args(args)
        .env_remove("STRATA_REGISTRY_MIRROR");
    c
}
