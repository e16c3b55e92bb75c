//! Unit tests for the lowering rules: ONBUILD, ARG scoping, --target
//! pruning, SHELL, HEALTHCHECK, ENTRYPOINT resetting CMD, WORKDIR chains,
//! RUN/COPY steps and history text.

use std::cell::RefCell;
use std::collections::BTreeMap;

use frontend::{
    Base, BuildGraph, BuildOptions, CopySource, Diagnostic, ExecOp, FileKind, FileOp, ImageConfig,
    ImageResolver, Op, Platform, ResolvedImage, Stage,
};

/// A resolver with fixed configs per reference that records its calls.
#[derive(Default)]
struct FakeResolver {
    configs: BTreeMap<String, ImageConfig>,
    calls: RefCell<Vec<String>>,
}

impl FakeResolver {
    fn with(reference: &str, config: ImageConfig) -> FakeResolver {
        let mut r = FakeResolver::default();
        r.configs.insert(reference.to_string(), config);
        r
    }
}

impl ImageResolver for FakeResolver {
    fn resolve(&self, reference: &str, _platform: &Platform) -> Result<ResolvedImage, String> {
        self.calls.borrow_mut().push(reference.to_string());
        Ok(ResolvedImage {
            digest: format!("sha256:{:064}", self.calls.borrow().len()),
            config: self.configs.get(reference).cloned().unwrap_or_default(),
        })
    }
}

fn lower_with(
    text: &str,
    opts: &BuildOptions,
    r: &dyn ImageResolver,
) -> Result<BuildGraph, Diagnostic> {
    let df = frontend::parse("Dockerfile", text)?;
    frontend::lower(&df, opts, r)
}

fn lower(text: &str) -> BuildGraph {
    lower_with(text, &BuildOptions::default(), &FakeResolver::default())
        .unwrap_or_else(|e| panic!("lowering failed: {e}"))
}

fn target(g: &BuildGraph) -> &Stage {
    g.target_stage().expect("target stage")
}

fn execs(stage: &Stage) -> Vec<&ExecOp> {
    stage
        .steps
        .iter()
        .filter_map(|s| match &s.op {
            Op::Exec(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn files(stage: &Stage) -> Vec<&FileOp> {
    stage
        .steps
        .iter()
        .filter_map(|s| match &s.op {
            Op::File(f) => Some(f),
            _ => None,
        })
        .collect()
}

fn env_of<'a>(e: &'a ExecOp, key: &str) -> Option<&'a str> {
    e.env
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

// ---------------------------------------------------------------- ONBUILD

fn parent_with_triggers() -> FakeResolver {
    FakeResolver::with(
        "parent",
        ImageConfig {
            on_build: vec!["RUN echo from-trigger".into(), "ENV TRIGGERED=yes".into()],
            ..Default::default()
        },
    )
}

#[test]
fn onbuild_triggers_run_in_direct_child_right_after_from() {
    let r = parent_with_triggers();
    let g =
        lower_with("FROM parent\nRUN echo own\n", &BuildOptions::default(), &r).expect("lowers");
    let s = target(&g);
    let runs = execs(s);
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].argv, ["/bin/sh", "-c", "echo from-trigger"]);
    assert_eq!(runs[1].argv, ["/bin/sh", "-c", "echo own"]);
    assert_eq!(env_of(runs[1], "TRIGGERED"), Some("yes"));
    assert_eq!(s.steps[0].line, 1, "trigger steps point at the FROM line");
    assert!(
        s.config.on_build.is_empty(),
        "triggers are consumed, not inherited"
    );
}

#[test]
fn onbuild_triggers_do_not_run_in_grandchild() {
    let r = parent_with_triggers();
    let g = lower_with(
        "FROM parent AS child\nFROM child\nRUN echo grandchild\n",
        &BuildOptions::default(),
        &r,
    )
    .expect("lowers");
    assert_eq!(g.stages.len(), 2);
    assert_eq!(execs(&g.stages[0]).len(), 1, "child runs the trigger");
    let grand = target(&g);
    let runs = execs(grand);
    assert_eq!(runs.len(), 1, "grandchild does not");
    assert_eq!(runs[0].argv[2], "echo grandchild");
    assert_eq!(grand.base, Base::Stage { id: 0 });
}

#[test]
fn onbuild_declared_in_a_stage_is_stored_and_runs_in_its_child_only() {
    let g = lower("FROM scratch AS base\nONBUILD RUN echo hi\nFROM base AS mid\nFROM mid\n");
    assert_eq!(g.stages[0].config.on_build, ["RUN echo hi"]);
    assert!(
        execs(&g.stages[0]).is_empty(),
        "ONBUILD does not run where declared"
    );
    assert_eq!(execs(&g.stages[1]).len(), 1);
    assert!(g.stages[1].config.on_build.is_empty());
    assert!(execs(&g.stages[2]).is_empty());
}

#[test]
fn onbuild_forbidden_triggers_are_rejected() {
    for bad in [
        "ONBUILD ONBUILD RUN x",
        "ONBUILD FROM alpine",
        "ONBUILD MAINTAINER me",
    ] {
        let text = format!("FROM scratch\n{bad}\n");
        let r = lower_with(&text, &BuildOptions::default(), &FakeResolver::default());
        assert!(r.is_err(), "{bad} accepted");
    }
}

// ---------------------------------------------------------------- ARG scoping

#[test]
fn global_arg_is_usable_in_from_and_only_when_redeclared_in_stage() {
    let r = FakeResolver::default();
    let g = lower_with(
        "ARG TAG=1.0\nFROM alpine:${TAG}\nRUN echo a\nARG TAG\nRUN echo b\n",
        &BuildOptions::default(),
        &r,
    )
    .expect("lowers");
    assert_eq!(r.calls.borrow().as_slice(), ["alpine:1.0"]);
    let s = target(&g);
    match &s.base {
        Base::Image { reference, .. } => assert_eq!(reference, "alpine:1.0"),
        other => panic!("base {other:?}"),
    }
    let runs = execs(s);
    assert_eq!(
        env_of(runs[0], "TAG"),
        None,
        "not visible before redeclaration"
    );
    assert_eq!(env_of(runs[1], "TAG"), Some("1.0"));
    assert_eq!(
        s.steps[1].created_by,
        "RUN |1 TAG=1.0 /bin/sh -c echo b # buildkit"
    );
}

#[test]
fn build_arg_overrides_global_and_stage_defaults() {
    let mut opts = BuildOptions::default();
    opts.build_args.insert("TAG".into(), "2.0".into());
    opts.build_args.insert("MODE".into(), "release".into());
    let r = FakeResolver::default();
    let g = lower_with(
        "ARG TAG=1.0\nFROM alpine:$TAG\nARG MODE=debug\nRUN echo $MODE\n",
        &opts,
        &r,
    )
    .expect("lowers");
    assert_eq!(r.calls.borrow().as_slice(), ["alpine:2.0"]);
    assert_eq!(env_of(execs(target(&g))[0], "MODE"), Some("release"));
    assert!(g.warnings.is_empty(), "{:?}", g.warnings);
}

#[test]
fn stage_args_do_not_leak_into_other_stages() {
    let g = lower(
        "FROM scratch AS a\nARG X=1\nRUN echo\nFROM scratch\nCOPY --from=a / /\nRUN echo $X\n",
    );
    let a = g.stage(0).map(execs).expect("stage a is needed");
    assert_eq!(env_of(a[0], "X"), Some("1"));
    assert_eq!(env_of(execs(target(&g))[0], "X"), None);
    let g2 = lower("FROM scratch AS a\nARG X=1\nFROM a\nRUN echo $X\n");
    assert_eq!(
        env_of(execs(target(&g2))[0], "X"),
        None,
        "ARG is per stage, not inherited"
    );
}

#[test]
fn env_wins_over_arg() {
    let g = lower("FROM scratch\nARG V=arg\nENV V=env\nARG V=arg2\nRUN echo\nLABEL l=$V\n");
    let s = target(&g);
    assert_eq!(env_of(execs(s)[0], "V"), Some("env"));
    assert_eq!(s.config.labels["l"], "env");
}

#[test]
fn unused_build_arg_warns_and_platform_args_need_redeclaration() {
    let mut opts = BuildOptions::default();
    opts.build_args.insert("NOBODY".into(), "x".into());
    opts.platform = "linux/arm64/v8".parse().expect("platform");
    let g = lower_with(
        "FROM scratch\nRUN echo\nARG TARGETARCH\nARG TARGETVARIANT\nRUN echo\n",
        &opts,
        &FakeResolver::default(),
    )
    .expect("lowers");
    assert_eq!(g.warnings.len(), 1);
    assert!(g.warnings[0].message.contains("NOBODY"));
    let runs = execs(target(&g));
    assert_eq!(env_of(runs[0], "TARGETARCH"), None);
    assert_eq!(env_of(runs[1], "TARGETARCH"), Some("arm64"));
    assert_eq!(env_of(runs[1], "TARGETVARIANT"), Some("v8"));
}

#[test]
fn proxy_args_reach_run_without_history() {
    let mut opts = BuildOptions::default();
    opts.build_args
        .insert("HTTP_PROXY".into(), "http://proxy:3128".into());
    let g =
        lower_with("FROM scratch\nRUN echo\n", &opts, &FakeResolver::default()).expect("lowers");
    let s = target(&g);
    assert_eq!(
        execs(s)[0].proxy_env,
        [("http_proxy".to_string(), "http://proxy:3128".to_string())]
    );
    assert!(s.history.iter().all(|h| !h.created_by.contains("proxy")));
    assert!(g.warnings.is_empty());
}

// ---------------------------------------------------------------- targets

#[test]
fn target_prunes_unneeded_stages_and_their_images() {
    let r = FakeResolver::default();
    let opts = BuildOptions {
        target: Some("APP".into()),
        ..Default::default()
    };
    let g = lower_with(
        "FROM golang AS build\nRUN make\nFROM debian AS unused\nRUN slow\nFROM alpine AS app\nCOPY --from=build /out /\nFROM app AS last\n",
        &opts,
        &r,
    )
    .expect("lowers");
    let ids: Vec<usize> = g.stages.iter().map(|s| s.id).collect();
    assert_eq!(ids, [0, 2]);
    assert_eq!(target(&g).id, 2);
    assert_eq!(target(&g).deps, [0]);
    assert_eq!(r.calls.borrow().as_slice(), ["golang", "alpine"]);
}

#[test]
fn unknown_target_suggests_a_name() {
    let opts = BuildOptions {
        target: Some("bulid".into()),
        ..Default::default()
    };
    let e = lower_with(
        "FROM scratch AS build\nFROM scratch\n",
        &opts,
        &FakeResolver::default(),
    )
    .expect_err("unknown target");
    assert_eq!(
        e.message,
        "target stage \"bulid\" could not be found (did you mean build?)"
    );
}

#[test]
fn copy_from_by_name_index_and_image() {
    let g = lower(
        "FROM scratch AS one\nFROM scratch\nCOPY --from=ONE /a /a\nCOPY --from=0 /b /b\nCOPY --from=nginx:latest /c /c\n",
    );
    let f = files(target(&g));
    assert_eq!(f[0].from, CopySource::Stage { id: 0 });
    assert_eq!(f[1].from, CopySource::Stage { id: 0 });
    assert_eq!(
        f[2].from,
        CopySource::Image {
            reference: "nginx:latest".into()
        }
    );
    assert_eq!(target(&g).deps, [0]);
}

#[test]
fn no_from_and_self_reference_are_errors_with_positions() {
    let e = lower_with(
        "ARG A=1\n",
        &BuildOptions::default(),
        &FakeResolver::default(),
    )
    .expect_err("no stages");
    assert!(e.message.contains("no stages"), "{e}");
    let e = lower_with(
        "FROM scratch AS s\nRUN true\nCOPY --from=s /a /b\n",
        &BuildOptions::default(),
        &FakeResolver::default(),
    )
    .expect_err("cycle");
    assert_eq!(e.message, "circular dependency detected on stage: s");
    assert_eq!((e.file.as_str(), e.line), ("Dockerfile", 1));
    let e = lower_with(
        "FROM scratch\nRUN --mount=type=bind,from=later,target=/x true\nFROM scratch AS later\n",
        &BuildOptions::default(),
        &FakeResolver::default(),
    )
    .expect_err("forward mount");
    assert!(e.message.contains("needs to be defined before"), "{e}");
}

// ---------------------------------------------------------------- SHELL

#[test]
fn shell_changes_later_shell_forms() {
    let g = lower(
        "FROM scratch\nRUN echo a\nSHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]\nRUN echo b\nCMD echo c\nRUN [\"exec\", \"form\"]\n",
    );
    let s = target(&g);
    let runs = execs(s);
    assert_eq!(runs[0].argv, ["/bin/sh", "-c", "echo a"]);
    assert_eq!(
        runs[1].argv,
        ["/bin/bash", "-o", "pipefail", "-c", "echo b"]
    );
    assert_eq!(runs[2].argv, ["exec", "form"]);
    assert_eq!(
        s.config.cmd,
        ["/bin/bash", "-o", "pipefail", "-c", "echo c"]
    );
    assert_eq!(s.config.shell, ["/bin/bash", "-o", "pipefail", "-c"]);
    assert!(
        s.history
            .iter()
            .any(|h| h.created_by == "SHELL [/bin/bash -o pipefail -c]")
    );
    let e = lower_with(
        "FROM scratch\nSHELL /bin/bash -c\n",
        &BuildOptions::default(),
        &FakeResolver::default(),
    );
    assert!(e.is_err(), "SHELL needs JSON");
}

// ---------------------------------------------------------------- HEALTHCHECK

#[test]
fn healthcheck_durations_none_and_errors() {
    let g = lower(
        "FROM scratch\nHEALTHCHECK --interval=30s --timeout=1m30s --retries=3 CMD curl -f http://localhost/\n",
    );
    let hc = target(&g).config.healthcheck.clone().expect("set");
    assert_eq!(hc.test, ["CMD-SHELL", "curl -f http://localhost/"]);
    assert_eq!(hc.interval, 30_000_000_000);
    assert_eq!(hc.timeout, 90_000_000_000);
    assert_eq!(hc.retries, 3);
    let json = serde_json::to_string(&target(&g).config).expect("json");
    assert!(json.contains("\"Interval\":30000000000"), "{json}");

    let g = lower("FROM scratch\nHEALTHCHECK CMD [\"/bin/check\", \"-q\"]\nHEALTHCHECK NONE\n");
    assert_eq!(
        target(&g).config.healthcheck.clone().expect("set").test,
        ["NONE"]
    );

    for bad in [
        "HEALTHCHECK --interval=10 CMD true",
        "HEALTHCHECK --timeout=soon CMD true",
        "HEALTHCHECK --interval=1us CMD true",
        "HEALTHCHECK --retries=many CMD true",
        "HEALTHCHECK CONNECT TCP 7000",
        "HEALTHCHECK NONE extra",
    ] {
        let text = format!("FROM scratch\n{bad}\n");
        let r = lower_with(&text, &BuildOptions::default(), &FakeResolver::default());
        let e = r.expect_err(bad);
        assert_eq!(e.line, 2, "{bad}: {e}");
    }
}

// ---------------------------------------------------------------- ENTRYPOINT / CMD

#[test]
fn entrypoint_resets_inherited_cmd_but_not_own() {
    let base = ImageConfig {
        cmd: vec!["bash".into()],
        ..Default::default()
    };
    let r = FakeResolver::with("base", base);
    let g = lower_with(
        "FROM base\nENTRYPOINT [\"/app\"]\n",
        &BuildOptions::default(),
        &r,
    )
    .expect("lowers");
    let c = &target(&g).config;
    assert_eq!(c.entrypoint, ["/app"]);
    assert!(c.cmd.is_empty(), "inherited CMD is reset");
    let g = lower_with(
        "FROM base\nCMD [\"--help\"]\nENTRYPOINT [\"/app\"]\n",
        &BuildOptions::default(),
        &r,
    )
    .expect("lowers");
    assert_eq!(target(&g).config.cmd, ["--help"], "own CMD is kept");
    let g = lower_with("FROM base\nLABEL a=b\n", &BuildOptions::default(), &r).expect("lowers");
    assert_eq!(target(&g).config.cmd, ["bash"]);
    let hist: Vec<&str> = target(&g)
        .history
        .iter()
        .map(|h| h.created_by.as_str())
        .collect();
    assert_eq!(hist, ["LABEL a=b"]);
}

#[test]
fn cmd_and_entrypoint_history_use_go_quoting() {
    let g = lower("FROM scratch\nCMD echo \"hi\"\nENTRYPOINT []\n");
    let hist: Vec<&str> = target(&g)
        .history
        .iter()
        .map(|h| h.created_by.as_str())
        .collect();
    assert_eq!(
        hist,
        [r#"CMD ["/bin/sh" "-c" "echo \"hi\""]"#, "ENTRYPOINT []"]
    );
}

// ---------------------------------------------------------------- WORKDIR

#[test]
fn absolute_workdir_is_kept_as_written_relative_ones_are_joined_and_cleaned() {
    // BuildKit's NormalizeWorkdir: an absolute path is not cleaned (so the
    // config, history and image id match Docker's); a relative one is
    // path.Join'ed onto the current directory. Paths still resolve against
    // the clean form.
    let g = lower("FROM scratch\nWORKDIR /usr/bin/app/\nCOPY a.txt .\nRUN pwd\n");
    let s = target(&g);
    assert_eq!(s.config.working_dir, "/usr/bin/app/");
    assert_eq!(s.history[0].created_by, "WORKDIR /usr/bin/app/");
    assert_eq!(files(s)[0].dest, "/usr/bin/app");
    assert_eq!(files(s)[1].dest, "/usr/bin/app/");
    assert_eq!(execs(s)[0].cwd, "/usr/bin/app");
    let g = lower("FROM scratch\nWORKDIR /a//b/../c/\nWORKDIR d/./e/\n");
    let s = target(&g);
    assert_eq!(s.history[0].created_by, "WORKDIR /a//b/../c/");
    assert_eq!(s.config.working_dir, "/a/c/d/e");
    assert_eq!(s.history[1].created_by, "WORKDIR /a/c/d/e");
}

#[test]
fn nul_byte_in_label_or_env_is_refused_at_its_line() {
    for (text, what) in [
        ("FROM scratch\nLABEL a=x\u{0}y\n", "LABEL \"a\""),
        ("FROM scratch\nENV b=x\u{0}y\n", "ENV \"b\""),
    ] {
        let err = lower_with(text, &BuildOptions::default(), &FakeResolver::default())
            .expect_err("a NUL byte is refused");
        assert_eq!(
            err.to_string(),
            format!(
                "Dockerfile:2:1: {what} contains a NUL byte\n  hint: remove the NUL byte from the Dockerfile"
            )
        );
    }
}

#[test]
fn workdir_chains_resolve_and_create_directories() {
    let g = lower(
        "FROM scratch\nUSER app\nWORKDIR /srv\nWORKDIR app\nENV SUB=..\nWORKDIR $SUB/data\nCOPY a.txt .\nCOPY b.txt rel/\nRUN pwd\n",
    );
    let s = target(&g);
    assert_eq!(s.config.working_dir, "/srv/data");
    let f = files(s);
    let mkdirs: Vec<&str> = f
        .iter()
        .filter(|f| f.kind == FileKind::Mkdir)
        .map(|f| f.dest.as_str())
        .collect();
    assert_eq!(mkdirs, ["/srv", "/srv/app", "/srv/data"]);
    assert_eq!(
        f[0].chown.as_deref(),
        Some("app"),
        "created for the current USER"
    );
    let copies: Vec<&str> = f
        .iter()
        .filter(|f| f.kind == FileKind::Copy)
        .map(|f| f.dest.as_str())
        .collect();
    assert_eq!(copies, ["/srv/data/", "/srv/data/rel/"]);
    let run = execs(s)[0];
    assert_eq!(run.cwd, "/srv/data");
    assert_eq!(run.user.as_deref(), Some("app"));
    assert!(
        s.history
            .iter()
            .any(|h| h.created_by == "WORKDIR /srv/data" && !h.empty_layer)
    );
}

// ---------------------------------------------------------------- RUN / COPY details

#[test]
fn run_mounts_network_and_history() {
    let g = lower(
        "FROM scratch AS src\nFROM scratch\nENV CACHE=/root/.cache\nRUN --mount=type=cache,target=$CACHE --mount=type=bind,from=src,source=/out,target=/in --network=none echo hi\n",
    );
    let s = target(&g);
    let run = execs(s)[0];
    assert_eq!(run.mounts.len(), 2);
    assert_eq!(run.mounts[0].target.as_deref(), Some("/root/.cache"));
    assert_eq!(run.mounts[0].id.as_deref(), Some("/root/.cache"));
    assert_eq!(run.mounts[1].from_stage, Some(0));
    assert_eq!(run.network, Some(frontend::NetworkMode::None));
    assert_eq!(s.deps, [0]);
    assert_eq!(s.steps[0].created_by, "RUN /bin/sh -c echo hi # buildkit");
    assert!(s.steps[0].original.starts_with("RUN --mount=type=cache"));
}

#[test]
fn heredocs_become_scripts_and_inline_files() {
    let g = lower(
        "FROM scratch\nARG NAME=world\nRUN <<EOF\necho one\nEOF\nRUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\nCOPY <<EOF /greeting\nhello $NAME\nEOF\nCOPY <<'EOF' /raw\nhello $NAME\nEOF\n",
    );
    let s = target(&g);
    let runs = execs(s);
    assert_eq!(runs[0].argv, ["/bin/sh", "-c", "echo one\n"]);
    assert_eq!(runs[1].argv, ["/dev/pipes/EOF"]);
    assert_eq!(
        runs[1].inline_files[0].content,
        "#!/usr/bin/env python3\nprint(1)\n"
    );
    let f = files(s);
    assert_eq!(f[0].inline[0].content, "hello world\n");
    assert_eq!(f[0].dest, "/greeting");
    assert_eq!(f[1].inline[0].content, "hello $NAME\n");
}

#[test]
fn copy_options_are_expanded_and_validated() {
    let g = lower(
        "FROM scratch\nARG U=1000\nCOPY --chown=$U:$U --chmod=0640 --link --exclude=*.tmp src/ /dst/\nADD --checksum=sha256:abc https://example.com/f.tgz /f.tgz\n",
    );
    let f = files(target(&g));
    assert_eq!(f[0].chown.as_deref(), Some("1000:1000"));
    assert_eq!(f[0].chmod_bits, Some(0o640));
    assert!(f[0].link);
    assert_eq!(f[0].exclude, ["*.tmp"]);
    assert_eq!(f[0].sources, ["src/"]);
    assert_eq!(f[1].kind, FileKind::Add);
    assert_eq!(f[1].checksum.as_deref(), Some("sha256:abc"));
    let e = lower_with(
        "FROM scratch\nCOPY onlyone\n",
        &BuildOptions::default(),
        &FakeResolver::default(),
    )
    .expect_err("one arg");
    assert!(e.message.contains("at least two arguments"), "{e}");
}

#[test]
fn env_label_volume_user_stopsignal_maintainer_config_and_history() {
    let g = lower(
        "FROM scratch\nMAINTAINER Jane <j@example.com>\nENV A=1 B=\"two words\"\nENV C $A-x\nLABEL \"com.x\"=\"y z\"\nVOLUME [\"/data\", \"/logs\"]\nUSER 1000:1000\nSTOPSIGNAL SIGTERM\n",
    );
    let s = target(&g);
    let c = &s.config;
    assert_eq!(s.author.as_deref(), Some("Jane <j@example.com>"));
    assert_eq!(c.env_get("B"), Some("two words"));
    assert_eq!(c.env_get("C"), Some("1-x"));
    assert_eq!(c.labels["com.x"], "y z");
    assert!(c.volumes.contains_key("/data") && c.volumes.contains_key("/logs"));
    assert_eq!(c.user, "1000:1000");
    assert_eq!(c.stop_signal, "SIGTERM");
    let hist: Vec<&str> = s.history.iter().map(|h| h.created_by.as_str()).collect();
    assert_eq!(
        hist,
        [
            "MAINTAINER Jane <j@example.com>",
            "ENV A=1 B=two words",
            "ENV C=1-x",
            "LABEL com.x=y z",
            "VOLUME [/data /logs]",
            "USER 1000:1000",
            "STOPSIGNAL SIGTERM",
        ]
    );
    assert!(
        s.history
            .iter()
            .all(|h| h.empty_layer && h.comment == "buildkit.dockerfile.v0")
    );
}

#[test]
fn expansion_errors_name_the_instruction() {
    let e = lower_with(
        "FROM scratch\nENV X=${MISSING:?\"custom error\"}\n",
        &BuildOptions::default(),
        &FakeResolver::default(),
    )
    .expect_err("mandatory var");
    assert!(e.message.contains("MISSING: custom error"), "{e}");
    assert_eq!((e.line, e.column), (2, 1));
}

#[test]
fn graph_serializes_to_json() {
    let g = lower("FROM scratch AS a\nRUN echo\nFROM a\nCOPY --from=a / /\n");
    let v = serde_json::to_value(&g).expect("serializes");
    assert_eq!(v["stages"][1]["base"]["type"], "stage");
    assert_eq!(v["stages"][1]["steps"][0]["op"]["type"], "file");
    assert_eq!(v["stages"][0]["steps"][0]["op"]["argv"][0], "/bin/sh");
}

#[test]
fn dot_has_clusters_and_edges_for_from_stage_and_copy_from() {
    let g = lower(
        "FROM scratch AS a\nRUN make\nFROM a AS b\nCOPY --from=a /x /y\nCOPY --from=alpine /etc/os-release /\n",
    );
    let dot = frontend::dot::render(&g);
    assert!(dot.starts_with("digraph build {"));
    assert!(dot.contains("subgraph cluster_0"));
    assert!(dot.contains("subgraph cluster_1"));
    assert!(dot.contains("s0_0 -> s1_base [style=bold"), "{dot}");
    assert!(dot.contains("s0_0 -> s1_0 [style=dashed"), "{dot}");
    assert!(
        dot.contains("image_0 [shape=ellipse, label=\"alpine\"]"),
        "{dot}"
    );
    assert!(dot.contains("image_0 -> s1_1"), "{dot}");
    assert!(dot.trim_end().ends_with('}'));
}

#[test]
fn full_history_and_definition_json() {
    let mut opts = BuildOptions::default();
    opts.build_args
        .insert("http_proxy".into(), "http://p".into());
    let g = lower_with(
        "FROM scratch AS a\nENV A=1\nFROM a AS b\nRUN echo\nFROM b\nLABEL c=d\n",
        &opts,
        &FakeResolver::default(),
    )
    .expect("lowers");
    let h: Vec<String> = g
        .full_history(2)
        .into_iter()
        .map(|h| h.created_by)
        .collect();
    assert_eq!(
        h,
        ["ENV A=1", "RUN /bin/sh -c echo # buildkit", "LABEL c=d"]
    );
    let step = &g.stage(1).expect("b").steps[0];
    let def = step.op.definition_json();
    assert!(
        def.contains("\"argv\":[\"/bin/sh\",\"-c\",\"echo\"]"),
        "{def}"
    );
    assert!(
        !def.contains("http://p"),
        "proxy values stay out of cache keys: {def}"
    );
    assert!(
        serde_json::to_string(&step.op)
            .expect("json")
            .contains("http://p")
    );
}

#[test]
fn lint_warnings_for_maintainer_and_shell_form_cmd() {
    let g = lower("FROM scratch\nMAINTAINER me\nCMD echo hi\nENTRYPOINT [\"/app\"]\n");
    let msgs: Vec<(usize, &str)> = g
        .warnings
        .iter()
        .map(|w| (w.line, w.message.as_str()))
        .collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert_eq!(msgs[0].0, 2);
    assert_eq!(
        msgs[0].1,
        "MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label"
    );
    assert_eq!(msgs[1].0, 3);
    assert_eq!(
        msgs[1].1,
        "JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals"
    );
    assert!(
        g.warnings
            .iter()
            .all(|w| w.severity == frontend::Severity::Warning)
    );
}

#[test]
fn long_stage_chains_lower_in_order() {
    let mut text = String::from("FROM scratch AS s0\n");
    for i in 1..2000 {
        text.push_str(&format!(
            "FROM s{} AS s{i}\nCOPY --from=s0 /a /a{i}\n",
            i - 1
        ));
    }
    let g = lower(&text);
    assert_eq!(g.stages.len(), 2000);
    assert_eq!(target(&g).id, 1999);
    assert!(g.stages.windows(2).all(|w| w[0].id < w[1].id));
}
