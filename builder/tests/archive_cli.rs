//! The image verbs end to end with the real `strata` binary: load the peers'
//! busybox/debian archives and layouts, save them and check the output with
//! independent tools (skopeo, podman, umoci), import a rootfs, and prune /
//! du / store verify. Tests that need those tools or files are ignored by
//! default; CI runs them with `--include-ignored` as the unprivileged user
//! `builder`, and a missing tool or file fails them with a clear message.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

fn peers_images() -> PathBuf {
    std::env::var_os("STRATA_PEERS_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/peers-images"))
}

fn peer_file(rel: &str) -> PathBuf {
    let p = peers_images().join(rel);
    assert!(
        p.exists(),
        "{} is missing: run .ci/base-images.sh (the .ci/test.sh setup) first",
        p.display()
    );
    p
}

/// Fails the test (never skips) when a tool the check relies on is absent.
fn need_tool(name: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed or not on PATH; .ci/test.sh installs it (this test must not pass without it)"
    );
}

/// A scratch directory under the test temp dir, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!(
            "strata-archive-cli-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p).expect("create scratch dir");
        Scratch(p)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // podman and umoci leave read-only dirs; make them removable first.
        let _ = Command::new("chmod")
            .args(["-R", "u+rwX"])
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn strata(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("run strata")
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run(cmd: &mut Command, what: &str) -> String {
    ok(
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}")),
        what,
    )
}

/// `strata images --digests --no-trunc` rows as (name:tag, manifest digest, image id).
fn images(root: &Path) -> Vec<(String, String, String)> {
    let out = ok(
        strata(root, &["images", "--digests", "--no-trunc"]),
        "strata images",
    );
    out.lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            (
                format!("{}:{}", c[0], c[1]),
                c[2].to_string(),
                c[3].to_string(),
            )
        })
        .collect()
}

#[test]
fn rootfs_import_tag_rmi_prune_du_verify() {
    let s = Scratch::new("import");
    let root = s.path("root");
    let rootfs = s.path("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).expect("mkdir");
    std::fs::write(rootfs.join("etc/os-release"), "ID=test\n").expect("write");
    let tarball = s.path("rootfs.tar");
    run(
        Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tarball)
            .arg("."),
        "tar",
    );
    let id = ok(
        strata(
            &root,
            &["import", tarball.to_str().expect("utf8"), "imported:v1"],
        ),
        "strata import",
    );
    let id = id.trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let rows = images(&root);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "imported:v1");
    assert_eq!(rows[0].2, id);

    // tag by short ID, then remove one name: the other stays.
    ok(
        strata(&root, &["tag", &id[7..19], "imported:v2"]),
        "strata tag",
    );
    assert_eq!(images(&root).len(), 2);
    let out = ok(strata(&root, &["rmi", "imported:v1"]), "strata rmi");
    assert!(out.contains("Untagged: imported:v1"), "{out}");
    assert_eq!(images(&root).len(), 1);
    // Removing a name that is not there fails.
    assert!(!strata(&root, &["rmi", "imported:v1"]).status.success());

    // Nothing is garbage while a name holds the image.
    ok(strata(&root, &["store", "verify"]), "store verify");
    let out = ok(strata(&root, &["prune"]), "prune");
    assert!(out.contains("Deleted 0 blobs"), "{out}");
    let du = ok(strata(&root, &["du", "--json"]), "du");
    let du: serde_json::Value = serde_json::from_str(&du).expect("du json");
    assert_eq!(du["layers"]["count"], 1);
    assert_eq!(du["configs"]["count"], 1);
    assert_eq!(du["manifests"]["count"], 1);

    // Without a name, prune removes manifest, config and layer.
    ok(strata(&root, &["rmi", "imported:v2"]), "rmi");
    let out = ok(strata(&root, &["prune"]), "prune");
    assert!(out.contains("Deleted 3 blobs"), "{out}");
    let du: serde_json::Value =
        serde_json::from_str(&ok(strata(&root, &["du", "--json"]), "du")).expect("json");
    assert_eq!(du["unreferenced_blobs"]["count"], 0);
    assert_eq!(du["layers"]["count"], 0);

    // A corrupt blob makes verify exit 1 and name the blob.
    let id2 = ok(
        strata(
            &root,
            &["import", tarball.to_str().expect("utf8"), "again:1"],
        ),
        "import",
    );
    let cfg_hex = id2.trim().trim_start_matches("sha256:").to_string();
    let blob = root.join("blobs/sha256").join(&cfg_hex);
    let mut perm = std::fs::metadata(&blob).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o644);
    std::fs::set_permissions(&blob, perm).expect("chmod");
    std::fs::write(&blob, b"{}").expect("corrupt");
    let out = strata(&root, &["store", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&cfg_hex));
}

#[test]
#[ignore = "needs the .ci/test.sh environment (tools, registry, base images)"]
fn load_peers_archives_and_layouts() {
    let s = Scratch::new("load");
    let root = s.path("root");
    for f in [
        "busybox-latest.docker.tar",
        "debian-bookworm-slim.docker.tar",
    ] {
        let p = peer_file(f);
        let out = ok(
            strata(&root, &["load", "-i", p.to_str().expect("utf8")]),
            "strata load",
        );
        assert!(out.contains("Loaded image: "), "{out}");
    }
    let rows = images(&root);
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert!(
        names.contains(&"127.0.0.1:5000/library/busybox:latest"),
        "{names:?}"
    );
    assert!(
        names.contains(&"127.0.0.1:5000/library/debian:bookworm-slim"),
        "{names:?}"
    );

    // The OCI layout of the same busybox: unnamed in the layout (ref.name
    // is only "latest"), so it loads by ID.
    let layout = peer_file("oci/busybox");
    let out = ok(
        strata(&root, &["load", "-i", layout.to_str().expect("utf8")]),
        "load layout",
    );
    assert!(out.contains("Loaded image ID: sha256:"), "{out}");
    ok(strata(&root, &["store", "verify"]), "store verify");
}

#[test]
#[ignore = "needs the .ci/test.sh environment (tools, registry, base images)"]
fn save_is_accepted_by_skopeo_and_podman() {
    need_tool("skopeo");
    need_tool("podman");
    let s = Scratch::new("save");
    let root = s.path("root");
    let src = peer_file("busybox-latest.docker.tar");
    ok(
        strata(&root, &["load", "-i", src.to_str().expect("utf8")]),
        "load",
    );
    ok(
        strata(
            &root,
            &[
                "tag",
                "127.0.0.1:5000/library/busybox:latest",
                "strata-test/busybox:saved",
            ],
        ),
        "tag",
    );
    let out = s.path("busybox.tar");
    ok(
        strata(
            &root,
            &[
                "save",
                "-o",
                out.to_str().expect("utf8"),
                "strata-test/busybox:saved",
            ],
        ),
        "strata save",
    );
    let inspect = run(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}", out.display())),
        "skopeo inspect docker-archive",
    );
    let v: serde_json::Value = serde_json::from_str(&inspect).expect("skopeo json");
    assert_eq!(v["Layers"].as_array().map(Vec::len), Some(1), "{inspect}");
    assert_eq!(v["Os"], "linux");

    // podman load as this (unprivileged) user into a throwaway store.
    // podman refuses a runroot path longer than 50 characters.
    let short = Scratch(PathBuf::from(format!(
        "/tmp/strata-rr-{}",
        std::process::id()
    )));
    let (r, rr) = (s.path("podman-root"), short.0.clone());
    let podman = |args: &[&str]| {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(&r)
            .arg("--runroot")
            .arg(&rr)
            .arg("--storage-driver")
            .arg("vfs")
            .args(args)
            .env("XDG_RUNTIME_DIR", s.path("xdg"))
            .env("HOME", s.path("home"));
        c
    };
    std::fs::create_dir_all(s.path("xdg")).expect("mkdir");
    std::fs::create_dir_all(s.path("home")).expect("mkdir");
    let load = run(
        &mut podman(&["load", "-i", out.to_str().expect("utf8")]),
        "podman load",
    );
    assert!(load.contains("strata-test/busybox:saved"), "{load}");
    let listed = run(
        &mut podman(&["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        "podman images",
    );
    assert!(listed.contains("strata-test/busybox:saved"), "{listed}");

    // Round trip: loading our own archive gives the same manifest.
    let root2 = s.path("root2");
    ok(
        strata(&root2, &["load", "-i", out.to_str().expect("utf8")]),
        "load saved",
    );
    let a = images(&root);
    let b = images(&root2);
    let find = |rows: &[(String, String, String)]| {
        rows.iter()
            .find(|r| r.0 == "strata-test/busybox:saved")
            .map(|r| (r.1.clone(), r.2.clone()))
            .expect("image listed")
    };
    assert_eq!(find(&a), find(&b));
}

#[test]
#[ignore = "needs the .ci/test.sh environment (tools, registry, base images)"]
fn oci_layout_export_is_accepted_by_skopeo_and_umoci() {
    need_tool("skopeo");
    need_tool("umoci");
    let s = Scratch::new("oci");
    let root = s.path("root");
    let src = peer_file("debian-bookworm-slim.docker.tar");
    ok(
        strata(&root, &["load", "-i", src.to_str().expect("utf8")]),
        "load",
    );
    let dir = s.path("layout");
    ok(
        strata(
            &root,
            &[
                "save",
                "--format",
                "oci-dir",
                "-o",
                dir.to_str().expect("utf8"),
                "127.0.0.1:5000/library/debian:bookworm-slim",
            ],
        ),
        "save oci-dir",
    );
    let inspect = run(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:bookworm-slim", dir.display())),
        "skopeo inspect oci",
    );
    let v: serde_json::Value = serde_json::from_str(&inspect).expect("json");
    assert_eq!(v["Architecture"], "amd64", "{inspect}");
    let bundle = s.path("bundle");
    run(
        Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:bookworm-slim", dir.display()))
            .arg(&bundle),
        "umoci unpack --rootless",
    );
    assert!(bundle.join("rootfs/etc/debian_version").is_file());

    // The OCI archive form loads back, and skopeo reads it as oci-archive.
    let tar = s.path("debian-oci.tar");
    ok(
        strata(
            &root,
            &[
                "save",
                "--format",
                "oci-archive",
                "-o",
                tar.to_str().expect("utf8"),
                "127.0.0.1:5000/library/debian:bookworm-slim",
            ],
        ),
        "save oci-archive",
    );
    run(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci-archive:{}:bookworm-slim", tar.display())),
        "skopeo inspect oci-archive",
    );
}

/// Reads a whole tar and returns its member names, or an error if it is
/// truncated or malformed.
fn tar_names(path: &Path) -> Result<Vec<String>, String> {
    let out = Command::new("tar")
        .arg("-tf")
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

#[test]
fn sigkill_during_save_never_leaves_a_partial_archive() {
    let s = Scratch::new("killsave");
    let root = s.path("root");
    let rootfs = s.path("rootfs");
    std::fs::create_dir_all(&rootfs).expect("mkdir");
    // Incompressible data, so saving takes long enough to be interrupted.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..24 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(rootfs.join("blob.bin"), &data).expect("write");
    let tarball = s.path("rootfs.tar");
    run(
        Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tarball)
            .arg("."),
        "tar",
    );
    ok(
        strata(&root, &["import", tarball.to_str().expect("utf8"), "big:1"]),
        "import",
    );
    let out = s.path("out/big.tar");
    std::fs::create_dir_all(s.path("out")).expect("mkdir");
    // Time one full save, then kill at random points across that span (and
    // a little past it, so some saves complete).
    let started = std::time::Instant::now();
    ok(
        strata(&root, &["save", "-o", out.to_str().expect("utf8"), "big:1"]),
        "timed save",
    );
    let span = (started.elapsed().as_millis() as u64 * 12 / 10).max(20);
    let mut completed = 0;
    for i in 0..20u64 {
        let _ = std::fs::remove_file(&out);
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--root")
            .arg(&root)
            .args(["save", "-o", out.to_str().expect("utf8"), "big:1"])
            .spawn()
            .expect("spawn strata save");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
        std::thread::sleep(std::time::Duration::from_millis(
            (nanos ^ (i * 7919)) % span,
        ));
        let _ = child.kill();
        let status = child.wait().expect("wait");
        if out.exists() {
            // Whatever is at the destination is a complete archive.
            let names =
                tar_names(&out).unwrap_or_else(|e| panic!("round {i}: partial archive: {e}"));
            assert!(
                names.iter().any(|n| n == "manifest.json"),
                "round {i}: {names:?}"
            );
            completed += 1;
        } else {
            assert!(
                !status.success(),
                "round {i}: save succeeded but wrote nothing"
            );
        }
    }
    // The store is untouched by the kills, and a save still works.
    ok(strata(&root, &["store", "verify"]), "store verify");
    ok(
        strata(&root, &["save", "-o", out.to_str().expect("utf8"), "big:1"]),
        "save after kills",
    );
    assert!(
        tar_names(&out)
            .expect("complete")
            .contains(&"index.json".to_string())
    );
    eprintln!("{completed}/20 saves finished before the kill");
}
