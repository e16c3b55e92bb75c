//! End to end against the local registry: registry transfers in one pass.
//!
//! A base image a RUN needs is unpacked while it downloads, and its blob is
//! kept (a re-push sends nothing new); a push compresses the layers built
//! here straight into their uploads, remembers them, and a second push
//! sends nothing; a build killed while its base streams in leaves no layer
//! directory a later build would trust.
//!
//! Needs the `.ci/test.sh` environment (local registry with the busybox
//! and debian bases), so every test is ignored by default.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Scratch, nanos, registry, run, strata_cmd, unique};

fn context(dir: &Path, dockerfile: &str) -> PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    ctx
}

/// `strata build --progress plain ARGS CTX`; its stderr (the progress).
fn build(root: &Path, ctx: &Path, args: &[&str]) -> String {
    let mut c = strata_cmd(root, &["build", "--progress", "plain"]);
    c.args(args).arg(ctx).stdin(Stdio::null());
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{c:?}:\n{err}");
    err
}

/// `strata push SRC DEST`; its summary line (stderr).
fn push(root: &Path, src: &str, dest: &str) -> String {
    let out = strata_cmd(root, &["push", src, dest])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "push {src} {dest}:\n{err}");
    err
}

/// Names of the entries of `dir` (empty if it does not exist).
fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The layer digests of a registry image, from its manifest.
fn remote_layers(reference: &str) -> Vec<String> {
    let out = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]));
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    m["layers"]
        .as_array()
        .expect("an image manifest")
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

#[test]
#[ignore = "needs the local registry (CI runs it with --include-ignored)"]
fn a_base_a_run_needs_is_unpacked_while_downloading_and_its_blob_kept() {
    let tmp = Scratch::new("xfer-base");
    let root = tmp.0.join("root");
    let base = format!("{}/library/busybox:latest", registry());
    let ctx = context(
        &tmp.0,
        &format!("FROM {base}\nRUN echo streamed > /proof && ls /bin | wc -l > /count\n"),
    );
    let name = format!("{}/strata-xfer/base-{}:1", registry(), unique());
    let log = build(&root, &ctx, &["-t", &name]);
    let base_layers = remote_layers(&base);
    assert_eq!(base_layers.len(), 1, "busybox has one layer");
    let layer = base_layers[0].trim_start_matches("sha256:").to_string();
    assert!(
        log.contains(&format!("{}: unpacked while downloading", &layer[..12])),
        "the base layer was not unpacked in the same pass as its download:\n{log}"
    );
    // One pass kept both: the compressed blob (for a re-push) and the
    // unpacked directory, and no temp directory is left.
    assert!(names(&root.join("blobs/sha256")).contains(&layer));
    let snaps = names(&root.join("snapshots"));
    assert!(snaps.iter().any(|n| n.starts_with("layer-")), "{snaps:?}");
    assert!(
        !snaps.iter().any(|n| n.starts_with(".tmp-")),
        "a temp dir is left: {snaps:?}"
    );
    // The first push sends the RUN layer (compressed while uploading) and
    // the base blob as kept; a second push of the same image sends nothing.
    let first = push(&root, &name, &name);
    assert!(first.contains("(1 compressed while uploading)"), "{first}");
    let again = push(&root, &name, &name);
    assert!(again.contains(": 0 blob(s) uploaded"), "{again}");
    // What went up is whole: a fresh store pulls it (every digest checked)
    // and a build on it reads the RUN's file.
    let root2 = tmp.0.join("root2");
    let ctx2 = tmp.0.join("ctx2");
    std::fs::create_dir_all(&ctx2).unwrap();
    std::fs::write(
        ctx2.join("Dockerfile"),
        format!("FROM {name}\nRUN test \"$(cat /proof)\" = streamed && test -s /count\n"),
    )
    .unwrap();
    build(&root2, &ctx2, &[]);
}

#[test]
#[ignore = "needs the local registry (CI runs it with --include-ignored)"]
fn a_multi_layer_push_compresses_while_uploading_and_a_second_push_skips_everything() {
    let tmp = Scratch::new("xfer-push");
    let root = tmp.0.join("root");
    let base = format!("{}/library/busybox:latest", registry());
    // Four layers built here; one of 12 MiB of random bytes, so its upload
    // takes several chunks.
    let ctx = context(
        &tmp.0,
        &format!(
            "FROM {base}\n\
             RUN head -c 12582912 /dev/urandom > /big\n\
             RUN seq 1 200000 > /numbers\n\
             RUN echo one > /one\n\
             RUN md5sum /big /numbers /one > /sums\n"
        ),
    );
    let name = format!("strata-xfer/multi-{}:1", unique());
    build(&root, &ctx, &["-t", &name]);
    let dest = format!("{}/strata-xfer/multi-{}:1", registry(), unique());
    let first = push(&root, &name, &dest);
    assert!(
        first.contains(": 6 blob(s) uploaded (4 compressed while uploading)"),
        "config, base layer and four layers compressed into their uploads:\n{first}"
    );
    // The encodings were remembered: the same push again sends nothing,
    // and a push elsewhere re-sends the kept blobs without compressing.
    let again = push(&root, &name, &dest);
    assert!(
        again.contains(
            ": 0 blob(s) uploaded (0 compressed while uploading), 0 mounted, 6 already there"
        ),
        "{again}"
    );
    let other = format!("{}/strata-xfer/multi-other-{}:1", registry(), unique());
    let elsewhere = push(&root, &name, &other);
    assert!(
        elsewhere.contains("(0 compressed while uploading)"),
        "{elsewhere}"
    );
    assert_eq!(remote_layers(&dest), remote_layers(&other));
    // The pushed layers are whole: a fresh store pulls them and checks the
    // files against the sums made at build time.
    let root2 = tmp.0.join("root2");
    let ctx2 = tmp.0.join("ctx2");
    std::fs::create_dir_all(&ctx2).unwrap();
    std::fs::write(
        ctx2.join("Dockerfile"),
        format!("FROM {dest}\nRUN md5sum -c /sums\n"),
    )
    .unwrap();
    build(&root2, &ctx2, &[]);
}

/// When each build is killed after it starts, plus up to 100 ms at
/// random: from before its base download (a debian base: about 30 MB)
/// starts until after it ends. The loop stops at the first build that
/// finishes; no build gets through its download in 250 ms.
const KILL_AFTER_MS: [u64; 8] = [100, 250, 400, 550, 700, 850, 1000, 1200];

#[test]
#[ignore = "needs the local registry (CI runs it with --include-ignored)"]
fn a_build_killed_while_its_base_streams_in_leaves_no_layer_a_later_build_trusts() {
    let tmp = Scratch::new("xfer-kill");
    let root = tmp.0.join("root");
    let base = format!("{}/library/debian:bookworm-slim", registry());
    let ctx = context(
        &tmp.0,
        &format!(
            "FROM {base}\nRUN echo \"files=$(find / -xdev | wc -l) bytes=$(du -sx / | cut -f1)\"\n"
        ),
    );
    let seed = nanos() as u64 | 1;
    let mut rng = seed;
    let mut killed = 0;
    for after in KILL_AFTER_MS {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let wait = Duration::from_millis(after + rng % 100);
        let mut child = strata_cmd(&root, &["build", "--progress", "plain", "--no-cache"])
            .arg(&ctx)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while start.elapsed() < wait && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if child.try_wait().unwrap().is_some() {
            break; // finished: the base layer is in place now
        }
        child.kill().unwrap();
        let _ = child.wait();
        killed += 1;
    }
    assert!(
        killed >= 2,
        "too few builds were killed while running (seed {seed})"
    );
    // Whatever the kills left, a build on top must see the whole base: the
    // same files as a build in a fresh root.
    let after_kills = files_seen(&build(&root, &ctx, &["--no-cache"]));
    let fresh = files_seen(&build(&tmp.0.join("fresh"), &ctx, &["--no-cache"]));
    assert_eq!(
        after_kills, fresh,
        "a layer half-written by a killed build was trusted ({killed} kills, seed {seed})"
    );
}

/// The `files=… bytes=…` line the RUN printed.
fn files_seen(log: &str) -> String {
    log.lines()
        .find_map(|l| l.split_once("files=").map(|(_, rest)| rest.to_string()))
        .unwrap_or_else(|| panic!("no files= line in:\n{log}"))
}
