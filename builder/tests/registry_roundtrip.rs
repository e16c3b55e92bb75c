//! The round trip with the real binary, as the unprivileged test user:
//! `strata pull`, `strata save`, `strata load` into a fresh root, `strata
//! push` to a new name — the registry then serves the same manifest bytes
//! (and therefore the same layer digests, which it verified on upload).
//! Needs the local registry and skopeo (CI runs it with `--include-ignored`).

use std::path::Path;
use std::process::{Command, Output};

mod support;
use support::{Scratch, registry, strata_cmd, unique};

fn ok(root: &Path, args: &[&str]) -> Output {
    let out = strata_cmd(root, args).output().expect("run strata");
    assert!(
        out.status.success(),
        "strata {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
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

#[test]
#[ignore = "needs the .ci/test.sh environment (registry on 127.0.0.1:5000)"]
fn pull_save_load_push_round_trip_is_byte_identical() {
    let reg = registry();
    let run = unique();
    for (name, tag) in [("busybox", "latest"), ("debian", "bookworm-slim")] {
        let src = format!("{reg}/library/{name}:{tag}");
        let original = skopeo_raw(&src);
        let first = Scratch::new("first");
        ok(&first.0, &["pull", &src]);
        let archive = first.0.join(format!("{name}.tar"));
        let archive_s = archive.to_string_lossy().into_owned();
        ok(&first.0, &["save", "-o", &archive_s, &src]);

        let second = Scratch::new("second");
        ok(&second.0, &["load", "-i", &archive_s]);
        // Named on another registry, so the push cannot mount from
        // library/<name>: every blob is uploaded from the loaded store.
        let alias = format!("example.invalid/roundtrip/{name}:x");
        ok(&second.0, &["tag", &src, &alias]);
        let dest = format!("{reg}/strata-test/{run}/{name}:roundtrip");
        let out = ok(&second.0, &["push", &alias, &dest]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(" 0 mounted"), "{stderr}");
        assert_eq!(
            skopeo_raw(&dest),
            original,
            "{name}: manifest after pull/save/load/push differs"
        );
        ok(&second.0, &["store", "verify"]);
    }
}
