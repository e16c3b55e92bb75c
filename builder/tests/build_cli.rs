//! The `docker buildx build` flags a CI script passes, the verbs around
//! them (`inspect`, `history`, `images --format`), the messages a user
//! reads when something is wrong (asserted whole, so Rust's Debug output
//! cannot slip back in) and the progress lines of pushes and cache
//! exports. End to end with the real binary, as the unprivileged test user,
//! against the local registry's busybox.
//!
//! Needs the `.ci/test.sh` environment (local registry with the busybox
//! base, skopeo, podman), so every test is ignored by default.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::{Scratch, registry, strata_cmd, unique};

/// A context with `Dockerfile` = `df` (`{base}` is the registry's busybox).
fn context(dir: &Path, df: &str) -> PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("a.txt"), "from the context\n").unwrap();
    let base = format!("{}/library/busybox:latest", registry());
    std::fs::write(ctx.join("Dockerfile"), df.replace("{base}", &base)).unwrap();
    ctx
}

/// `strata build --progress plain ARGS CTX`.
fn build(root: &Path, ctx: &Path, args: &[&str]) -> Output {
    strata_cmd(root, &["build", "--progress", "plain"])
        .args(args)
        .arg(ctx)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "failed:\n{err}");
    err
}

/// The whole error message (the `error: ` line and what follows).
fn error_of(out: &Output) -> String {
    assert!(!out.status.success(), "unexpectedly succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    let at = err
        .find("error: ")
        .unwrap_or_else(|| panic!("no error line in:\n{err}"));
    err[at..].trim_end().to_string()
}

fn stdout(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `--add-host`, `--shm-size` and `--ulimit` reach the RUN step: its
/// /etc/hosts, the size of /dev/shm and the limits its shell sees.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn add_host_shm_size_and_ulimit_reach_run() {
    let tmp = Scratch::new("sandboxflags");
    let ctx = context(
        &tmp.0,
        "FROM {base}\nRUN grep db.internal /etc/hosts > /hosts && df -k /dev/shm | tail -1 > /shm && ulimit -n > /nofile && ulimit -Hn >> /nofile\n",
    );
    let out = tmp.0.join("out");
    ok(&build(
        &tmp.0.join("root"),
        &ctx,
        &[
            "--add-host",
            "db.internal:10.1.2.3",
            "--shm-size",
            "128m",
            "--ulimit",
            "nofile=512:1024",
            "-o",
            &format!("type=local,dest={}", out.display()),
        ],
    ));
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    assert_eq!(read("hosts"), "10.1.2.3\tdb.internal\n");
    let shm_kb: u64 = read("shm")
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("df said {:?}", read("shm")));
    assert_eq!(shm_kb, 128 * 1024);
    assert_eq!(read("nofile"), "512\n1024\n");
}

/// A failing RUN is reported in BuildKit's words, the whole message.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn failed_run_reads_like_buildkit() {
    let tmp = Scratch::new("exitcode");
    let ctx = context(&tmp.0, "FROM {base}\nRUN echo about to fail && exit 3\n");
    let out = build(&tmp.0.join("root"), &ctx, &[]);
    let df = ctx.join("Dockerfile");
    assert_eq!(
        error_of(&out),
        format!(
            "error: {}:2:1: [2/2] RUN echo about to fail && exit 3: process \"/bin/sh -c echo about to fail && exit 3\" did not complete successfully: exit code: 3\nlast output:\n  about to fail",
            df.display()
        )
    );
}

/// A step's output stops at BuildKit's 2 MiB log limit with its notice,
/// once; `BUILDKIT_STEP_LOG_MAX_SIZE=-1` lifts the limit. The step runs to
/// its end either way.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn step_output_is_clipped_at_the_log_limit() {
    let tmp = Scratch::new("logclip");
    // 40,000 lines of 90 bytes: about 3.4 MiB.
    let ctx = context(
        &tmp.0,
        "FROM {base}\nRUN i=0; while [ $i -lt 40000 ]; do printf 'line %05d %080d\\n' $i 0; i=$((i+1)); done; echo done > /done\n",
    );
    let root = tmp.0.join("root");
    let log = ok(&build(&root, &ctx, &["--no-cache"]));
    let notice = "[output clipped, log limit 2MiB reached]";
    assert_eq!(
        log.matches(notice).count(),
        1,
        "{}",
        &log[log.len().saturating_sub(2000)..]
    );
    assert!(log.contains("line 00000 "), "the first lines are shown");
    assert!(
        !log.contains("line 39999 "),
        "lines past the limit are not shown"
    );
    assert!(
        log.len() < (2 << 20) + (256 << 10),
        "{} bytes of progress",
        log.len()
    );
    let out = strata_cmd(&root, &["build", "--progress", "plain", "--no-cache"])
        .arg(&ctx)
        .env("BUILDKIT_STEP_LOG_MAX_SIZE", "-1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let all = ok(&out);
    assert!(all.contains("line 39999 "), "unlimited shows every line");
    assert!(!all.contains(notice));
}

/// `--provenance=false` and `--sbom=false` are accepted; asking for an
/// attestation is refused.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn attestation_flags_accept_only_false() {
    let tmp = Scratch::new("attest");
    let ctx = context(&tmp.0, "FROM {base}\nCOPY a.txt /\n");
    let root = tmp.0.join("root");
    ok(&build(&root, &ctx, &["--provenance=false", "--sbom=false"]));
    assert_eq!(
        error_of(&build(&root, &ctx, &["--provenance=mode=max"])),
        "error: not supported yet: --provenance=mode=max: strata makes no attestations; pass --provenance=false"
    );
    assert_eq!(
        error_of(&build(&root, &ctx, &["--sbom=true"])),
        "error: not supported yet: --sbom=true: strata makes no attestations; pass --sbom=false"
    );
}

/// `--annotation` lands in the manifest (then OCI), as skopeo reads it;
/// `-o type=image,name=` names the image in the local store.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn annotations_and_image_output_names() {
    let tmp = Scratch::new("annot");
    let ctx = context(&tmp.0, "FROM {base}\nCOPY a.txt /\n");
    let root = tmp.0.join("root");
    let archive = tmp.0.join("app.oci.tar");
    ok(&build(
        &root,
        &ctx,
        &[
            "--annotation",
            "org.opencontainers.image.title=strata-app",
            "--annotation",
            "manifest:com.example.team=ci",
            "-o",
            "type=image,name=strata-annot/app:1",
            "-o",
            &format!("type=oci,dest={}", archive.display()),
        ],
    ));
    let raw = stdout(
        Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci-archive:{}", archive.display())),
    );
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        m["annotations"]["org.opencontainers.image.title"],
        "strata-app"
    );
    assert_eq!(m["annotations"]["com.example.team"], "ci");
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    let names = stdout(&mut strata_cmd(
        &root,
        &[
            "images",
            "strata-annot/app",
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ],
    ));
    assert_eq!(names, "strata-annot/app:1\n");
    assert_eq!(
        error_of(&build(&root, &ctx, &["--annotation", "index:a=b"])),
        "error: not supported yet: --annotation index:… (strata writes one manifest without an index; use manifest: or no prefix)"
    );
}

/// `--load` hands the image to the engine on PATH (here a podman with its
/// own throw-away store), also when a docker CLI comes first whose daemon
/// is not there; with none on PATH, or none taking it, it says what to do.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn load_goes_to_the_engine_on_path() {
    let tmp = Scratch::new("load");
    let ctx = context(&tmp.0, "FROM {base}\nCOPY a.txt /a.txt\n");
    let root = tmp.0.join("root");
    // podman refuses a runroot path of over 50 characters.
    let store = tempfile::Builder::new()
        .prefix("p")
        .tempdir_in("/var/tmp")
        .unwrap();
    let bin = tmp.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let wrapper = bin.join("podman");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nPATH=/usr/sbin:/usr/bin:/sbin:/bin exec /usr/bin/podman --root {0}/r --runroot {0}/rr \"$@\"\n",
            store.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // A docker CLI without its daemon, as in many CI images.
    let docker = bin.join("docker");
    std::fs::write(
        &docker,
        "#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&docker, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let name = format!("localhost/strata-load/app:{}", unique());
    let out = strata_cmd(
        &root,
        &["build", "--progress", "plain", "--load", "-t", &name],
    )
    .arg(&ctx)
    // Only the wrapper: a docker on the machine's PATH would come first.
    .env("PATH", &bin)
    .stdin(Stdio::null())
    .output()
    .unwrap();
    let log = ok(&out);
    assert!(log.contains("loading the image (--load)"), "{log}");
    assert!(
        log.contains(&format!("loaded into {}", wrapper.display())),
        "{log}"
    );
    let listed =
        stdout(Command::new(&wrapper).args(["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    assert!(listed.lines().any(|l| l == name), "podman has {listed:?}");
    let catted = stdout(Command::new(&wrapper).args([
        "run",
        "--rm",
        "--network=none",
        &name,
        "cat",
        "/a.txt",
    ]));
    assert_eq!(catted, "from the context\n");
    let _ = Command::new(&wrapper).args(["rmi", "-a", "-f"]).output();

    // Only the daemon-less docker: the build fails with docker's words.
    std::fs::remove_file(&wrapper).unwrap();
    let out = strata_cmd(&root, &["build", "--progress", "plain", "--load"])
        .arg(&ctx)
        .env("PATH", &bin)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        error_of(&out),
        format!(
            "error: --load: `{}/docker load` failed: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?; start the engine's daemon or service, or write an archive with -o type=docker,dest=image.tar and load it where you need it",
            bin.display()
        )
    );

    let empty = tmp.0.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = strata_cmd(&root, &["build", "--progress", "plain", "--load"])
        .arg(&ctx)
        .env("PATH", &empty)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        error_of(&out),
        "error: --load: neither docker nor podman is on PATH; install one, or write an archive with -o type=docker,dest=image.tar and load it where you need it"
    );
}

/// `--cache-to` with a bare reference is a registry cache; `ignore-error`
/// makes an unreachable cache a warning, without it the build fails, and an
/// unknown key is named.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn cache_to_bare_reference_and_ignore_error() {
    let tmp = Scratch::new("cacheto");
    let ctx = context(&tmp.0, "FROM {base}\nRUN echo hi > /hi\n");
    let cache_ref = format!("{}/strata-cli/cache-{}:c", registry(), unique());
    let log = ok(&build(
        &tmp.0.join("root1"),
        &ctx,
        &["--cache-to", &cache_ref],
    ));
    assert!(
        log.contains(&format!("exporting cache to type=registry,ref={cache_ref}")),
        "{log}"
    );
    // A fresh root finds it.
    let out = strata_cmd(&tmp.0.join("root2"), &["build", "--progress", "json"])
        .args(["--cache-from", &cache_ref])
        .arg(&ctx)
        .output()
        .unwrap();
    let log = ok(&out);
    assert!(
        log.lines()
            .any(|l| l.contains("\"event\":\"cached\"") && l.contains("RUN echo hi")),
        "{log}"
    );

    // Nothing listens on port 9 of loopback.
    let dead = "type=registry,ref=127.0.0.1:9/strata-cli/cache:c";
    let log = ok(&build(
        &tmp.0.join("root3"),
        &ctx,
        &["--cache-to", &format!("{dead},ignore-error=true")],
    ));
    assert!(
        log.contains(&format!(
            "warning: --cache-to {dead}: the cache was not exported (ignore-error=true): "
        )),
        "{log}"
    );
    let err = error_of(&build(&tmp.0.join("root4"), &ctx, &["--cache-to", dead]));
    assert!(
        err.starts_with(&format!(
            "error: --cache-to {dead} failed (add ignore-error=true to build anyway): "
        )),
        "{err}"
    );
    assert_eq!(
        error_of(&build(
            &tmp.0.join("root4"),
            &ctx,
            &["--cache-to", &format!("{dead},ignore-errors=true")]
        )),
        "error: --cache-to: unknown key \"ignore-errors\": use type, ref, mode, ignore-error"
    );
}

/// `--no-cache` does not read `--cache-from` at all: no warning about an
/// unreachable source, no time spent on it.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn no_cache_never_contacts_cache_from() {
    let tmp = Scratch::new("nocache");
    let ctx = context(&tmp.0, "FROM {base}\nCOPY a.txt /\n");
    let root = tmp.0.join("root");
    let from = "type=registry,ref=127.0.0.1:9/strata-cli/cache:c";
    let log = ok(&build(&root, &ctx, &["--cache-from", from]));
    assert!(
        log.contains(&format!("warning: --cache-from {from} is not usable")),
        "without --no-cache the source is read: {log}"
    );
    let log = ok(&build(&root, &ctx, &["--no-cache", "--cache-from", from]));
    assert!(!log.contains("--cache-from"), "{log}");
}

/// `strata inspect`, `strata history` and `strata images --format` read the
/// image as docker's verbs do.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn inspect_history_and_images_format() {
    let tmp = Scratch::new("inspect");
    let ctx = context(
        &tmp.0,
        "FROM {base}\nENV GREETING=hi\nCOPY a.txt /a.txt\nRUN echo built > /b\n",
    );
    let root = tmp.0.join("root");
    let iid = tmp.0.join("iid");
    ok(&build(
        &root,
        &ctx,
        &[
            "-t",
            "strata-inspect/app:2",
            "--iidfile",
            iid.to_str().unwrap(),
        ],
    ));
    let id = std::fs::read_to_string(&iid).unwrap();
    let v: serde_json::Value = serde_json::from_str(&stdout(&mut strata_cmd(
        &root,
        &["inspect", "strata-inspect/app:2"],
    )))
    .unwrap();
    assert_eq!(v[0]["Id"], id.as_str());
    assert_eq!(
        v[0]["RepoTags"],
        serde_json::json!(["strata-inspect/app:2"])
    );
    assert!(
        v[0]["Config"]["Env"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("GREETING=hi"))
    );
    assert_eq!(v[0]["RootFS"]["Layers"].as_array().unwrap().len(), 3);
    assert_eq!(v[0]["Manifest"]["layers"].as_array().unwrap().len(), 3);
    assert_eq!(
        stdout(&mut strata_cmd(
            &root,
            &[
                "inspect",
                "--format",
                "{{.Id}} {{.Os}}",
                "strata-inspect/app:2"
            ],
        )),
        format!("{id} linux\n")
    );

    let history = stdout(&mut strata_cmd(&root, &["history", "strata-inspect/app:2"]));
    let lines: Vec<&str> = history.lines().collect();
    assert!(lines[0].starts_with("IMAGE"), "{history}");
    let short: String = id.trim_start_matches("sha256:").chars().take(12).collect();
    assert!(lines[1].starts_with(&short), "{history}");
    assert!(
        lines[1].contains("RUN /bin/sh -c echo built > /b"),
        "{history}"
    );
    assert!(lines[2].contains("COPY a.txt /a.txt"), "{history}");
    assert!(
        lines[3].contains("ENV GREETING=hi") && lines[3].contains(" 0B "),
        "{history}"
    );

    let json = stdout(&mut strata_cmd(
        &root,
        &["images", "strata-inspect/app", "--format", "json"],
    ));
    let row: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(row["Repository"], "strata-inspect/app");
    assert_eq!(row["Tag"], "2");
    assert_eq!(row["ID"], short.as_str());
    let table = stdout(&mut strata_cmd(
        &root,
        &[
            "images",
            "strata-inspect/app",
            "--format",
            "table {{.Repository}}\\t{{.Tag}}",
        ],
    ));
    assert_eq!(table, "REPOSITORY           TAG\nstrata-inspect/app   2\n");
    let out = strata_cmd(&root, &["images", "--format", "{{.Name}}"])
        .output()
        .unwrap();
    assert_eq!(
        error_of(&out),
        "error: --format: unknown field .Name: use .Repository, .Tag, .Digest, .ID, .CreatedSince, .CreatedAt, .Size"
    );
}

/// An unwritable `-o dest` and a read-only `--root` fail before the first
/// step, naming the flag and what to do.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn unwritable_destinations_fail_before_the_first_step() {
    let tmp = Scratch::new("preflight");
    let ctx = context(&tmp.0, "FROM {base}\nRUN echo should not run\n");
    let locked = tmp.0.join("locked");
    std::fs::create_dir_all(&locked).unwrap();
    let mode = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(m)).unwrap()
    };
    mode(&locked, 0o555);
    let dest = locked.join("out.tar");
    let out = build(
        &tmp.0.join("root"),
        &ctx,
        &["-o", &format!("type=docker,dest={}", dest.display())],
    );
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!log.contains("should not run"), "a step ran: {log}");
    assert_eq!(
        error_of(&out),
        format!(
            "error: --output dest={}: cannot write in {} (Permission denied); choose a place you can write",
            dest.display(),
            locked.display()
        )
    );
    // A store that exists but cannot be written.
    let root = tmp.0.join("roroot");
    ok(&build(
        &root,
        &context(&tmp.0.join("c2"), "FROM {base}\n"),
        &[],
    ));
    mode(&root.join("tmp"), 0o555);
    let out = build(&root, &ctx, &[]);
    mode(&root.join("tmp"), 0o755);
    mode(&locked, 0o755);
    assert_eq!(
        error_of(&out),
        format!(
            "error: --root {}: cannot write in {} (Permission denied); pass --root DIR (or set STRATA_ROOT) to a store you can write",
            root.display(),
            root.join("tmp").display()
        )
    );
}

/// `COPY --from=` a name that is no stage says so first; Docker Hub never
/// gets the plain-HTTP hint.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn copy_from_an_unknown_stage_names_the_stages() {
    let tmp = Scratch::new("nostage");
    let ctx = context(
        &tmp.0,
        "FROM {base} AS build\nRUN echo x > /x\nFROM {base}\nCOPY --from=biuld /x /x\n",
    );
    // Docker Hub lookups go to the local registry, which has no such image:
    // a quick, offline answer.
    let out = strata_cmd(&tmp.0.join("root"), &["build", "--progress", "plain"])
        .env("STRATA_REGISTRY_MIRROR", registry())
        .arg(&ctx)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = error_of(&out);
    let want = format!(
        "error: {}:4:1: [2/2] COPY --from=biuld /x /x: --from=biuld: no stage is named biuld (the stages are build); as an image, docker.io/library/biuld:latest could not be pulled either: ",
        ctx.join("Dockerfile").display()
    );
    assert!(err.starts_with(&want), "{err}");
    assert!(!err.contains("insecure-registry"), "{err}");
}

/// `--push` and cache exports show up in every progress mode: plain lines
/// with the bytes moved, JSON events.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn pushes_and_cache_exports_show_progress() {
    let tmp = Scratch::new("pushprogress");
    let ctx = context(&tmp.0, "FROM {base}\nRUN echo pushed > /p\n");
    let name = format!("{}/strata-cli/push-{}:1", registry(), unique());
    let cache = tmp.0.join("cache");
    let log = ok(&build(
        &tmp.0.join("root"),
        &ctx,
        &[
            "--push",
            "-t",
            &name,
            "--cache-to",
            &format!("type=local,dest={}", cache.display()),
        ],
    ));
    let short = name.clone();
    for want in [
        format!("pushing {short}"),
        "blobs uploaded".to_string(),
        "transferred".to_string(),
        format!("exporting cache to type=local,dest={}", cache.display()),
    ] {
        assert!(log.contains(&want), "no {want:?} in:\n{log}");
    }
    let out = strata_cmd(
        &tmp.0.join("root"),
        &["build", "--progress", "json", "--push", "-t", &name],
    )
    .arg(&ctx)
    .output()
    .unwrap();
    let log = ok(&out);
    let events: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let push = events
        .iter()
        .find(|e| e["event"] == "started" && e["name"] == format!("pushing {name}").as_str())
        .unwrap_or_else(|| panic!("no push event in {log}"));
    let step = push["step"].clone();
    assert!(
        events
            .iter()
            .any(|e| e["step"] == step && e["event"] == "finished"),
        "{log}"
    );
}

/// `--explain-cache` on a fresh root whose only cache is the registry's
/// names the context file that changed: the exported cache carries each
/// step's inputs.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn explain_cache_on_a_fresh_runner_names_the_changed_file() {
    let tmp = Scratch::new("explainremote");
    let ctx = context(
        &tmp.0,
        "FROM {base}\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b\n",
    );
    let cache_ref = format!("{}/strata-cli/explain-{}:c", registry(), unique());
    ok(&build(
        &tmp.0.join("root1"),
        &ctx,
        &["--cache-to", &format!("type=registry,ref={cache_ref}")],
    ));
    std::fs::write(ctx.join("a.txt"), "changed\n").unwrap();
    let log = ok(&build(
        &tmp.0.join("root2"),
        &ctx,
        &["--explain-cache", "--cache-from", &cache_ref],
    ));
    assert!(
        log.contains("cache miss: context file a.txt changed"),
        "{log}"
    );
    assert!(
        log.contains("cache miss: an earlier step it builds on changed"),
        "{log}"
    );
    assert!(!log.contains("first build of this step"), "{log}");
}

/// The same through a local cache directory and an inline cache in a
/// pushed image.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn explain_cache_through_local_and_inline_caches() {
    let tmp = Scratch::new("explainlocal");
    let ctx = context(
        &tmp.0,
        "FROM {base}\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b\n",
    );
    let dir = tmp.0.join("cache");
    let image = format!("{}/strata-cli/explain-inline-{}:1", registry(), unique());
    ok(&build(
        &tmp.0.join("root1"),
        &ctx,
        &[
            "--cache-to",
            &format!("type=local,dest={}", dir.display()),
            "--cache-to",
            "type=inline",
            "--push",
            "-t",
            &image,
        ],
    ));
    std::fs::write(ctx.join("a.txt"), "changed\n").unwrap();
    for (n, from) in [
        (2, format!("type=local,src={}", dir.display())),
        (3, image.clone()),
    ] {
        let log = ok(&build(
            &tmp.0.join(format!("root{n}")),
            &ctx,
            &["--explain-cache", "--cache-from", &from],
        ));
        assert!(
            log.contains("cache miss: context file a.txt changed"),
            "{from}: {log}"
        );
        assert!(!log.contains("first build of this step"), "{from}: {log}");
    }
}

/// A plain-HTTP registry on a non-loopback address of this machine: a
/// forwarder to the local registry. Returns `host:port`.
fn plain_http_registry_elsewhere() -> String {
    use std::net::{TcpListener, TcpStream, UdpSocket};
    // The address this machine would send from (no packet is sent).
    let probe = UdpSocket::bind("0.0.0.0:0").unwrap();
    probe
        .connect("192.0.2.1:9")
        .or_else(|_| probe.connect("10.255.255.1:9"))
        .expect("no route off loopback: this test needs a non-loopback address");
    let ip = probe.local_addr().unwrap().ip();
    assert!(!ip.is_loopback(), "only loopback here: {ip}");
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = registry();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let Ok(up) = TcpStream::connect(&upstream) else {
                continue;
            };
            let (mut a, mut b) = (conn.try_clone().unwrap(), up.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut a, &mut b);
                let _ = b.shutdown(std::net::Shutdown::Write);
            });
            let (mut a, mut b) = (up, conn);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut a, &mut b);
                let _ = b.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr.to_string()
}

/// `build --insecure-registry HOST` speaks plain HTTP to HOST, and without
/// it the build's own error names the flag.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn build_insecure_registry_flag() {
    let tmp = Scratch::new("insecure");
    let host = plain_http_registry_elsewhere();
    let ctx = tmp.0.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {host}/library/busybox:latest\nRUN echo ok > /ok\n"),
    )
    .unwrap();
    let err = error_of(&build(&tmp.0.join("root1"), &ctx, &[]));
    assert!(
        err.contains(&format!("pass --insecure-registry {host}")),
        "{err}"
    );
    ok(&build(
        &tmp.0.join("root2"),
        &ctx,
        &["--insecure-registry", &host],
    ));
}
