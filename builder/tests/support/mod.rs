//! Helpers the integration tests in this folder share: where the test
//! registry is, a scratch directory that cleans up after itself, and the
//! `strata` command pointed at a store root. Each test file includes this
//! with `mod support;` and uses only some of it.
#![allow(dead_code)]

pub mod kill_clock;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
        if std::fs::remove_dir_all(&self.0).is_err() {
            // A store keeps image directories with their own modes (0555
            // and the like), whose entries cannot be unlinked until the
            // directory is writable again.
            make_writable(&self.0);
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Adds owner rwx to every directory under `dir` (symlinks not followed).
fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode() | 0o700;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            make_writable(&e.path());
        }
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

/// Runs `cmd` with no input; its stdout, or a failed test naming it.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The layer media types of the manifest a docker or OCI archive's
/// `index.json` names (skopeo's docker-archive transport reports its own,
/// not ours).
pub fn archive_layer_media_types(archive: &Path) -> Vec<String> {
    let cat = |name: &str| run(Command::new("tar").arg("-xOf").arg(archive).arg(name));
    let index: serde_json::Value = serde_json::from_str(&cat("index.json")).unwrap();
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest: serde_json::Value = serde_json::from_str(&cat(&format!(
        "blobs/sha256/{}",
        digest.trim_start_matches("sha256:")
    )))
    .unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap().to_string())
        .collect()
}

/// Loads an archive into a throw-away podman store, runs `cmd` in a
/// container of it (no network) and returns what it printed.
pub fn podman_load_and_run(archive: &Path, cmd: &[&str]) -> String {
    // podman refuses a runroot path of over 50 characters.
    let store = tempfile::Builder::new()
        .prefix("p")
        .tempdir_in("/var/tmp")
        .unwrap();
    let podman = || {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(store.path().join("r"))
            .arg("--runroot")
            .arg(store.path().join("rr"));
        c
    };
    let loaded = run(podman().arg("load").arg("-i").arg(archive));
    let id = loaded
        .lines()
        .find_map(|l| {
            l.strip_prefix("Loaded image: ")
                .or(l.strip_prefix("Loaded image(s): "))
        })
        .unwrap_or_else(|| panic!("podman load said {loaded:?}"))
        .trim()
        .to_string();
    let out = run(podman()
        .args(["run", "--rm", "--network=none", &id])
        .args(cmd));
    let _ = podman().args(["rmi", "-a", "-f"]).output();
    out
}
