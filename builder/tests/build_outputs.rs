//! End to end: `-o …,compression=` and `dest=-`. Each output is checked with
//! independent tools (skopeo for media types, podman to load and run it),
//! and re-encoding must keep the image ID (the config is unchanged).
//!
//! Needs the `.ci/test.sh` environment (local registry with the busybox base,
//! skopeo, podman), so every test is ignored by default.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::{Scratch, archive_layer_media_types, podman_load_and_run, registry, run, strata_cmd};

fn context(dir: &Path) -> PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("a.txt"), "from the context\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {}/library/busybox:latest\nCOPY a.txt /a.txt\nRUN echo hi > /hi\n",
            registry()
        ),
    )
    .unwrap();
    ctx
}

/// Runs `strata build` with `args`, stdout into `stdout_file` (or null).
fn build(root: &Path, ctx: &Path, args: &[&str], stdout_file: Option<&Path>) {
    let mut c = strata_cmd(root, &["build", "--progress", "plain"]);
    c.args(args).arg(ctx).stdin(Stdio::null());
    c.stdout(match stdout_file {
        Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
        None => Stdio::null(),
    });
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "strata build {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn layer_media_types(transport: &str) -> Vec<String> {
    let raw = run(Command::new("skopeo").args(["inspect", "--raw", transport]));
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    m["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no layers in {raw}"))
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap().to_string())
        .collect()
}

/// Loads an archive into a throw-away podman store and reads /a.txt and
/// /hi from a container of it.
fn podman_runs(archive: &Path) {
    let out = podman_load_and_run(archive, &["cat", "/a.txt", "/hi"]);
    assert_eq!(out, "from the context\nhi\n");
}

/// zstd into an OCI archive: OCI zstd media types, same image ID as the
/// default gzip build, and podman runs it.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn oci_output_with_zstd_layers_keeps_the_image_id() {
    let tmp = Scratch::new("zstd");
    let ctx = context(&tmp.0);
    let root = tmp.0.join("root");
    let (iid_gzip, iid_zstd) = (tmp.0.join("iid-gzip"), tmp.0.join("iid-zstd"));
    build(
        &root,
        &ctx,
        &["--iidfile", iid_gzip.to_str().unwrap()],
        None,
    );
    let archive = tmp.0.join("zstd.tar");
    build(
        &root,
        &ctx,
        &[
            "--iidfile",
            iid_zstd.to_str().unwrap(),
            "-o",
            &format!("type=oci,dest={},compression=zstd", archive.display()),
        ],
        None,
    );
    assert_eq!(
        std::fs::read(&iid_gzip).unwrap(),
        std::fs::read(&iid_zstd).unwrap()
    );
    let types = layer_media_types(&format!("oci-archive:{}", archive.display()));
    assert_eq!(types.len(), 3, "{types:?}");
    assert!(
        types
            .iter()
            .all(|t| t == "application/vnd.oci.image.layer.v1.tar+zstd"),
        "{types:?}"
    );
    podman_runs(&archive);
}

/// `dest=-` writes the docker-archive to standard output (uncompressed
/// layers here), and `-q` then keeps the image ID off it.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn docker_archive_to_stdout_uncompressed() {
    let tmp = Scratch::new("stdout");
    let ctx = context(&tmp.0);
    let archive = tmp.0.join("stdout.tar");
    build(
        &tmp.0.join("root"),
        &ctx,
        &["-q", "-o", "type=docker,dest=-,compression=uncompressed"],
        Some(&archive),
    );
    run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("docker-archive:{}", archive.display())));
    let types = archive_layer_media_types(&archive);
    assert_eq!(types.len(), 3, "{types:?}");
    assert!(
        types
            .iter()
            .all(|t| t == "application/vnd.docker.image.rootfs.diff.tar"),
        "{types:?}"
    );
    podman_runs(&archive);
}

/// `type=tar,dest=-`: the root filesystem as a tar on standard output.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn rootfs_tar_to_stdout() {
    let tmp = Scratch::new("rootfs");
    let ctx = context(&tmp.0);
    let tar = tmp.0.join("rootfs.tar");
    build(
        &tmp.0.join("root"),
        &ctx,
        &["-o", "type=tar,dest=-"],
        Some(&tar),
    );
    let list = run(Command::new("tar").arg("-tf").arg(&tar));
    for want in ["a.txt", "hi", "bin/busybox"] {
        assert!(
            list.lines().any(|l| l.trim_start_matches("./") == want),
            "{want} missing from the tar: {list}"
        );
    }
    let body = run(Command::new("tar").arg("-xOf").arg(&tar).arg("a.txt"));
    assert_eq!(body, "from the context\n");
}
