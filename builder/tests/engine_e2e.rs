//! End to end through the engine, as an unprivileged user with a
//! subordinate id range, against the local registry of `.ci/test.sh`: pull
//! busybox, RUN (write, delete, mkdir, chown), COPY with --chown/--chmod, a
//! WORKDIR that already exists, assemble the image, save it as a
//! docker-archive, and check the result with independent tools (`skopeo
//! inspect`, `podman load` + `podman run`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use builder::engine::{
    CopyRequest, Engine, EngineOptions, ImageRequest, LayerResult, RunInputs, StepFailed,
};
use cache::reference::Reference;
use cache::store::Store;
use cache::transport::docker_archive::{SaveItem, save};
use frontend::{ExecOp, History, ImageConfig, Platform};
use runtime::snapshot::{SnapshotterKind, SnapshotterRequest};

fn registry() -> String {
    std::env::var("STRATA_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into())
}

/// A temp dir on a real file system (overlayfs needs one; `/tmp` may be tmpfs
/// in CI, which is fine too, but TMPDIR is what the CI sets up).
fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir (set TMPDIR to a writable directory)")
}

fn sh(script: &str) -> ExecOp {
    ExecOp {
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: vec![(
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        )],
        proxy_env: vec![],
        cwd: "/".into(),
        user: None,
        mounts: vec![],
        network: None,
        security: None,
        inline_files: vec![],
    }
}

/// Runs a command, failing the test with its output if it fails.
fn check(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The engine's store root and what must be removed from inside the user
/// namespace afterwards (snapshots hold files of subordinate ids).
struct Fixture {
    tmp: tempfile::TempDir,
    engine: Engine,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with(EngineOptions::default())
    }

    fn with(opts: EngineOptions) -> Fixture {
        let tmp = tempdir();
        let store = Arc::new(Store::open(tmp.path().join("root")).expect("open store"));
        let engine = Engine::new(store, opts).expect("engine");
        Fixture { tmp, engine }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = runtime::remove_tree_in_userns(
            self.engine.sandbox().mapping(),
            &self.tmp.path().join("root"),
        );
    }
}

/// A rootless podman on a throw-away store. The runtime settings are the
/// ones `peers/setup-host.sh` puts in the CI user's containers.conf, given
/// as flags because CI runs with another HOME: crun refuses this host's
/// hybrid cgroup layout, runc with cgroupfs does not.
fn podman(root: &Path, runroot: &Path) -> Command {
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(root)
        .arg("--runroot")
        .arg(runroot)
        .args([
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ]);
    c
}

#[test]
#[ignore = "needs the .ci/test.sh environment (registry, base images, unprivileged user)"]
fn run_copy_workdir_assemble_then_skopeo_and_podman_agree() {
    let f = Fixture::new();
    let engine = &f.engine;
    assert!(
        engine.sandbox().mapping().is_range(),
        "this test chowns to 1000 and needs a subordinate id range for the user"
    );
    let base = engine
        .base_image(&format!("{}/library/busybox:latest", registry()))
        .expect("base image");
    assert!(!base.stack.is_empty());
    // Lazy: no layer is downloaded until a step needs it, and the name is
    // tagged locally only once the image is complete.
    let busybox = Reference::parse(&base.reference).expect("ref");
    let has_blob =
        |l: &builder::engine::StackLayer| engine.store().blobs().has(&l.descriptor.digest);
    assert!(!base.stack.layers().iter().any(has_blob));
    assert!(
        engine
            .store()
            .resolve_image(&busybox)
            .expect("resolve")
            .is_none()
    );

    // RUN
    let mut lines = Vec::new();
    let run = engine
        .run(
            &base.stack,
            &sh("echo hi > /hello && rm /bin/ls && mkdir -p /a/b && chown 1000:1000 /a/b && echo done"),
            &RunInputs::default(),
            &mut |l| lines.push(l.to_string()),
        )
        .expect("RUN");
    assert_eq!(lines, ["done"], "output is streamed line by line");
    assert!(!run.empty);
    assert!(base.stack.layers().iter().all(has_blob));
    assert!(
        engine
            .store()
            .resolve_image(&busybox)
            .expect("resolve")
            .is_some(),
        "the base is tagged once its layers are in the store"
    );
    let dir = run.snapshot_dir.clone().expect("snapshot dir");
    assert!(dir.ends_with("layer") && dir.is_dir(), "{}", dir.display());

    // COPY --chown=1000:1000 --chmod=0640 copied /copied
    let ctx = f.path("ctx");
    std::fs::create_dir_all(&ctx).expect("mkdir ctx");
    std::fs::write(ctx.join("copied"), "from the context\n").expect("write");
    let copy = engine
        .copy(
            &run.stack,
            &CopyRequest::new(vec![ctx.join("copied")], "/copied")
                .chown(1000, 1000)
                .chmod(0o640),
        )
        .expect("COPY");
    assert!(!copy.empty);

    // WORKDIR /a/b exists already: no layer.
    let workdir = engine.mkdir(&copy.stack, "/a/b", (0, 0)).expect("WORKDIR");
    assert!(workdir.empty, "an existing WORKDIR adds no layer");
    // A later RUN sees all of it through the committed snapshots.
    let mut seen = Vec::new();
    let probe = engine
        .run(
            &workdir.stack,
            &sh("cat /hello /copied; test ! -e /bin/ls && echo ls-gone"),
            &RunInputs::default(),
            &mut |l| seen.push(l.to_string()),
        )
        .expect("probe RUN");
    assert_eq!(seen, ["hi", "from the context", "ls-gone"]);
    assert!(probe.empty, "a RUN that writes nothing adds no layer");

    // The image.
    let base_json: serde_json::Value = serde_json::from_slice(&base.config).expect("base config");
    let mut config: ImageConfig =
        serde_json::from_value(base_json["config"].clone()).expect("base ImageConfig");
    config.working_dir = "/a/b".into();
    config.cmd = vec!["sh".into()];
    let history = [
        History {
            created_by: "RUN /bin/sh -c echo hi > /hello # buildkit".into(),
            comment: "buildkit.dockerfile.v0".into(),
            empty_layer: false,
        },
        History {
            created_by: "COPY --chown=1000:1000 --chmod=0640 copied /copied # buildkit".into(),
            comment: "buildkit.dockerfile.v0".into(),
            empty_layer: false,
        },
        History {
            created_by: "WORKDIR /a/b".into(),
            comment: "buildkit.dockerfile.v0".into(),
            empty_layer: false,
        },
        History {
            created_by: "RUN /bin/sh -c cat /hello # buildkit".into(),
            comment: "buildkit.dockerfile.v0".into(),
            empty_layer: false,
        },
    ];
    let steps: Vec<LayerResult> = vec![run, copy, workdir, probe.clone()];
    let name = "localhost/strata-engine-e2e:latest".to_string();
    let platform = Platform::native();
    let image = engine
        .assemble(&ImageRequest {
            base_config: Some(&base.config),
            config: &config,
            history: &history,
            author: None,
            platform: &platform,
            steps: &steps,
            stack: &probe.stack,
            tags: std::slice::from_ref(&name),
        })
        .expect("assemble");
    assert_eq!(image.layers().len(), base.stack.len() + 2);
    let reference = Reference::parse(&name).expect("ref");
    let tagged = engine
        .store()
        .resolve_image(&reference)
        .expect("resolve")
        .expect("tagged in the store");
    assert_eq!(tagged.id(), image.id());

    // docker-archive → skopeo
    let archive = f.path("image.tar");
    save(
        engine.store(),
        &[SaveItem {
            name: Some(reference),
            image: image.clone(),
        }],
        &archive,
    )
    .expect("save");
    let target = format!("docker-archive:{}", archive.display());
    let inspect: serde_json::Value =
        serde_json::from_str(&check(Command::new("skopeo").args(["inspect", &target])))
            .expect("skopeo inspect JSON");
    assert_eq!(
        inspect["Layers"].as_array().map(Vec::len),
        Some(base.stack.len() + 2)
    );
    let cfg: serde_json::Value = serde_json::from_str(&check(
        Command::new("skopeo").args(["inspect", "--config", &target]),
    ))
    .expect("skopeo config JSON");
    assert_eq!(cfg["config"]["WorkingDir"], "/a/b");
    let hist = cfg["history"].as_array().expect("history");
    let ours = &hist[hist.len() - 4..];
    let empties: Vec<bool> = ours
        .iter()
        .map(|h| h["empty_layer"].as_bool().unwrap_or(false))
        .collect();
    assert_eq!(empties, [false, false, true, true]);
    assert_eq!(
        hist.iter()
            .filter(|h| !h["empty_layer"].as_bool().unwrap_or(false))
            .count(),
        image.layers().len(),
        "non-empty history entries line up with layers"
    );

    // podman load + run
    let (proot, prun) = (f.path("podman-root"), f.path("podman-runroot"));
    check(podman(&proot, &prun).arg("load").arg("-i").arg(&archive));
    let out = check(podman(&proot, &prun).args([
        "run",
        "--rm",
        "--network=none",
        &name,
        "sh",
        "-c",
        "cat /hello; test ! -e /bin/ls && echo ls-gone; stat -c %u:%g /a/b; stat -c %a:%u /copied; cat /copied; pwd",
    ]));
    // podman's storage holds files of subordinate ids; remove it from its
    // own user namespace.
    let _ = podman(&proot, &prun)
        .args(["unshare", "rm", "-rf"])
        .arg(&proot)
        .output();
    assert_eq!(
        out,
        "hi\nls-gone\n1000:1000\n640:1000\nfrom the context\n/a/b\n"
    );
}

#[test]
#[ignore = "needs the .ci/test.sh environment (registry, base images, unprivileged user)"]
fn failing_run_reports_exit_code_and_last_lines() {
    let f = Fixture::new();
    let engine = &f.engine;
    let base = engine
        .base_image(&format!("{}/library/busybox:latest", registry()))
        .expect("base image");
    let mut streamed = Vec::new();
    let err = engine
        .run(
            &base.stack,
            &sh("echo early >&2; sleep 0.2; for i in $(seq 1 15); do echo line$i; done; exit 3"),
            &RunInputs::default(),
            &mut |l| streamed.push(l.to_string()),
        )
        .expect_err("exit 3 must fail the step");
    let failed = err
        .downcast_ref::<StepFailed>()
        .unwrap_or_else(|| panic!("not a StepFailed: {err:#}"));
    assert_eq!(failed.code(), Some(3));
    assert_eq!(streamed.len(), 16, "{streamed:?}");
    assert_eq!(failed.last_lines.len(), 10);
    assert_eq!(streamed[0], "early", "stderr is streamed too");
    assert_eq!(failed.last_lines.first().map(String::as_str), Some("line6"));
    assert_eq!(failed.last_lines.last().map(String::as_str), Some("line15"));
    let text = err.to_string();
    assert!(
        text.contains("exit code: 3") && text.contains("line15"),
        "{text}"
    );
    // Nothing of the failed step stays behind.
    let leftovers: Vec<_> = std::fs::read_dir(f.path("root/snapshots"))
        .expect("snapshots dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Runs `script` on `stack` and returns its output lines; the step must
/// succeed.
fn output_of(engine: &Engine, stack: &builder::engine::LayerStack, script: &str) -> Vec<String> {
    let mut seen = Vec::new();
    engine
        .run(stack, &sh(script), &RunInputs::default(), &mut |l| {
            seen.push(l.to_string())
        })
        .unwrap_or_else(|e| panic!("{script}: {e:#}"));
    seen
}

#[test]
#[ignore = "needs the .ci/test.sh environment (registry, base images, unprivileged user)"]
fn copy_add_and_workdir_follow_docker_rules_on_the_native_snapshotter() {
    let f = Fixture::with(EngineOptions {
        snapshotter: SnapshotterRequest::Force(SnapshotterKind::Native),
        ..EngineOptions::default()
    });
    let engine = &f.engine;
    assert_eq!(engine.snapshotter().0, SnapshotterKind::Native);
    let base = engine
        .base_image(&format!("{}/library/busybox:latest", registry()))
        .expect("base image");
    let prep = engine
        .run(
            &base.stack,
            &sh("mkdir -p /opt/real/d && ln -s /opt/real /linked \
                 && echo staged > /opt/real/d/f && chown -R 1000:1000 /opt/real/d"),
            &RunInputs::default(),
            &mut |_| {},
        )
        .expect("RUN");

    // The context: a tree with a symlink and a hardlink pair, a file, a tar.gz.
    let ctx = f.path("ctx");
    std::fs::create_dir_all(ctx.join("tree/sub")).expect("mkdir");
    std::fs::write(ctx.join("tree/sub/file"), "in sub\n").expect("write");
    std::os::unix::fs::symlink("sub/file", ctx.join("tree/link")).expect("symlink");
    std::fs::write(ctx.join("tree/h1"), "hard\n").expect("write");
    std::fs::hard_link(ctx.join("tree/h1"), ctx.join("tree/h2")).expect("link");
    std::fs::write(ctx.join("f"), "through the symlink\n").expect("write");
    let archive = ctx.join("arch.tar.gz");
    let entries = vec![
        cache::layer::Entry::dir("top").owner(5, 6),
        cache::layer::Entry::file(
            "top/file",
            cache::layer::Content::Bytes(b"from the tar\n".to_vec()),
        )
        .owner(5, 6),
    ];
    cache::layer::write_layer(
        entries,
        &cache::layer::WriteOptions::default(),
        std::fs::File::create(&archive).expect("create archive"),
    )
    .expect("write archive");

    let s1 = engine
        .copy(
            &prep.stack,
            &CopyRequest::new(vec![ctx.join("f")], "/linked/"),
        )
        .expect("COPY through a symlinked directory")
        .stack;
    let s2 = engine
        .copy(&s1, &CopyRequest::new(vec![ctx.join("tree")], "/dst"))
        .expect("COPY a directory")
        .stack;
    let s3 = engine
        .copy(
            &s2,
            &CopyRequest::new(vec![archive.clone()], "/x/").unpack_archives(true),
        )
        .expect("ADD a tar")
        .stack;
    // COPY --from=<that stage> onto the plain base: paths inside it,
    // symlinks resolved inside it, owners kept.
    let other = engine
        .copy(
            &base.stack,
            &CopyRequest::new(vec![PathBuf::from("/linked/d")], "/fromstage")
                .from_stack(prep.stack.clone()),
        )
        .expect("COPY --from");
    assert_eq!(
        output_of(
            engine,
            &other.stack,
            "cat /fromstage/f; stat -c %u:%g /fromstage /fromstage/f; test ! -e /opt && echo clean"
        ),
        ["staged", "1000:1000", "1000:1000", "clean"]
    );
    let wd = engine.mkdir(&s3, "/w/x", (1000, 1000)).expect("WORKDIR");
    assert!(!wd.empty, "a new WORKDIR is a layer");

    let got = output_of(
        engine,
        &wd.stack,
        "readlink /linked; cat /opt/real/f; cat /dst/sub/file; readlink /dst/link; \
         stat -c %h /dst/h1; test ! -e /dst/tree && echo contents-only; \
         cat /x/top/file; stat -c %u:%g /x/top/file; test ! -e /x/arch.tar.gz && echo extracted; \
         stat -c %u:%g:%a /w /w/x",
    );
    assert_eq!(
        got,
        [
            "/opt/real",
            "through the symlink",
            "in sub",
            "sub/file",
            "2",
            "contents-only",
            "from the tar",
            "5:6",
            "extracted",
            "1000:1000:755",
            "1000:1000:755",
        ]
    );
}

#[test]
#[ignore = "needs the .ci/test.sh environment (registry, base images, unprivileged user)"]
fn run_heredoc_script_is_mounted_and_left_out_of_the_layer() {
    let f = Fixture::new();
    let engine = &f.engine;
    let base = engine
        .base_image(&format!("{}/library/busybox:latest", registry()))
        .expect("base image");
    let mut exec = sh("unused");
    exec.argv = vec!["/dev/pipes/EOF".into()];
    exec.inline_files = vec![frontend::InlineFile {
        path: "/dev/pipes/EOF".into(),
        content: "#!/bin/sh\necho from the heredoc > /out\ncat /out\n".into(),
        mode: 0o755,
    }];
    let mut lines = Vec::new();
    let r = engine
        .run(&base.stack, &exec, &RunInputs::default(), &mut |l| {
            lines.push(l.to_string())
        })
        .expect("heredoc RUN");
    assert_eq!(lines, ["from the heredoc"]);
    let seen = output_of(
        engine,
        &r.stack,
        "cat /out; test ! -e /dev/pipes/EOF && echo not-in-layer",
    );
    assert_eq!(seen, ["from the heredoc", "not-in-layer"]);
}

#[test]
#[ignore = "needs the .ci/test.sh environment (registry, base images, unprivileged user)"]
fn two_engines_on_one_root_unpack_each_layer_once() {
    let f = Fixture::new();
    let base = f
        .engine
        .base_image(&format!("{}/library/busybox:latest", registry()))
        .expect("base image");
    let root = f.path("root");
    let results: Vec<Vec<PathBuf>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (root, stack) = (root.clone(), base.stack.clone());
                s.spawn(move || {
                    let store = Arc::new(Store::open(&root).expect("open store"));
                    let engine = Engine::new(store, EngineOptions::default()).expect("engine");
                    engine.lowers(&stack).expect("lowers")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0].len(), base.stack.len());
    let names: Vec<String> = std::fs::read_dir(root.join("snapshots"))
        .expect("snapshots")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(names.len(), base.stack.len(), "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("sha256-")), "{names:?}");
}

#[test]
#[ignore = "needs the .ci/test.sh environment (registry, base images, unprivileged user)"]
fn a_killed_builds_half_made_snapshots_are_removed_by_the_next_engine() {
    let f = Fixture::new();
    let snapshots = f.path("root/snapshots");
    // pid 2147483647 cannot exist (above any pid_max); our own pid is alive.
    let dead = snapshots.join("tmp-unpack-2147483647-0-0");
    let live = snapshots.join(format!("tmp-unpack-{}-0-0", std::process::id()));
    for d in [&dead, &live] {
        std::fs::create_dir_all(d.join("layer/sub")).expect("mkdir");
        std::fs::write(d.join("layer/sub/file"), "x").expect("write");
    }
    let store = Arc::new(Store::open(f.path("root")).expect("open store"));
    let _second = Engine::new(store, EngineOptions::default()).expect("engine");
    assert!(!dead.exists(), "a dead process's temp snapshot is removed");
    assert!(live.exists(), "a live process's temp snapshot is kept");
}

#[test]
#[ignore = "needs the .ci/test.sh environment (registry, base images, unprivileged user)"]
fn a_cancelled_run_stops_quickly_and_leaves_nothing() {
    let f = Fixture::new();
    let engine = &f.engine;
    let base = engine
        .base_image(&format!("{}/library/busybox:latest", registry()))
        .expect("base image");
    let cancel = runtime::sandbox::CancelToken::new();
    let inputs = RunInputs {
        cancel: Some(cancel.clone()),
        ..RunInputs::default()
    };
    let start = std::time::Instant::now();
    let res = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(500));
            cancel.cancel();
        });
        engine.run(
            &base.stack,
            &sh("echo started; sleep 60"),
            &inputs,
            &mut |_| {},
        )
    });
    let err = res.expect_err("a cancelled step fails");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        start.elapsed()
    );
    assert!(format!("{err:#}").contains("cancelled"), "{err:#}");
    let leftovers: Vec<_> = std::fs::read_dir(f.path("root/snapshots"))
        .expect("snapshots dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
#[ignore = "needs the .ci/test.sh environment (registry, base images, unprivileged user)"]
fn single_id_mapping_keeps_other_owners_through_records() {
    let f = Fixture::with(EngineOptions {
        userns: runtime::sandbox::UsernsMode::Single,
        ..EngineOptions::default()
    });
    let engine = &f.engine;
    assert!(!engine.sandbox().mapping().is_range());
    let base = engine
        .base_image(&format!("{}/library/busybox:latest", registry()))
        .expect("base image");
    let ctx = f.path("ctx");
    std::fs::create_dir_all(&ctx).expect("mkdir");
    std::fs::write(ctx.join("owned"), "x\n").expect("write");
    let copied = engine
        .copy(
            &base.stack,
            &CopyRequest::new(vec![ctx.join("owned")], "/owned").chown(1000, 1000),
        )
        .expect("COPY --chown without a subordinate range");
    // A RUN that modifies the file copies it up with its ownership record;
    // the new layer must still say 1000:1000, not the sandbox's only id.
    let changed = engine
        .run(
            &copied.stack,
            &sh("chmod 600 /owned"),
            &RunInputs::default(),
            &mut |_| {},
        )
        .expect("RUN");
    let layer = changed.layer.expect("a layer");
    let blob = engine
        .store()
        .blobs()
        .open(&layer.descriptor.digest)
        .expect("blob");
    let (entries, _) = cache::layer::read_entries(blob).expect("read layer");
    let owned = entries
        .iter()
        .find(|e| e.path == Path::new("owned"))
        .unwrap_or_else(|| panic!("no /owned in {entries:?}"));
    assert_eq!(
        (owned.meta.uid, owned.meta.gid, owned.meta.mode),
        (1000, 1000, 0o600)
    );
    assert!(
        owned
            .meta
            .xattrs
            .iter()
            .all(|(k, _)| k != cache::layer::ROOTLESS_XATTR),
        "the record is turned back into ids, not shipped: {:?}",
        owned.meta.xattrs
    );
}
