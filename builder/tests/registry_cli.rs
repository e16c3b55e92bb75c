//! `strata pull` and `strata push` end to end, run as whatever user runs the
//! tests (CI: the unprivileged `builder`), against the real local registry
//! started by .ci/registry.sh, checked with skopeo. Ignored by default; CI runs them
//! with `--include-ignored`, and a missing registry or skopeo fails them.

use std::path::Path;
use std::process::{Command, Output};

mod support;
use support::{Scratch, registry, strata_cmd, unique};

fn strata(root: &Path, args: &[&str]) -> Output {
    strata_cmd(root, args)
        .env_remove("STRATA_INSECURE_REGISTRIES")
        .output()
        .expect("run strata")
}

fn ok(root: &Path, args: &[&str]) -> String {
    let out = strata(root, args);
    assert!(
        out.status.success(),
        "strata {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn skopeo_raw(image: &str) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{image}"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run skopeo (is it installed?): {e}"));
    assert!(
        out.status.success(),
        "skopeo inspect {image} failed (is the registry up? bash .ci/registry.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn sha256_hex(data: &[u8]) -> String {
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(data)?;
            c.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
#[ignore = "needs the .ci/test.sh environment (registry on 127.0.0.1:5000)"]
fn pull_both_then_push_to_new_names_gives_byte_identical_manifests() {
    let reg = registry();
    let root = Scratch::new("pullpush");
    let run = unique();
    for (name, tag) in [("busybox", "latest"), ("debian", "bookworm-slim")] {
        let src = format!("{reg}/library/{name}:{tag}");
        let original = skopeo_raw(&src);
        let out = ok(&root.0, &["pull", &src]);
        let want = format!("Digest: sha256:{}", sha256_hex(&original));
        assert!(out.contains(&want), "pull printed {out:?}, wanted {want}");
        // The manifest blob in the store is the registry's bytes.
        let stored = std::fs::read(
            root.0
                .join("blobs/sha256")
                .join(want.trim_start_matches("Digest: sha256:")),
        )
        .expect("manifest blob in the store");
        assert_eq!(stored, original);

        let dest = format!("{reg}/strata-test/{run}/{name}:copy");
        let out = ok(&root.0, &["push", &src, &dest]);
        assert!(out.contains(&want), "push printed {out:?}");
        assert_eq!(
            skopeo_raw(&dest),
            original,
            "{name}: pushed manifest differs"
        );
    }
    // Pulling again downloads nothing and still succeeds.
    let again = strata(&root.0, &["pull", &format!("{reg}/library/busybox:latest")]);
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("0 layer(s) downloaded"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
#[ignore = "needs the .ci/test.sh environment (registry on 127.0.0.1:5000)"]
fn pull_of_a_missing_tag_fails_naming_it_and_tags_nothing() {
    let reg = registry();
    let root = Scratch::new("missing");
    let r = format!("{reg}/library/busybox:no-such-tag-{}", unique());
    let out = strata(&root.0, &["pull", &r]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not found") && err.contains("no-such-tag"),
        "{err}"
    );
    let tags = std::fs::read_dir(root.0.join("index/tags"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(tags, 0);
}

/// Needs no registry: the image is looked up locally first.
#[test]
fn push_of_an_unknown_local_image_says_to_pull_or_build_it() {
    let reg = registry();
    let root = Scratch::new("unknown");
    let out = strata(
        &root.0,
        &["push", &format!("{reg}/strata-test/never-pulled:v1")],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pull or build it first"), "{err}");
}

#[test]
#[ignore = "needs the .ci/test.sh environment (registry on 127.0.0.1:5000)"]
fn two_pulls_into_one_root_at_once_both_succeed() {
    let reg = registry();
    let root = Scratch::new("concurrent");
    let img = format!("{reg}/library/debian:bookworm-slim");
    let want = format!("sha256:{}", sha256_hex(&skopeo_raw(&img)));
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--root")
            .arg(&root.0)
            .args(["pull", "-q", &img])
            .env_remove("STRATA_REGISTRY_MIRROR")
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (
            a.join().expect("thread").expect("run strata"),
            b.join().expect("thread").expect("run strata"),
        )
    });
    for out in [a, b] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want);
    }
    // Every blob is whole.
    for e in std::fs::read_dir(root.0.join("blobs/sha256")).expect("blobs") {
        let e = e.expect("entry");
        let data = std::fs::read(e.path()).expect("read");
        assert_eq!(
            sha256_hex(&data),
            e.file_name().to_string_lossy(),
            "blob does not hash to its name"
        );
    }
}
