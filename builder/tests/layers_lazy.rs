//! End to end: layers stay directories until an output needs a blob.
//!
//! A build whose only output is the local store writes no layer blob; a
//! docker-archive carries the layers built here uncompressed (and podman
//! loads it); an OCI archive or a push compresses each layer once and the
//! next export or push reuses it; `SOURCE_DATE_EPOCH` makes two builds in
//! fresh roots give the same image; ADD of a local archive streams its
//! members, so memory stays flat whatever the archive unpacks to; COPY
//! keeps mtimes and hardlink sets as Docker does.
//!
//! Needs the `.ci/test.sh` environment (local registry with the busybox
//! base, podman), so every test is ignored by default.

mod support;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::{
    Scratch, archive_layer_media_types, podman_load_and_run, registry, run, strata_cmd, unique,
};

fn busybox() -> String {
    format!("{}/library/busybox:latest", registry())
}

/// A context whose Dockerfile has RUN, COPY, ADD (a local tar.gz) and
/// WORKDIR steps.
fn context(dir: &Path) -> PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("a.txt"), "from the context\n").unwrap();
    std::fs::write(ctx.join("pack.tar.gz"), small_archive()).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {}\nCOPY a.txt /a.txt\nADD pack.tar.gz /opt/\nWORKDIR /srv/app\nRUN echo hi > /hi && mkdir -p /var/made && touch /var/made/when\n",
            busybox()
        ),
    )
    .unwrap();
    ctx
}

/// A gzip tar holding `inner/x.txt`.
fn small_archive() -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    let data = b"packed\n";
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_600_000_000);
    h.set_cksum();
    tar.append_data(&mut h, "inner/x.txt", &data[..]).unwrap();
    let raw = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap()
}

fn build(root: &Path, ctx: &Path, args: &[&str]) {
    let mut c = strata_cmd(root, &["build", "--progress", "plain"]);
    c.args(args).arg(ctx);
    run(&mut c);
}

/// The blobs of a store: name -> size.
fn blobs(root: &Path) -> BTreeSet<(String, u64)> {
    std::fs::read_dir(root.join("blobs/sha256"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| {
                    let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                    (e.file_name().to_string_lossy().into_owned(), size)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// A build with only the local-store output writes no layer blob: after a
/// pull of the base, the only new blobs are the image's config and
/// manifest. Its layers are directories under `snapshots/`, and the store
/// verifies clean.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn a_build_to_the_local_store_writes_no_layer_blob() {
    let tmp = Scratch::new("noblob");
    let ctx = context(&tmp.0);
    let root = tmp.0.join("root");
    run(&mut strata_cmd(&root, &["pull", &busybox()]));
    let before = blobs(&root);
    let md = tmp.0.join("md.json");
    build(
        &root,
        &ctx,
        &["-t", "noblob:1", "--metadata-file", md.to_str().unwrap()],
    );
    let md = read_json(&md);
    let allowed: BTreeSet<String> = ["containerimage.digest", "containerimage.config.digest"]
        .iter()
        .map(|k| {
            md[*k]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:")
                .to_string()
        })
        .collect();
    let after = blobs(&root);
    let new: Vec<&(String, u64)> = after.difference(&before).collect();
    for (name, size) in &new {
        assert!(
            allowed.contains(name),
            "a blob of {size} bytes was written during the build: {name}"
        );
    }
    let layer_dirs = std::fs::read_dir(root.join("snapshots"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("layer-"))
        .count();
    // busybox's layer, COPY, ADD, WORKDIR, RUN.
    assert!(layer_dirs >= 5, "{layer_dirs} layer directories");
    let verify = run(&mut strata_cmd(&root, &["store", "verify"]));
    assert!(!verify.contains("problem"), "{verify}");
}

/// `-o type=docker` carries the layers built here as plain tars, as
/// `docker save` does, and podman loads and runs the archive; with
/// `compression=gzip` they are gzip.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn docker_output_is_uncompressed_by_default_and_loads() {
    let tmp = Scratch::new("dockerplain");
    let ctx = context(&tmp.0);
    let root = tmp.0.join("root");
    let archive = tmp.0.join("img.tar");
    build(
        &root,
        &ctx,
        &["-o", &format!("type=docker,dest={}", archive.display())],
    );
    let types = archive_layer_media_types(&archive);
    assert_eq!(types.len(), 5, "{types:?}");
    // The base layer is as pulled; the four built here are plain tars.
    for t in &types[1..] {
        assert_eq!(
            t, "application/vnd.docker.image.rootfs.diff.tar",
            "{types:?}"
        );
    }
    podman_check(&archive);
    let gz = tmp.0.join("gz.tar");
    build(
        &root,
        &ctx,
        &[
            "-o",
            &format!("type=docker,dest={},compression=gzip", gz.display()),
        ],
    );
    for t in archive_layer_media_types(&gz) {
        assert!(t.ends_with("gzip"), "{t}");
    }
}

/// An OCI archive compresses each layer once: a second export of the same
/// (cached) build writes no blob and gives the same archive bytes.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn oci_export_compresses_once_and_reuses() {
    let tmp = Scratch::new("ocionce");
    let ctx = context(&tmp.0);
    let root = tmp.0.join("root");
    let (a, b) = (tmp.0.join("a.tar"), tmp.0.join("b.tar"));
    build(
        &root,
        &ctx,
        &["-o", &format!("type=oci,dest={}", a.display())],
    );
    for t in archive_layer_media_types(&a) {
        assert!(t.ends_with("tar+gzip"), "{t}");
    }
    let before = blobs(&root);
    build(
        &root,
        &ctx,
        &["-o", &format!("type=oci,dest={}", b.display())],
    );
    assert_eq!(blobs(&root), before, "the second export wrote blobs");
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

/// A push compresses each layer once: a second push of the image writes no
/// blob into the store and gives the same digest.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn push_compresses_once_and_reuses() {
    let tmp = Scratch::new("pushonce");
    let ctx = context(&tmp.0);
    let root = tmp.0.join("root");
    let dest = format!("{}/strata-test/lazy-push-{}:v1", registry(), unique());
    build(&root, &ctx, &["-t", "pushonce:1"]);
    let first = run(&mut strata_cmd(&root, &["push", "-q", "pushonce:1", &dest]));
    let before = blobs(&root);
    let second = run(&mut strata_cmd(&root, &["push", "-q", "pushonce:1", &dest]));
    assert_eq!(first, second);
    assert_eq!(blobs(&root), before, "the second push wrote blobs");
    let raw = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{dest}"),
    ]));
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    for l in m["layers"].as_array().unwrap() {
        assert!(l["mediaType"].as_str().unwrap().ends_with("gzip"), "{raw}");
    }
}

/// With `--build-arg SOURCE_DATE_EPOCH`, and with the environment
/// variable, two builds into two fresh roots give the same image id and
/// manifest digest, though every file the steps write has a new mtime.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn source_date_epoch_makes_builds_in_fresh_roots_identical() {
    let tmp = Scratch::new("sde");
    let ctx = context(&tmp.0);
    let ids = |tag: &str, env: bool| -> (String, String) {
        let root = tmp.0.join(format!("root-{tag}"));
        let md = tmp.0.join(format!("md-{tag}.json"));
        let mut c = strata_cmd(&root, &["build", "--progress", "plain"]);
        if env {
            c.env("SOURCE_DATE_EPOCH", "1700000000");
        } else {
            c.env_remove("SOURCE_DATE_EPOCH")
                .args(["--build-arg", "SOURCE_DATE_EPOCH=1700000000"]);
        }
        c.args(["--metadata-file", md.to_str().unwrap()]).arg(&ctx);
        run(&mut c);
        let md = read_json(&md);
        (
            md["containerimage.config.digest"].as_str().unwrap().into(),
            md["containerimage.digest"].as_str().unwrap().into(),
        )
    };
    let config = |tag: &str, id: &str| -> String {
        let p = tmp
            .0
            .join(format!("root-{tag}/blobs/sha256"))
            .join(id.trim_start_matches("sha256:"));
        std::fs::read_to_string(p).unwrap_or_default()
    };
    let a = ids("a", false);
    // A second apart at least, so wall-clock mtimes would differ.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = ids("b", false);
    assert_eq!(
        a,
        b,
        "--build-arg SOURCE_DATE_EPOCH; configs:\n{}\n{}",
        config("a", &a.0),
        config("b", &b.0)
    );
    let c = ids("c", true);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let d = ids("d", true);
    assert_eq!(c, d, "SOURCE_DATE_EPOCH in the environment");
}

/// ADD of a 2 MB gzip that unpacks to 2 GiB keeps strata's peak RSS (its
/// own and its children's, from wait4) under 100 MiB.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn add_of_an_archive_bomb_stays_under_100_mib() {
    let tmp = Scratch::new("bomb");
    let ctx = tmp.0.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    write_bomb(&ctx.join("bomb.tar.gz"), 2 << 30);
    let size = std::fs::metadata(ctx.join("bomb.tar.gz")).unwrap().len();
    assert!(size < 4 << 20, "the bomb is {size} bytes");
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nADD bomb.tar.gz /\n").unwrap();
    let root = tmp.0.join("root");
    let mut c = strata_cmd(&root, &["build", "--progress", "plain", "-t", "bomb:1"]);
    c.arg(&ctx).stdin(Stdio::null()).stdout(Stdio::null());
    let (ok, maxrss_kib) = run_measured(c);
    assert!(ok, "the build failed");
    eprintln!("ADD of a 2 GiB bomb: peak RSS {maxrss_kib} KiB");
    assert!(
        maxrss_kib < 100 * 1024,
        "peak RSS {maxrss_kib} KiB (limit 100 MiB)"
    );
    // The unpacked member is there, whole.
    let dirs: Vec<PathBuf> = std::fs::read_dir(root.join("snapshots"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("zeros").is_file())
        .collect();
    assert_eq!(dirs.len(), 1);
    assert_eq!(
        std::fs::metadata(dirs[0].join("zeros")).unwrap().len(),
        2 << 30
    );
}

/// ADD of an archive whose PAX header claims 1 GiB (a few MB of gzip) is
/// refused at that header, naming the file, with strata's peak RSS under
/// 100 MiB: the tar reader would otherwise hold the whole header in memory.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn add_of_an_archive_with_a_huge_pax_header_is_refused_in_bounded_memory() {
    let tmp = Scratch::new("paxbomb");
    let ctx = tmp.0.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let len: u64 = 1 << 30;
    let f = std::fs::File::create(ctx.join("pax.tar.gz")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_path("PaxHeaders/x").unwrap();
    h.set_size(len);
    h.set_mode(0o644);
    h.set_cksum();
    gz.write_all(h.as_bytes()).unwrap();
    std::io::copy(
        &mut std::io::Read::take(std::io::repeat(b'a'), len),
        &mut gz,
    )
    .unwrap();
    gz.write_all(&[0u8; 1024]).unwrap();
    gz.finish().unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nADD pax.tar.gz /\n").unwrap();
    let root = tmp.0.join("root");
    let mut c = strata_cmd(&root, &["build", "--progress", "plain"]);
    let err_file = tmp.0.join("stderr");
    c.arg(&ctx)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_file).unwrap());
    let (ok, maxrss_kib) = run_measured(c);
    let err = std::fs::read_to_string(&err_file).unwrap();
    assert!(!ok, "the build succeeded:\n{err}");
    assert!(
        maxrss_kib < 100 * 1024,
        "peak RSS {maxrss_kib} KiB (limit 100 MiB)"
    );
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line:\n{err}"));
    assert!(line.contains("pax.tar.gz"), "{line}");
    assert!(
        line.contains("refused tar member: a PAX extended header of 1073741824 bytes (at most 1048576 are accepted)"),
        "{line}"
    );
}

/// ADD unpacks gzip, bzip2 and xz archives by content, members with their
/// modes, into the destination directory.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn add_streams_every_codec_into_the_layer() {
    let tmp = Scratch::new("addcodec");
    let ctx = tmp.0.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(6);
    h.set_mode(0o751);
    h.set_cksum();
    tar.append_data(&mut h, "d/run.sh", &b"hello\n"[..])
        .unwrap();
    let raw = tar.into_inner().unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(&raw).unwrap();
    std::fs::write(ctx.join("a.tar.bz2"), bz.finish().unwrap()).unwrap();
    let mut xz = Vec::new();
    lzma_rs::xz_compress(&mut std::io::Cursor::new(&raw), &mut xz).unwrap();
    std::fs::write(ctx.join("b.tar.xz"), xz).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    std::fs::write(ctx.join("c.tgz"), gz.finish().unwrap()).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nADD a.tar.bz2 /bz/\nADD b.tar.xz /xz/\nADD c.tgz /gz/\n",
    )
    .unwrap();
    let root = tmp.0.join("root");
    let out = tmp.0.join("out");
    build(
        &root,
        &ctx,
        &["-o", &format!("type=local,dest={}", out.display())],
    );
    use std::os::unix::fs::PermissionsExt as _;
    for d in ["bz", "xz", "gz"] {
        let f = out.join(d).join("d/run.sh");
        assert_eq!(std::fs::read(&f).unwrap(), b"hello\n", "{d}");
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o751, "{d}");
    }
}

/// A gzip'd tar of one file of `len` zero bytes, written streaming.
fn write_bomb(path: &Path, len: u64) {
    let f = std::fs::File::create(path).unwrap();
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::best());
    let mut tar = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_size(len);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(
        &mut h,
        "zeros",
        std::io::Read::take(std::io::repeat(0), len),
    )
    .unwrap();
    tar.into_inner().unwrap().finish().unwrap();
}

/// Runs `c` to the end; whether it succeeded and its peak RSS in KiB
/// (its own or any waited-for descendant's, as wait4 reports it).
fn run_measured(mut c: Command) -> (bool, i64) {
    let child = c.spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet waited for; the pointers are valid.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid, "wait4");
    drop(child);
    (
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        ru.ru_maxrss,
    )
}

/// Loads an archive into a throw-away podman store and checks the files
/// every step made.
fn podman_check(archive: &Path) {
    let out = podman_load_and_run(
        archive,
        &[
            "sh",
            "-c",
            "cat /a.txt /hi /opt/inner/x.txt && test -d /srv/app && pwd",
        ],
    );
    assert_eq!(out, "from the context\nhi\npacked\n/srv/app\n");
}

/// COPY keeps the source's mtimes (Docker's rule) and keeps files that are
/// hardlinks of each other in the source as one hardlink set.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn copy_keeps_mtimes_and_hardlinks() {
    let tmp = Scratch::new("copymeta");
    let ctx = tmp.0.join("ctx");
    std::fs::create_dir_all(ctx.join("d")).unwrap();
    std::fs::write(ctx.join("d/a"), "same inode\n").unwrap();
    std::fs::hard_link(ctx.join("d/a"), ctx.join("d/b")).unwrap();
    std::fs::write(ctx.join("d/old"), "old\n").unwrap();
    let t = filetime::FileTime::from_unix_time(1_500_000_000, 0);
    filetime::set_file_mtime(ctx.join("d/old"), t).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY d /d\n").unwrap();
    let root = tmp.0.join("root");
    let archive = tmp.0.join("img.tar");
    build(
        &root,
        &ctx,
        &["-o", &format!("type=docker,dest={}", archive.display())],
    );
    let out = tmp.0.join("x");
    std::fs::create_dir_all(&out).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&out));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let layer = out.join(manifest[0]["Layers"][0].as_str().unwrap());
    let mut tar = tar::Archive::new(std::fs::File::open(&layer).unwrap());
    let mut seen = std::collections::BTreeMap::new();
    for e in tar.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.display().to_string())
            .unwrap_or_default();
        seen.insert(
            e.path().unwrap().display().to_string(),
            (h.entry_type(), h.mtime().unwrap(), link),
        );
    }
    assert_eq!(seen["d/old"].1, 1_500_000_000, "{seen:?}");
    let (a, b) = (&seen["d/a"], &seen["d/b"]);
    assert!(a.0.is_file(), "{seen:?}");
    assert!(b.0.is_hard_link() && b.2 == "d/a", "{seen:?}");
}
