//! End to end: build every case of testdata/cases with the real `strata`
//! binary, then check the result with independent tools — `skopeo inspect`
//! on the docker-archive, the case's jq CONFIG_CHECK on the raw config,
//! `podman load` into a throw-away rootless store and the case's RUN_CHECK
//! with `podman run`, plus the case's `expected` file (history length,
//! layer count, file modes and owners).
//!
//! Needs the `.ci/test.sh` environment (unprivileged user, local registry at
//! STRATA_TEST_REGISTRY with the peers base images, skopeo, podman, jq), so
//! every test is ignored by default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

fn testdata() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata"))
}

fn registry() -> String {
    std::env::var("STRATA_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into())
}

/// Runs a command, failing the test with its output when it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The variables of a case.env (shell syntax: let bash read it).
fn case_env(dir: &Path) -> BTreeMap<String, String> {
    let keys = [
        "TOUCH_FILE",
        "BUILD_FLAGS",
        "PARENT_CONTEXT",
        "PARENT_IMAGE",
        "PARENT_BUILD_FLAGS",
        "CONFIG_CHECK",
        "RUN_CHECK",
    ];
    let script = format!(
        "set -a; . ./case.env; {}",
        keys.iter()
            .map(|k| format!("printf '%s\\0' \"${{{k}:-}}\""))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let out = run(Command::new("bash").arg("-c").arg(script).current_dir(dir));
    keys.iter()
        .map(|k| k.to_string())
        .zip(out.split('\0').map(str::to_string))
        .collect()
}

#[derive(Debug, Default)]
struct Expected {
    layers: Option<usize>,
    history_min: usize,
    files: Vec<(String, String, String)>,
}

fn expected(dir: &Path) -> Expected {
    let text =
        std::fs::read_to_string(dir.join("expected")).expect("every case has an expected file");
    let mut e = Expected::default();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if let Some(v) = line.strip_prefix("LAYERS=") {
            e.layers = Some(v.parse().expect("LAYERS is a number"));
        } else if let Some(v) = line.strip_prefix("HISTORY_MIN=") {
            e.history_min = v.parse().expect("HISTORY_MIN is a number");
        } else if let Some(rest) = line.strip_prefix("FILE ") {
            let f: Vec<&str> = rest.split_whitespace().collect();
            assert_eq!(f.len(), 3, "FILE path mode uid:gid, got {line:?}");
            e.files.push((f[0].into(), f[1].into(), f[2].into()));
        } else {
            panic!("unknown line in expected: {line:?}");
        }
    }
    e
}

/// Copies a case into a scratch dir (the test user must own it) and runs
/// its generator.
fn stage_case(name: &str, tmp: &Path) -> PathBuf {
    let src = testdata().join("cases").join(name);
    let dst = tmp.join("ctx").join(name);
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    run(Command::new("cp").arg("-a").arg(&src).arg(&dst));
    if dst.join("gen.sh").exists() {
        run(Command::new("bash").arg("gen.sh").current_dir(&dst));
    }
    dst
}

/// `--build-arg`s and the like from BUILD_FLAGS, minus buildah's
/// `--format docker` (strata always writes Docker configs).
fn flags(s: &str) -> Vec<String> {
    let words: Vec<&str> = s.split_whitespace().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        if words[i] == "--format" {
            i += 2;
            continue;
        }
        out.push(words[i].to_string());
        i += 1;
    }
    out
}

fn strata(root: &Path) -> Command {
    let mut c = Command::new(STRATA);
    c.arg("--root").arg(root);
    c
}

/// The raw config JSON inside a docker-archive.
fn raw_config(archive: &Path, tmp: &Path) -> serde_json::Value {
    let x = tmp.join("extract");
    std::fs::create_dir_all(&x).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(&x)
        .arg("manifest.json"));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(x.join("manifest.json")).unwrap()).unwrap();
    let cfg = m[0]["Config"]
        .as_str()
        .expect("manifest.json names the config")
        .to_string();
    run(Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(&x)
        .arg(&cfg));
    serde_json::from_slice(&std::fs::read(x.join(&cfg)).unwrap()).unwrap()
}

/// A scratch directory that may hold a rootless podman store (`r`, `rr`).
/// podman unpacks images as subordinate ids, which the test user cannot
/// delete, so the store goes through `podman unshare rm` before the
/// directory itself is removed; otherwise every run leaves ~240 MB behind.
struct PodmanScratch(tempfile::TempDir);

impl PodmanScratch {
    fn new() -> PodmanScratch {
        PodmanScratch(tempfile::tempdir().unwrap())
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for PodmanScratch {
    fn drop(&mut self) {
        let store = self.0.path().join("r");
        if store.exists() {
            let _ = Command::new("podman")
                .args(["unshare", "rm", "-rf"])
                .arg(&store)
                .arg(self.0.path().join("rr"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn podman(tmp: &Path) -> Command {
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(tmp.join("r"))
        .arg("--runroot")
        .arg(tmp.join("rr"));
    c
}

fn check_case(name: &str) {
    let tmp = PodmanScratch::new();
    let tmp = tmp.path();
    let root = tmp.join("root");
    let ctx = stage_case(name, tmp);
    let env = case_env(&ctx);
    let reg = registry();
    if !env["PARENT_CONTEXT"].is_empty() {
        let parent_ref = env["PARENT_IMAGE"].replace("127.0.0.1:5000", &reg);
        run(strata(&root)
            .arg("build")
            .args(flags(&env["PARENT_BUILD_FLAGS"]))
            .args(["--progress", "plain", "-t", &parent_ref, "--push"])
            .arg(ctx.join(&env["PARENT_CONTEXT"])));
    }
    let archive = tmp.join("out.tar");
    let tag = format!("strata-e2e/{name}:latest");
    let progress = tmp.join("progress.json");
    let out = strata(&root)
        .arg("build")
        .args(flags(&env["BUILD_FLAGS"]))
        .args(["--progress", "json", "-t", &tag])
        .arg("-o")
        .arg(format!("type=docker,dest={}", archive.display()))
        .arg(&ctx)
        .stderr(std::fs::File::create(&progress).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "strata build of {name} failed:\n{}",
        std::fs::read_to_string(&progress).unwrap_or_default()
    );

    run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("docker-archive:{}", archive.display())));
    let cfg = raw_config(&archive, tmp);
    if !env["CONFIG_CHECK"].trim().is_empty() {
        let cfg_file = tmp.join("config.json");
        std::fs::write(&cfg_file, serde_json::to_vec(&cfg).unwrap()).unwrap();
        run(Command::new("jq")
            .arg("-e")
            .arg(&env["CONFIG_CHECK"])
            .arg(&cfg_file));
    }
    let exp = expected(&ctx);
    let history = cfg["history"].as_array().map(Vec::len).unwrap_or(0);
    assert!(
        history >= exp.history_min,
        "{name}: {history} history entries, expected at least {}",
        exp.history_min
    );
    let layers = cfg["rootfs"]["diff_ids"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    let non_empty = cfg["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["empty_layer"] != true)
        .count();
    assert_eq!(
        layers, non_empty,
        "{name}: history must mark exactly the layer-less steps empty"
    );
    if let Some(l) = exp.layers {
        assert_eq!(layers, l, "{name}: layer count");
    }

    run(podman(tmp).arg("load").arg("-i").arg(&archive));
    // The store writes normalized names into RepoTags.
    let image = format!("docker.io/{tag}");
    if !env["RUN_CHECK"].trim().is_empty() {
        run(podman(tmp).args([
            "run",
            "--rm",
            "--network=none",
            "--entrypoint",
            "/bin/sh",
            &image,
            "-c",
            &env["RUN_CHECK"],
        ]));
    }
    for (path, mode, owner) in &exp.files {
        let got = run(podman(tmp).args([
            "run",
            "--rm",
            "--network=none",
            "--entrypoint",
            "/bin/stat",
            &image,
            "-c",
            "%a %u:%g",
            path,
        ]));
        assert_eq!(
            got.trim(),
            format!("{mode} {owner}"),
            "{name}: mode and owner of {path}"
        );
    }
}

macro_rules! case {
    ($f:ident, $name:literal) => {
        #[test]
        #[ignore = "needs the .ci/test.sh environment"]
        fn $f() {
            check_case($name);
        }
    };
}

case!(multistage_parallel, "multistage-parallel");
case!(many_layers, "many-layers");
case!(big_context, "big-context");
case!(onbuild_healthcheck_args, "onbuild-healthcheck-args");
case!(whiteouts, "whiteouts");
case!(debian_slim, "debian-slim");

/// An unchanged rebuild runs nothing and gives the same image id; touching
/// the last COPY's file reruns only that step.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn warm_rebuild_is_fully_cached_and_touch_reruns_only_its_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let root = tmp.join("root");
    let ctx = stage_case("many-layers", tmp);
    let build = |iid: &str| -> Vec<serde_json::Value> {
        let out = strata(&root)
            .args(["build", "--progress", "json", "--iidfile"])
            .arg(tmp.join(iid))
            .arg(&ctx)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let count =
        |evs: &[serde_json::Value], kind: &str| evs.iter().filter(|e| e["event"] == kind).count();
    let cold = build("iid1");
    assert!(count(&cold, "started") >= 20);
    let warm = build("iid2");
    let warm_steps: Vec<_> = warm
        .iter()
        .filter(|e| e["event"] == "started" && !e["name"].as_str().unwrap_or("").contains("FROM"))
        .collect();
    assert!(warm_steps.is_empty(), "a warm rebuild ran {warm_steps:?}");
    assert_eq!(count(&warm, "cached"), 20);
    assert_eq!(
        std::fs::read(tmp.join("iid1")).unwrap(),
        std::fs::read(tmp.join("iid2")).unwrap()
    );
    std::fs::write(ctx.join("files/late.txt"), "touched\n").unwrap();
    let touched = build("iid3");
    let ran: Vec<&str> = touched
        .iter()
        .filter(|e| e["event"] == "started")
        .filter_map(|e| e["name"].as_str())
        .filter(|n| !n.contains("FROM"))
        .collect();
    assert_eq!(ran.len(), 1, "{ran:?}");
    assert!(ran[0].contains("COPY files/late.txt"), "{ran:?}");
}

/// The four independent stages of multistage-parallel overlap in time.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn independent_stages_overlap() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let ctx = stage_case("multistage-parallel", tmp);
    let out = strata(&tmp.join("root"))
        .args(["build", "--progress", "json", "--jobs", "4"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let evs: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut spans = Vec::new();
    for s in ["s1", "s2", "s3", "s4"] {
        let step = evs
            .iter()
            .find(|e| {
                e["event"] == "started"
                    && e["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with(&format!("[{s} ")) && n.contains("RUN"))
            })
            .unwrap_or_else(|| panic!("no RUN of stage {s} in the progress"));
        let n = step["step"].clone();
        let start = step["unix_nanos"].as_i64().unwrap();
        let end = evs
            .iter()
            .find(|e| e["event"] == "finished" && e["step"] == n)
            .unwrap()["unix_nanos"]
            .as_i64()
            .unwrap();
        spans.push((start, end));
    }
    let latest_start = spans.iter().map(|s| s.0).max().unwrap();
    let earliest_end = spans.iter().map(|s| s.1).min().unwrap();
    assert!(
        latest_start < earliest_end,
        "the stages ran one after another: {spans:?}"
    );
}

/// The README's first command: testdata/example/build.sh writes a loadable
/// example.tar, building its busybox base from the host's busybox first.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn readme_example_builds_offline() {
    let tmp = PodmanScratch::new();
    let tmp = tmp.path();
    let out = tmp.join("example.tar");
    run(Command::new(testdata().join("example/build.sh"))
        .arg(&out)
        .env("STRATA", STRATA)
        .env("STRATA_ROOT", tmp.join("root")));
    run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("docker-archive:{}", out.display())));
    run(podman(tmp).arg("load").arg("-i").arg(&out));
    let said = run(podman(tmp).args([
        "run",
        "--rm",
        "--network=none",
        "docker.io/strata-example/hello:latest",
    ]));
    assert_eq!(said.trim(), "hello from strata (built with strata)");
}

/// `--cache-to type=registry` from one root, then `--cache-from` into an
/// empty root: every step is a cache hit, and the image is the same.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn registry_cache_fills_an_empty_root() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let ctx = stage_case("many-layers", tmp);
    let cache_ref = format!(
        "{}/strata-e2e/cache-{}:latest",
        registry(),
        std::process::id()
    );
    let out = strata(&tmp.join("root1"))
        .args(["build", "--progress", "plain", "--iidfile"])
        .arg(tmp.join("iid1"))
        .arg("--cache-to")
        .arg(format!("type=registry,ref={cache_ref},mode=max"))
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = strata(&tmp.join("root2"))
        .args(["build", "--progress", "json", "--iidfile"])
        .arg(tmp.join("iid2"))
        .arg("--cache-from")
        .arg(format!("type=registry,ref={cache_ref}"))
        .arg(&ctx)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let evs: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let ran: Vec<_> = evs
        .iter()
        .filter(|e| e["event"] == "started" && !e["name"].as_str().unwrap_or("").contains("FROM"))
        .collect();
    assert!(
        ran.is_empty(),
        "steps ran despite the imported cache: {ran:?}"
    );
    assert_eq!(
        std::fs::read(tmp.join("iid1")).unwrap(),
        std::fs::read(tmp.join("iid2")).unwrap()
    );
}

/// The layer digests of a registry image for this machine's platform, as
/// skopeo (not strata) reads them.
fn registry_layers(reference: &str) -> Vec<String> {
    let out = run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["Layers"]
        .as_array()
        .expect("skopeo inspect lists Layers")
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

/// Whether a store holds a blob.
fn has_blob(root: &Path, digest: &str) -> bool {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    root.join("blobs/sha256").join(hex).is_file()
}

/// A fully cached build into an empty root records its image without
/// downloading the base layers; what later needs their bytes — `strata
/// save`, a build `FROM` the new tag that runs something — fetches them
/// from where the store recorded they came from, and `strata push` mounts
/// them from there.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn cache_hits_leave_base_layers_in_the_registry_until_needed() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let base = format!("{}/library/busybox:latest", registry());
    let ctx = tmp.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("a.txt"), "lazy\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {base}\nCOPY a.txt /a.txt\n"),
    )
    .unwrap();
    let cache_ref = format!(
        "{}/strata-e2e/lazy-cache-{}:latest",
        registry(),
        std::process::id()
    );
    let cache_to = format!("type=registry,ref={cache_ref},mode=max");
    let cache_from = format!("type=registry,ref={cache_ref}");
    build_events(&tmp.join("root1"), &ctx, &["--cache-to", &cache_to]);
    let base_layers = registry_layers(&base);
    assert!(!base_layers.is_empty());

    let root2 = tmp.join("root2");
    let (ran, cached) = build_events(
        &root2,
        &ctx,
        &["--cache-from", &cache_from, "-t", "strata-e2e/lazy:1"],
    );
    assert!(
        ran.is_empty(),
        "steps ran despite the imported cache: {ran:?}"
    );
    assert_eq!(cached.len(), 1, "{cached:?}");
    for l in &base_layers {
        assert!(!has_blob(&root2, l), "base layer {l} was downloaded");
    }
    // Absent but recorded: not damage.
    run(strata(&root2).args(["store", "verify"]));

    let archive = tmp.join("lazy.tar");
    run(strata(&root2)
        .arg("save")
        .arg("-o")
        .arg(&archive)
        .arg("strata-e2e/lazy:1"));
    run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("docker-archive:{}", archive.display())));
    for l in &base_layers {
        assert!(has_blob(&root2, l), "save did not fetch base layer {l}");
    }

    // A build FROM the lazily recorded tag unpacks its layers: the tag is
    // local, the bytes come from the recorded origin.
    let root3 = tmp.join("root3");
    build_events(
        &root3,
        &ctx,
        &["--cache-from", &cache_from, "-t", "strata-e2e/lazy:1"],
    );
    assert!(base_layers.iter().all(|l| !has_blob(&root3, l)));
    // A push to the base's registry mounts the absent layers from the
    // recorded repository: nothing is downloaded.
    let pushed = format!(
        "{}/strata-e2e/lazy-push-{}:1",
        registry(),
        std::process::id()
    );
    run(strata(&root3).args(["push", "strata-e2e/lazy:1", &pushed]));
    assert_eq!(
        registry_layers(&pushed)[..base_layers.len()],
        base_layers[..]
    );
    assert!(base_layers.iter().all(|l| !has_blob(&root3, l)));
    let child = tmp.join("child");
    std::fs::create_dir_all(&child).unwrap();
    std::fs::write(
        child.join("Dockerfile"),
        "FROM strata-e2e/lazy:1\nRUN grep -q lazy /a.txt && test -x /bin/busybox\n",
    )
    .unwrap();
    let (ran, _) = build_events(&root3, &child, &[]);
    assert_eq!(ran.len(), 1, "{ran:?}");
    for l in &base_layers {
        assert!(has_blob(&root3, l), "the RUN did not fetch base layer {l}");
    }
}

/// Builds `ctx` with `--progress json` and extra flags; returns the names of
/// the steps that ran and of those that hit the cache (FROM lines left out).
fn build_events(root: &Path, ctx: &Path, extra: &[&str]) -> (Vec<String>, Vec<String>) {
    let out = strata(root)
        .args(["build", "--progress", "json"])
        .args(extra)
        .arg(ctx)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let names = |kind: &str| -> Vec<String> {
        stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["event"] == kind)
            .filter_map(|e| e["name"].as_str().map(str::to_string))
            // Dockerfile steps (`[stage 2/3] RUN …`), not FROM and not the
            // pushes and exports after them.
            .filter(|n| n.starts_with('[') && !n.contains("FROM"))
            .collect()
    };
    (names("started"), names("cached"))
}

/// A context whose steps sit before and after an `ARG V`, plus an
/// independent stage, so a changed build arg has a known blast radius.
fn arg_context(tmp: &Path) -> PathBuf {
    let ctx = tmp.join("argctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("a.txt"), "a\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {r}/library/busybox:latest AS other\n\
             RUN echo other > /o\n\
             FROM {r}/library/busybox:latest\n\
             COPY a.txt /a.txt\n\
             RUN echo before > /before\n\
             ARG V=1\n\
             RUN echo \"$V\" > /v\n\
             COPY --from=other /o /o\n",
            r = registry()
        ),
    )
    .unwrap();
    ctx
}

/// Changing a --build-arg re-runs the steps that have it in scope (and what
/// builds on them), nothing before the ARG and nothing in the other stage;
/// `--no-cache` then runs every step and reports no cache hit.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn build_arg_change_reruns_only_its_steps_and_no_cache_runs_all() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let root = tmp.join("root");
    let ctx = arg_context(tmp);

    let (cold, _) = build_events(&root, &ctx, &["--build-arg", "V=1"]);
    assert_eq!(cold.len(), 5, "cold build ran {cold:?}");

    let (ran, cached) = build_events(&root, &ctx, &["--build-arg", "V=2"]);
    assert_eq!(ran.len(), 2, "changed V re-ran {ran:?}");
    assert!(ran.iter().any(|n| n.contains("> /v")), "{ran:?}");
    assert!(
        ran.iter().any(|n| n.contains("COPY --from=other")),
        "{ran:?}"
    );
    for kept in ["echo other", "COPY a.txt", "echo before"] {
        assert!(
            cached.iter().any(|n| n.contains(kept)),
            "{kept} should be cached: ran {ran:?}, cached {cached:?}"
        );
    }

    let (all, none) = build_events(&root, &ctx, &["--build-arg", "V=2", "--no-cache"]);
    assert_eq!(all.len(), 5, "--no-cache ran {all:?}");
    assert!(none.is_empty(), "--no-cache hit the cache for {none:?}");
}

/// The entries of a `type=local` cache export.
fn local_cache_keys(dir: &Path) -> Vec<String> {
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("strata-cache.json")).unwrap()).unwrap();
    doc["entries"]
        .as_object()
        .expect("strata-cache.json has entries")
        .keys()
        .cloned()
        .collect()
}

/// `mode=min` exports only the steps the final image is made
/// of; `mode=max` also the other stage's. Importing the min cache into an
/// empty root hits every final-stage step and never runs the other stage.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn cache_mode_min_exports_the_final_stage_and_max_every_step() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let ctx = arg_context(tmp);
    let (min, max) = (tmp.join("min"), tmp.join("max"));
    build_events(
        &tmp.join("root1"),
        &ctx,
        &[
            "--cache-to",
            &format!("type=local,dest={},mode=min", min.display()),
            "--cache-to",
            // max is the default.
            &format!("type=local,dest={}", max.display()),
        ],
    );
    let (min_keys, max_keys) = (local_cache_keys(&min), local_cache_keys(&max));
    assert_eq!(max_keys.len(), 5, "mode=max: every step, got {max_keys:?}");
    assert_eq!(
        min_keys.len(),
        4,
        "mode=min: the final stage's steps, got {min_keys:?}"
    );
    assert!(min_keys.iter().all(|k| max_keys.contains(k)));

    let (ran, cached) = build_events(
        &tmp.join("root2"),
        &ctx,
        &["--cache-from", &format!("type=local,src={}", min.display())],
    );
    // The other stage is not in a min cache, but only a cached COPY --from
    // reads it, so it is not run at all (BuildKit's lazy solve).
    assert!(ran.is_empty(), "nothing runs: {ran:?}");
    assert_eq!(cached.len(), 4, "{cached:?}");
}

/// `--cache-to type=inline` carries the cache in the pushed image's config;
/// `--cache-from IMAGE` in an empty root then reuses the final stage's steps,
/// runs nothing else, and gives the same image.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn inline_cache_in_a_pushed_image_fills_an_empty_root() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let ctx = arg_context(tmp);
    let image = format!(
        "{}/strata-e2e/inline-{}:latest",
        registry(),
        std::process::id()
    );
    let (iid1, iid2) = (tmp.join("iid1"), tmp.join("iid2"));
    build_events(
        &tmp.join("root1"),
        &ctx,
        &[
            "-t",
            &image,
            "--push",
            "--cache-to",
            "type=inline",
            "--iidfile",
            iid1.to_str().unwrap(),
        ],
    );
    let raw = run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        "--config",
        &format!("docker://{image}"),
    ]));
    let cfg: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let entries = cfg["strata.cache.v1"]["entries"]
        .as_object()
        .unwrap_or_else(|| panic!("no inline cache in the pushed config: {raw}"));
    assert_eq!(entries.len(), 4, "the final stage's steps: {entries:?}");

    let (ran, cached) = build_events(
        &tmp.join("root2"),
        &ctx,
        &[
            "--cache-from",
            &image,
            "--cache-to",
            "type=inline",
            "--iidfile",
            iid2.to_str().unwrap(),
        ],
    );
    assert!(ran.is_empty(), "nothing runs: {ran:?}");
    assert_eq!(cached.len(), 4, "{cached:?}");
    assert_eq!(
        std::fs::read(&iid1).unwrap(),
        std::fs::read(&iid2).unwrap(),
        "the inline-cached rebuild gives the same image"
    );
}

/// The unpacked layer directories of a store (`<root>/snapshots/layer-*`).
fn layer_dirs(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("snapshots"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("layer-"))
        .collect();
    names.sort();
    names
}

/// `strata prune` keeps the unpacked layer directories that cached steps
/// stand on (their cache entries name them), with no warning, so a build
/// that reruns a late step finds them; `prune --all` removes them all, even
/// the ones holding files of subordinate ids, and a build still works.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn prune_keeps_the_layer_directories_of_cached_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let root = tmp.join("root");
    let ctx = tmp.join("prunectx");
    std::fs::create_dir_all(&ctx).unwrap();
    let write = |last: &str| {
        std::fs::write(
            ctx.join("Dockerfile"),
            format!(
                "FROM {r}/library/busybox:latest AS src\n\
                 RUN mkdir /d && echo x > /d/x && chown -R 7:7 /d && chmod 700 /d\n\
                 FROM {r}/library/busybox:latest\n\
                 COPY --from=src /d /e\n\
                 RUN cat /e/x > /last && echo {last} >> /last\n",
                r = registry()
            ),
        )
        .unwrap();
    };
    let prune = |args: &[&str]| {
        let out = strata(&root).arg("prune").args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "prune {args:?}: {stderr}");
        stderr
    };
    write("one");
    let (ran, _) = build_events(&root, &ctx, &[]);
    assert_eq!(ran.len(), 3, "cold build ran {ran:?}");
    let kept = layer_dirs(&root);
    // busybox, the src RUN, the COPY --from and the last RUN (the copy
    // goes to another path: copied to the same one, with its mtimes kept,
    // it would be the RUN's very layer, one directory).
    assert_eq!(kept.len(), 4, "{kept:?}");

    let warnings = prune(&[]);
    assert!(!warnings.contains("warning"), "{warnings}");
    assert_eq!(layer_dirs(&root), kept, "prune removed a layer in use");

    write("two");
    let (ran, cached) = build_events(&root, &ctx, &[]);
    assert_eq!(ran.len(), 1, "ran {ran:?}, cached {cached:?}");
    assert!(ran[0].contains("echo two"), "{ran:?}");

    let warnings = prune(&["--all"]);
    assert!(!warnings.contains("warning"), "{warnings}");
    let left: Vec<_> = std::fs::read_dir(root.join("snapshots"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "prune --all left {left:?}");
    let (ran, _) = build_events(&root, &ctx, &[]);
    assert_eq!(ran.len(), 3, "after prune --all ran {ran:?}");
}

/// With no `mode=`, a registry cache holds every stage's steps, so an empty
/// root rebuilding a multi-stage Dockerfile from it runs no step at all.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn default_registry_cache_covers_every_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let ctx = arg_context(tmp);
    let cache_ref = format!(
        "{}/strata-e2e/default-cache-{}:latest",
        registry(),
        std::process::id()
    );
    build_events(
        &tmp.join("root1"),
        &ctx,
        &["--cache-to", &format!("type=registry,ref={cache_ref}")],
    );
    let (ran, cached) = build_events(
        &tmp.join("root2"),
        &ctx,
        &["--cache-from", &format!("type=registry,ref={cache_ref}")],
    );
    assert!(ran.is_empty(), "steps ran despite the cache: {ran:?}");
    assert_eq!(cached.len(), 5, "{cached:?}");
}
