//! The Dockerfile rules users trip over, built with the real `strata` on the
//! peers busybox base and checked in the result as Docker defines them: the
//! raw config (from the docker-archive) and the final root filesystem (from
//! `--output type=tar`: paths, kinds, modes, owners, contents).
//!
//! Needs the `.ci/test.sh` environment (unprivileged user with subordinate
//! ids, the local registry with the peers base images), so every test is
//! ignored by default.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

fn base() -> String {
    let reg = std::env::var("STRATA_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into());
    format!("{reg}/library/busybox:latest")
}

/// One file of the final root filesystem.
#[derive(Debug, Clone)]
struct Node {
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    link: Option<String>,
    content: Vec<u8>,
}

struct Built {
    config: serde_json::Value,
    fs: BTreeMap<String, Node>,
}

struct Case {
    _dir: tempfile::TempDir,
    ctx: PathBuf,
    root: PathBuf,
}

impl Case {
    /// A context holding `files` (path → content) and a Dockerfile.
    fn new(dockerfile: &str, files: &[(&str, &str)]) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("Dockerfile"), dockerfile.replace("BASE", &base())).unwrap();
        for (p, c) in files {
            let f = ctx.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, c).unwrap();
        }
        let root = dir.path().join("root");
        Case {
            _dir: dir,
            ctx,
            root,
        }
    }

    fn strata(&self) -> Command {
        let mut c = Command::new(STRATA);
        c.arg("--root").arg(&self.root);
        c
    }

    /// Builds; `Err(stderr)` when the build fails.
    fn try_build(&self, args: &[&str]) -> Result<Built, String> {
        let img = self.ctx.parent().unwrap().join("img.tar");
        let fs = self.ctx.parent().unwrap().join("fs.tar");
        let _ = std::fs::remove_file(&img);
        let _ = std::fs::remove_file(&fs);
        let out = self
            .strata()
            .args(["build", "--progress", "plain"])
            .args(args)
            .arg("-o")
            .arg(format!("type=docker,dest={}", img.display()))
            .arg("-o")
            .arg(format!("type=tar,dest={}", fs.display()))
            .arg(&self.ctx)
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Built {
            config: config_of(&img),
            fs: listing(&fs),
        })
    }

    fn build(&self, args: &[&str]) -> Built {
        self.try_build(args)
            .unwrap_or_else(|e| panic!("build failed:\n{e}"))
    }

    /// Builds with no output and returns the plain progress log; the build
    /// must succeed.
    fn build_log(&self) -> String {
        let out = self
            .strata()
            .args(["build", "--progress", "plain"])
            .arg(&self.ctx)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{log}");
        log
    }
}

fn config_of(archive: &Path) -> serde_json::Value {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut a = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        let mut b = Vec::new();
        e.read_to_end(&mut b).unwrap();
        files.insert(p, b);
    }
    let m: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    serde_json::from_slice(&files[m[0]["Config"].as_str().unwrap()]).unwrap()
}

fn listing(fs: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(std::fs::File::open(fs).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let p = format!(
            "/{}",
            e.path()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("./")
                .trim_end_matches('/')
        );
        let mut content = Vec::new();
        if h.entry_type() == tar::EntryType::Regular {
            e.read_to_end(&mut content).unwrap();
        }
        out.insert(
            p,
            Node {
                kind: h.entry_type(),
                mode: h.mode().unwrap() & 0o7777,
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                link: e
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned()),
                content,
            },
        );
    }
    out
}

impl Built {
    fn file(&self, p: &str) -> &Node {
        self.fs
            .get(p)
            .unwrap_or_else(|| panic!("{p} is missing from the image"))
    }
    fn text(&self, p: &str) -> String {
        String::from_utf8_lossy(&self.file(p).content).into_owned()
    }
    fn env(&self) -> Vec<String> {
        self.config["config"]["Env"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    }
}

#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn arg_scoping_across_from_and_env_over_arg() {
    let c = Case::new(
        "ARG V=global\nARG NOT_REDECLARED=x\nFROM BASE\nARG V\nENV E=$V N=${NOT_REDECLARED:-unset}\n\
         ARG W=from-arg\nENV W=from-env\nRUN echo \"$W $V\" > /w.txt\n",
        &[],
    );
    let b = c.build(&[]);
    let env = b.env();
    assert!(env.contains(&"E=global".to_string()), "{env:?}");
    assert!(env.contains(&"N=unset".to_string()), "{env:?}");
    assert_eq!(b.text("/w.txt"), "from-env global\n");
    // A --build-arg overrides the default.
    let b = c.build(&["--build-arg", "V=cli"]);
    assert!(b.env().contains(&"E=cli".to_string()));
}

#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn workdir_chains_entrypoint_resets_cmd_shell_healthcheck_expose() {
    let c = Case::new(
        "FROM BASE\nWORKDIR /a\nWORKDIR b\nWORKDIR ../c\nENTRYPOINT [\"/bin/echo\"]\n\
         SHELL [\"/bin/sh\", \"-e\", \"-c\"]\nHEALTHCHECK --interval=5s CMD true\nEXPOSE 8000-8002/tcp 53/udp\n\
         STOPSIGNAL SIGINT\nRUN pwd > here.txt\n",
        &[],
    );
    let b = c.build(&[]);
    let cfg = &b.config["config"];
    assert_eq!(cfg["WorkingDir"], "/a/c");
    assert!(
        cfg["Cmd"].is_null(),
        "ENTRYPOINT resets the base's CMD: {cfg}"
    );
    assert_eq!(cfg["Shell"], serde_json::json!(["/bin/sh", "-e", "-c"]));
    assert_eq!(cfg["Healthcheck"]["Interval"], 5_000_000_000i64);
    assert_eq!(cfg["StopSignal"], "SIGINT");
    for p in ["8000/tcp", "8001/tcp", "8002/tcp", "53/udp"] {
        assert!(cfg["ExposedPorts"].get(p).is_some(), "{p} missing: {cfg}");
    }
    assert_eq!(b.text("/a/c/here.txt"), "/a/c\n");
    assert_eq!(b.file("/a/b").kind, tar::EntryType::Directory);
}

#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn user_by_name_owns_what_it_creates() {
    let c = Case::new(
        "FROM BASE\nRUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' >> /etc/group \
         && mkdir -p /home/app && chown app:app /home/app\nUSER app\nRUN touch /home/app/mine\n\
         COPY --chown=app:app owned.txt /home/app/\nCOPY --chmod=0600 --chown=1001:1002 owned.txt /secret\n",
        &[("owned.txt", "x")],
    );
    let b = c.build(&[]);
    let mine = b.file("/home/app/mine");
    assert_eq!((mine.uid, mine.gid), (1000, 1000));
    let owned = b.file("/home/app/owned.txt");
    assert_eq!((owned.uid, owned.gid, owned.mode), (1000, 1000, 0o644));
    let s = b.file("/secret");
    assert_eq!((s.uid, s.gid, s.mode), (1001, 1002, 0o600));
    assert_eq!(b.config["config"]["User"], "app");
}

#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn copy_directories_wildcards_and_trailing_slashes() {
    let c = Case::new(
        "FROM BASE\nCOPY dir /d1\nCOPY dir/ /d2/\nCOPY x*.txt /xs/\nCOPY x1.txt /renamed\nCOPY x1.txt /into/\n",
        &[
            ("dir/a.txt", "a"),
            ("dir/sub/b.txt", "b"),
            ("x1.txt", "1"),
            ("x2.txt", "2"),
        ],
    );
    let b = c.build(&[]);
    for p in [
        "/d1/a.txt",
        "/d1/sub/b.txt",
        "/d2/a.txt",
        "/xs/x1.txt",
        "/xs/x2.txt",
        "/into/x1.txt",
    ] {
        b.file(p);
    }
    assert!(
        !b.fs.contains_key("/d1/dir"),
        "a directory source copies its contents"
    );
    assert_eq!(b.text("/renamed"), "1");
    assert_eq!(b.file("/renamed").mode, 0o644);
}

/// Destinations are looked up in the image below the step, as Docker
/// does: through its symlinks (absolute and relative, never out of the
/// root), into an existing directory even without a trailing `/`, with the
/// missing parents created (0755, the `--chown` owner); WORKDIR creates only
/// what is missing and leaves existing directories' owners alone.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn destinations_resolve_through_the_images_symlinks_and_directories() {
    let c = Case::new(
        "FROM BASE
RUN ln -s /usr /lnk && ln -s usr/local /loc && mkdir -p /usr/local
         COPY f /bin
COPY f /lnk/f2
COPY f /loc/
COPY --chown=5:6 f /new/deep/f3
         COPY --from=BASE /bin/true /lnk/x/true
USER 1000
WORKDIR /usr/src/app
         WORKDIR /lnk/wd
",
        &[("f", "hi")],
    );
    let b = c.build(&[]);
    assert_eq!(
        b.file("/bin").kind,
        tar::EntryType::Directory,
        "/bin replaced"
    );
    b.file("/bin/busybox");
    assert_eq!(b.text("/bin/f"), "hi");
    assert_eq!(b.file("/lnk").kind, tar::EntryType::Symlink);
    assert_eq!(b.file("/loc").kind, tar::EntryType::Symlink);
    assert_eq!(b.text("/usr/f2"), "hi");
    assert_eq!(b.text("/usr/local/f"), "hi");
    b.file("/usr/x/true");
    for (dir, owner) in [("/new", 5), ("/new/deep", 5), ("/usr/x", 0)] {
        let n = b.file(dir);
        assert_eq!(
            (n.kind, n.mode, n.uid),
            (tar::EntryType::Directory, 0o755, owner),
            "{dir}"
        );
    }
    assert_eq!(
        b.file("/usr").uid,
        0,
        "WORKDIR changed an existing directory"
    );
    for dir in ["/usr/src", "/usr/src/app", "/usr/wd"] {
        assert_eq!(b.file(dir).uid, 1000, "{dir}");
    }
}

/// A RUN heredoc with a `#!` line runs as the script `/dev/pipes/<name>`
/// (BuildKit's place), for any USER, and leaves nothing of it in the image.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn run_heredoc_scripts_with_an_interpreter_line() {
    let c = Case::new(
        "FROM BASE
RUN <<EOF
#!/bin/sh
echo \"hi from $0\" > /from-heredoc
EOF
         USER 1000
RUN <<EOF
#!/bin/sh
id -u > /tmp/as-user
EOF
",
        &[],
    );
    let b = c.build(&[]);
    assert_eq!(b.text("/from-heredoc"), "hi from /dev/pipes/EOF\n");
    assert_eq!(b.text("/tmp/as-user"), "1000\n");
    assert!(!b.fs.keys().any(|k| k.starts_with("/dev/pipes")));
}

#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn dockerignore_exceptions() {
    let c = Case::new(
        "FROM BASE\nCOPY . /c/\n",
        &[
            (".dockerignore", "*.log\n!keep.log\nsecret/\n"),
            ("keep.log", "k"),
            ("drop.log", "d"),
            ("secret/key", "s"),
            ("app.txt", "a"),
        ],
    );
    let b = c.build(&[]);
    b.file("/c/keep.log");
    b.file("/c/app.txt");
    assert!(!b.fs.contains_key("/c/drop.log"));
    assert!(!b.fs.keys().any(|k| k.starts_with("/c/secret")));
    // A lone '!' is an error.
    std::fs::write(c.ctx.join(".dockerignore"), "!\n").unwrap();
    let err = c
        .try_build(&[])
        .err()
        .expect("a lone ! must fail the build");
    assert!(err.contains(".dockerignore"), "{err}");
}

#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn add_unpacks_local_tars() {
    let c = Case::new("FROM BASE\nADD a.tar.gz /t/\nCOPY a.tar.gz /kept/\n", &[]);
    let f = std::fs::File::create(c.ctx.join("a.tar.gz")).unwrap();
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    let mut t = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o640);
    h.set_uid(7);
    h.set_gid(8);
    h.set_cksum();
    t.append_data(&mut h, "inner/hello.txt", &b"hello"[..])
        .unwrap();
    t.into_inner().unwrap().finish().unwrap();
    let b = c.build(&[]);
    let n = b.file("/t/inner/hello.txt");
    assert_eq!((n.mode, n.uid, n.gid), (0o640, 7, 8));
    assert_eq!(b.text("/t/inner/hello.txt"), "hello");
    b.file("/kept/a.tar.gz");
}

#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn copy_from_by_name_index_and_image_and_target_skips_broken_stages() {
    let c = Case::new(
        "FROM BASE\nRUN echo zero > /z\n\nFROM BASE AS named\nRUN echo named > /n && chmod 4755 /n\n\n\
         FROM BASE AS broken\nRUN false\n\nFROM scratch AS final\nCOPY --from=0 /z /z\nCOPY --from=named /n /n\n\
         COPY --from=BASE /bin/busybox /busybox\n",
        &[],
    );
    let b = c.build(&["--target", "final"]);
    assert_eq!(b.text("/z"), "zero\n");
    assert_eq!(b.file("/n").mode, 0o4755, "setuid bits survive COPY --from");
    b.file("/busybox");
}

#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn whiteouts_symlinks_hardlinks_setuid() {
    let c = Case::new(
        "FROM BASE\nRUN mkdir -p /w/d && echo a > /w/f && echo h > /w/h1 && ln /w/h1 /w/h2 && ln -s /w/f /w/l \
         && touch /w/s && chmod 4755 /w/s && rm /bin/vi\nRUN rm /w/f && rm -rf /w/d && echo new > /w/f2\n",
        &[],
    );
    let b = c.build(&[]);
    assert!(
        !b.fs.contains_key("/w/f") && !b.fs.contains_key("/w/d") && !b.fs.contains_key("/bin/vi")
    );
    assert_eq!(b.file("/w/l").kind, tar::EntryType::Symlink);
    assert_eq!(b.file("/w/l").link.as_deref(), Some("/w/f"));
    assert_eq!(b.file("/w/s").mode, 0o4755);
    let h2 = b.file("/w/h2");
    assert!(
        h2.kind == tar::EntryType::Link || b.text("/w/h2") == "h\n",
        "{h2:?}"
    );
}

#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn failing_run_names_its_step_and_output() {
    let c = Case::new(
        "FROM BASE\nRUN echo fine\nRUN echo first-line && echo before-the-end && exit 3\nRUN echo never\n",
        &[],
    );
    let err = c.try_build(&[]).err().expect("the build must fail");
    assert!(
        err.contains("Dockerfile:3"),
        "the error names the line: {err}"
    );
    assert!(
        err.contains("  first-line\n  before-the-end\n"),
        "the error shows the last output, line by line: {err}"
    );
    assert!(
        !err.contains("#4 [3/3]") || !err.contains("never\n"),
        "{err}"
    );
}

#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn onbuild_runs_in_the_child_not_the_grandchild() {
    let c = Case::new(
        "FROM BASE\nONBUILD RUN echo triggered >> /onbuild.txt\n",
        &[],
    );
    c.build(&["-t", "sem/parent:1"]);
    std::fs::write(c.ctx.join("Dockerfile"), "FROM sem/parent:1\nRUN true\n").unwrap();
    let child = c.build(&["-t", "sem/child:1"]);
    assert_eq!(child.text("/onbuild.txt"), "triggered\n");
    assert!(
        child.config["config"]["OnBuild"]
            .as_array()
            .is_none_or(|a| a.is_empty())
    );
    std::fs::write(c.ctx.join("Dockerfile"), "FROM sem/child:1\nRUN true\n").unwrap();
    let grandchild = c.build(&[]);
    assert_eq!(
        grandchild.text("/onbuild.txt"),
        "triggered\n",
        "triggers run once, in the child only"
    );
}

#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn run_mounts_cache_secret_tmpfs_bind_leave_no_trace() {
    let c = Case::new(
        "FROM BASE\nRUN --mount=type=cache,target=/cache echo run >> /cache/runs && cat /cache/runs | wc -l > /count\n\
         RUN --mount=type=secret,id=tok,required=true cat /run/secrets/tok > /seen-secret\n\
         RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && test -e /scratch/x\n\
         RUN --mount=type=bind,source=ctx.txt,target=/ctx.txt cp /ctx.txt /copied\n",
        &[("ctx.txt", "from the context"), ("tok.txt", "s3cret")],
    );
    let tok = c.ctx.join("tok.txt");
    let b = c.build(&["--secret", &format!("id=tok,src={}", tok.display())]);
    assert_eq!(b.text("/count").trim(), "1");
    assert_eq!(b.text("/seen-secret"), "s3cret");
    assert_eq!(b.text("/copied"), "from the context");
    for p in ["/cache/runs", "/run/secrets/tok", "/scratch/x", "/ctx.txt"] {
        assert!(!b.fs.contains_key(p), "{p} must not reach the image");
    }
    // The cache mount persists between builds of the same store.
    let b = c.build(&[
        "--no-cache",
        "--secret",
        &format!("id=tok,src={}", tok.display()),
    ]);
    assert_eq!(b.text("/count").trim(), "2");
}

#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn named_build_contexts_dir_and_image() {
    let c = Case::new(
        "FROM base-alias\nCOPY --from=extra data.txt /data.txt\n",
        &[],
    );
    let extra = c.ctx.parent().unwrap().join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(extra.join("data.txt"), "named").unwrap();
    let b = c.build(&[
        "--build-context",
        &format!("extra={}", extra.display()),
        "--build-context",
        &format!("base-alias=docker-image://{}", base()),
    ]);
    assert_eq!(b.text("/data.txt"), "named");
    b.file("/bin/busybox");
}

#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn bases_from_docker_archives_and_oci_layouts_offline() {
    let images =
        std::env::var("STRATA_TEST_IMAGES").unwrap_or_else(|_| "/var/tmp/peers-images".into());
    let c = Case::new(
        &format!(
            "FROM docker-archive:{images}/busybox-latest.docker.tar\nRUN echo offline > /o\nFROM layout-base\nCOPY --from=0 /o /o\n"
        ),
        &[],
    );
    let b = c.build(&[
        "--build-context",
        &format!("layout-base=oci-layout://{images}/oci/busybox:latest"),
    ]);
    assert_eq!(b.text("/o"), "offline\n");
    b.file("/bin/busybox");
}

#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn a_failure_cancels_parallel_steps_and_names_itself() {
    let c = Case::new(
        "FROM BASE AS slow\nRUN sleep 60\nFROM BASE AS bad\nRUN sleep 1 && echo going-down && exit 7\n\
         FROM scratch\nCOPY --from=slow /bin/busybox /a\nCOPY --from=bad /bin/busybox /b\n",
        &[],
    );
    let t0 = std::time::Instant::now();
    let err = c
        .try_build(&["--jobs", "2"])
        .err()
        .expect("the build must fail");
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(40),
        "the sleeping sibling was not stopped"
    );
    assert!(err.contains("Dockerfile:4"), "{err}");
    assert!(err.contains("going-down"), "{err}");
}

#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn run_mounts_from_a_stage_and_an_image() {
    let c = Case::new(
        "FROM BASE AS build\nRUN mkdir /out && echo built > /out/x\n\
         FROM BASE\nRUN --mount=type=bind,from=build,source=/out,target=/in cp /in/x /x\n\
         RUN --mount=type=bind,from=BASE,target=/img test -x /img/bin/busybox && echo ok > /img-ok\n",
        &[],
    );
    let b = c.build(&[]);
    assert_eq!(b.text("/x"), "built\n");
    assert_eq!(b.text("/img-ok"), "ok\n");
    assert!(!b.fs.contains_key("/in/x") && !b.fs.keys().any(|k| k.starts_with("/img/")));
}

/// COPY keeps the context's modes exactly, as Docker does (0777 stays
/// 0777); `--chmod` takes octal and symbolic modes, `X` only marking
/// directories and files someone may already execute.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn copy_keeps_modes_and_chmod_takes_symbolic_modes() {
    use std::os::unix::fs::PermissionsExt as _;
    let c = Case::new(
        "FROM BASE\nCOPY run.sh ro.txt /m/\nCOPY --chmod=u+x,go-r ro.txt /ro2\n\
         COPY --chmod=a+X d /dd/\nCOPY --chmod=0750 run.sh /oct\n",
        &[
            ("run.sh", "#!/bin/sh\n"),
            ("ro.txt", "r"),
            ("d/sub/f.txt", "f"),
        ],
    );
    let set = |p: &str, m: u32| {
        std::fs::set_permissions(c.ctx.join(p), std::fs::Permissions::from_mode(m)).unwrap()
    };
    set("run.sh", 0o777);
    set("ro.txt", 0o640);
    set("d/sub", 0o700);
    set("d/sub/f.txt", 0o600);
    let b = c.build(&[]);
    assert_eq!(b.file("/m/run.sh").mode, 0o777);
    assert_eq!(b.file("/m/ro.txt").mode, 0o640);
    assert_eq!(b.file("/ro2").mode, 0o700);
    assert_eq!(b.file("/dd/sub").mode, 0o711);
    assert_eq!(b.file("/dd/sub/f.txt").mode, 0o600);
    assert_eq!(b.file("/oct").mode, 0o750);
    // A mode that is not one fails the build and names the flag.
    std::fs::write(
        c.ctx.join("Dockerfile"),
        format!("FROM {}\nCOPY --chmod=u+q ro.txt /x\n", base()),
    )
    .unwrap();
    let err = c.try_build(&[]).err().expect("u+q is not a mode");
    assert!(err.contains("Dockerfile:2") && err.contains("u+q"), "{err}");
}

/// ADD unpacks bzip2 and xz tars by content, into `dest` itself when there
/// is no trailing slash, and copies a compressed file that is not a tar as
/// it is; a tar inside an ADDed directory is not unpacked.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn add_unpacks_bzip2_and_xz_and_copies_other_files() {
    use std::io::Write as _;
    let c = Case::new(
        "FROM BASE\nADD a.tar.bz2 /bz/\nADD a.txz /xz\nADD notes.bz2 /n/\nADD dir /d/\n",
        &[],
    );
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o600);
    h.set_cksum();
    tar.append_data(&mut h, "in/hello.txt", &b"hello"[..])
        .unwrap();
    let tar = tar.into_inner().unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(&tar).unwrap();
    std::fs::write(c.ctx.join("a.tar.bz2"), bz.finish().unwrap()).unwrap();
    let mut xz = Vec::new();
    lzma_rs::xz_compress(&mut std::io::Cursor::new(&tar), &mut xz).unwrap();
    std::fs::write(c.ctx.join("a.txz"), &xz).unwrap();
    let mut notes = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    notes.write_all(b"not a tar").unwrap();
    let notes = notes.finish().unwrap();
    std::fs::write(c.ctx.join("notes.bz2"), &notes).unwrap();
    std::fs::create_dir_all(c.ctx.join("dir")).unwrap();
    std::fs::write(c.ctx.join("dir/inner.tar"), &tar).unwrap();
    let b = c.build(&[]);
    assert_eq!(b.text("/bz/in/hello.txt"), "hello");
    assert_eq!(b.file("/bz/in/hello.txt").mode, 0o600);
    assert_eq!(b.text("/xz/in/hello.txt"), "hello");
    assert_eq!(b.file("/n/notes.bz2").content, notes);
    assert_eq!(b.file("/d/inner.tar").content, tar);
}

/// Serves `repo` (a work tree) on a loopback [`FileServer`] as a bare
/// repository over git's dumb HTTP protocol; its URL (`…/repo.git`). ADD
/// clones network remotes only, never a host path.
fn serve_over_dumb_http(repo: &Path) -> String {
    let bare = repo.with_extension("bare");
    git_in(
        repo,
        &["clone", "--quiet", "--bare", ".", bare.to_str().unwrap()],
    );
    git_in(&bare, &["update-server-info"]);
    let srv = FileServer::start();
    for e in walkdir::WalkDir::new(&bare) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let rel = e
                .path()
                .strip_prefix(&bare)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            srv.put(
                &format!("/repo.git/{rel}"),
                &std::fs::read(e.path()).unwrap(),
            );
        }
    }
    // The server's thread keeps serving after `srv` is dropped.
    format!("http://{}/repo.git", srv.addr)
}

/// A tiny HTTP server on loopback for `ADD <url>`: serves the files in its
/// map (changeable while it runs), 404 for anything else.
struct FileServer {
    addr: String,
    files: std::sync::Arc<std::sync::Mutex<BTreeMap<String, Vec<u8>>>>,
    /// How many times each path was asked for.
    requests: std::sync::Arc<std::sync::Mutex<BTreeMap<String, usize>>>,
}

impl FileServer {
    fn start() -> FileServer {
        use std::io::{BufRead as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let files = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::<String, Vec<u8>>::new()));
        let served = files.clone();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::new()));
        let counted = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                // Like a static file server, the query is ignored (git's
                // smart-HTTP probe then falls back to the dumb protocol).
                let target = line.split_whitespace().nth(1).unwrap_or("");
                let path = target.split('?').next().unwrap_or("").to_string();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                *counted.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                let body = served.lock().unwrap().get(&path).cloned();
                let _ = match body {
                    Some(b) => conn
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                b.len()
                            )
                            .as_bytes(),
                        )
                        .and_then(|_| conn.write_all(&b)),
                    None => conn.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    ),
                };
            }
        });
        FileServer {
            addr,
            files,
            requests,
        }
    }

    /// How many requests asked for `path` so far.
    fn requests_for(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    fn put(&self, path: &str, body: &[u8]) {
        self.files
            .lock()
            .unwrap()
            .insert(path.to_string(), body.to_vec());
    }
}

/// `ADD <url>`: named after the URL, mode 0600, a tar not unpacked,
/// `--checksum` enforced, `--unpack=true` honoured; an unchanged download
/// is a cache hit and a changed one re-runs the step.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn add_from_a_url() {
    let srv = FileServer::start();
    srv.put("/dl/hello.txt", b"hello from http\n");
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "in.txt", &b"in"[..]).unwrap();
    let tar = tar.into_inner().unwrap();
    srv.put("/dl/a.tar", &tar);
    let sum = {
        let out = Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                c.stdin.take().unwrap().write_all(b"hello from http\n")?;
                c.wait_with_output()
            })
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let a = &srv.addr;
    let c = Case::new(
        &format!(
            "FROM BASE\nADD http://{a}/dl/hello.txt /h/\nADD --checksum=sha256:{sum} http://{a}/dl/hello.txt /checked\n\
             ADD http://{a}/dl/a.tar /t/\nADD --unpack=true http://{a}/dl/a.tar /u/\nADD http://{a}/dl/hello.txt /tmp\n"
        ),
        &[],
    );
    let b = c.build(&[]);
    assert_eq!(b.text("/h/hello.txt"), "hello from http\n");
    assert_eq!(b.file("/h/hello.txt").mode, 0o600);
    assert_eq!(b.text("/checked"), "hello from http\n");
    assert_eq!(b.file("/t/a.tar").content, tar);
    assert_eq!(b.text("/u/in.txt"), "in");
    // An existing directory of the image is copied into.
    assert_eq!(b.text("/tmp/hello.txt"), "hello from http\n");

    // Unchanged: every step cached. Changed: the steps that fetch it re-run
    // and the checksum no longer matches.
    let log = c.build_log();
    assert_eq!(log.matches("CACHED").count(), 5, "{log}");
    srv.put("/dl/hello.txt", b"changed\n");
    let err = c.try_build(&[]).err().expect("the checksum must fail");
    assert!(
        err.contains("--checksum") && err.contains("Dockerfile:3"),
        "{err}"
    );

    // A missing file names the URL and the status.
    std::fs::write(
        c.ctx.join("Dockerfile"),
        format!("FROM {}\nADD http://{a}/nope /x\n", base()),
    )
    .unwrap();
    let err = c.try_build(&[]).err().expect("a 404 must fail");
    assert!(err.contains("/nope") && err.contains("404"), "{err}");
}

/// The same URL added in two stages is one source vertex: downloaded once
/// per build, and both steps are keyed by what was downloaded (an
/// unchanged file: both cached, after one download).
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn a_url_added_in_two_stages_is_downloaded_once() {
    let srv = FileServer::start();
    srv.put("/dl/once.txt", b"once\n");
    let a = &srv.addr;
    let c = Case::new(
        &format!(
            "FROM BASE AS first\nADD http://{a}/dl/once.txt /one\n\
             FROM BASE\nADD http://{a}/dl/once.txt /two/\nCOPY --from=first /one /one\n"
        ),
        &[],
    );
    let b = c.build(&[]);
    assert_eq!(b.text("/one"), "once\n");
    assert_eq!(b.text("/two/once.txt"), "once\n");
    assert_eq!(srv.requests_for("/dl/once.txt"), 1, "downloaded once");

    let log = c.build_log();
    assert_eq!(log.matches("CACHED").count(), 3, "{log}");
    assert_eq!(srv.requests_for("/dl/once.txt"), 2, "once more per build");

    // Changed: both steps read the new content, and say the URL changed.
    srv.put("/dl/once.txt", b"twice\n");
    let out = c
        .strata()
        .args(["build", "--progress", "plain", "--explain-cache"])
        .arg(&c.ctx)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let changed = format!("url http://{a}/dl/once.txt changed");
    assert_eq!(log.matches(&changed).count(), 2, "{log}");
    assert!(
        log.lines()
            .filter(|l| l.contains(&changed))
            .all(|l| !l.contains("earlier step")),
        "the URL, not an earlier step: {log}"
    );
    let b = c.build(&[]);
    assert_eq!(b.text("/one"), "twice\n");
    assert_eq!(b.text("/two/once.txt"), "twice\n");
    assert_eq!(srv.requests_for("/dl/once.txt"), 4);
}

/// `FROM name` with `--build-context name=DIR`: the directory is the root
/// filesystem (files the user owns become root's), and a stage can build on
/// it with COPY; an unchanged directory keeps the next steps cached.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn from_a_named_context_directory() {
    let c = Case::new(
        "FROM rootfs\nCOPY extra.txt /extra.txt\n",
        &[("extra.txt", "e")],
    );
    let rootfs = c.ctx.parent().unwrap().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/os-release"), "ID=tiny\n").unwrap();
    let flag = format!("rootfs={}", rootfs.display());
    let b = c.build(&["--build-context", &flag]);
    assert_eq!(b.text("/etc/os-release"), "ID=tiny\n");
    let f = b.file("/etc/os-release");
    assert_eq!((f.uid, f.gid), (0, 0));
    assert_eq!(b.text("/extra.txt"), "e");
    let out = c
        .strata()
        .args(["build", "--progress", "plain", "--build-context", &flag])
        .arg(&c.ctx)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(log.matches("CACHED").count(), 1, "{log}");
}

/// A RUN bind mount of the context shows it as BuildKit sends it: without
/// what `.dockerignore` excludes.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn run_bind_mount_of_the_context_honours_dockerignore() {
    let c = Case::new(
        "FROM BASE\nRUN --mount=type=bind,target=/ctx ls -a /ctx | sort > /listing && cat /ctx/d/in.txt > /in\n",
        &[
            (".dockerignore", "secret.txt\n*.log\n"),
            ("secret.txt", "s"),
            ("build.log", "l"),
            ("app.txt", "a"),
            ("d/in.txt", "inside"),
        ],
    );
    let b = c.build(&[]);
    let listing = b.text("/listing");
    assert!(
        listing.contains("app.txt") && listing.contains("Dockerfile"),
        "{listing}"
    );
    assert!(
        !listing.contains("secret.txt") && !listing.contains("build.log"),
        "{listing}"
    );
    assert_eq!(b.text("/in"), "inside");
}

/// `strata build -` reads the context from standard input as `docker build
/// -` does: a (compressed) tar of the context, or a lone Dockerfile with an
/// empty context.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn context_from_standard_input() {
    use std::io::Write as _;
    let c = Case::new(
        "FROM BASE\nCOPY f.txt /f.txt\n",
        &[("f.txt", "from the tar")],
    );
    let tgz = c.ctx.parent().unwrap().join("ctx.tgz");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&c.ctx)
        .arg("-czf")
        .arg(&tgz)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let fs = c.ctx.parent().unwrap().join("stdin-fs.tar");
    let out = c
        .strata()
        .args(["build", "--progress", "plain", "-o"])
        .arg(format!("type=tar,dest={}", fs.display()))
        .arg("-")
        .stdin(std::fs::File::open(&tgz).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(listing(&fs)["/f.txt"].content, b"from the tar");

    let mut child = c
        .strata()
        .args(["build", "--progress", "plain", "-o"])
        .arg(format!("type=tar,dest={}", fs.display()))
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("FROM {}\nRUN echo piped > /p\n", base()).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(listing(&fs)["/p"].content, b"piped\n");
}

/// Several sources need a directory destination: an existing directory of
/// the image counts without a trailing `/` (as in Docker); a path that is
/// no directory fails and says to add the `/`.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn several_sources_into_an_existing_directory_without_a_slash() {
    let c = Case::new(
        "FROM BASE\nCOPY a.txt b.txt /etc\nCOPY *.txt /tmp\n",
        &[("a.txt", "a"), ("b.txt", "b")],
    );
    let b = c.build(&[]);
    assert_eq!(b.text("/etc/a.txt"), "a");
    assert_eq!(b.text("/etc/b.txt"), "b");
    assert_eq!(b.text("/tmp/b.txt"), "b");
    std::fs::write(
        c.ctx.join("Dockerfile"),
        format!("FROM {}\nCOPY a.txt b.txt /nodir\n", base()),
    )
    .unwrap();
    let err = c.try_build(&[]).err().expect("/nodir is no directory");
    assert!(
        err.contains("/nodir/") && err.contains("Dockerfile:2"),
        "{err}"
    );
}

/// `git ARGS` in `dir` with a test identity, failing the test with git's
/// words.
fn git_in(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.email=t@t", "-c", "user.name=t"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A work tree at `repo` whose tag `v1` has `sub/a.txt` = "one" (and an
/// executable `run.sh`) and whose head has "two".
fn two_commit_repo(repo: &Path) {
    std::fs::create_dir_all(repo.join("sub")).unwrap();
    git_in(repo, &["init", "--quiet"]);
    std::fs::write(repo.join("sub/a.txt"), "one").unwrap();
    std::fs::write(repo.join("run.sh"), "#!/bin/sh\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(repo.join("run.sh"), std::fs::Permissions::from_mode(0o775))
            .unwrap();
    }
    git_in(repo, &["add", "."]);
    git_in(repo, &["commit", "--quiet", "-m", "one"]);
    git_in(repo, &["tag", "v1"]);
    std::fs::write(repo.join("sub/a.txt"), "two").unwrap();
    git_in(repo, &["commit", "--quiet", "-am", "two"]);
}

/// COPY of a named pipe, from the context or from a stage, makes a named
/// pipe with the source's mode, as Docker does (it used to be refused).
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn fifos_are_copied_as_fifos() {
    let c = Case::new(
        "FROM BASE AS s\nRUN mkfifo -m 600 /made\n\
         FROM scratch\nCOPY pipe /from-context\nCOPY --from=s /made /from-stage\n",
        &[],
    );
    let made = Command::new("mkfifo")
        .args(["-m", "640"])
        .arg(c.ctx.join("pipe"))
        .status()
        .unwrap();
    assert!(made.success());
    let b = c.build(&[]);
    let from_context = b.file("/from-context");
    assert_eq!(
        (from_context.kind, from_context.mode),
        (tar::EntryType::Fifo, 0o640)
    );
    let from_stage = b.file("/from-stage");
    assert_eq!(
        (from_stage.kind, from_stage.mode),
        (tar::EntryType::Fifo, 0o600)
    );
}

/// `ADD <git repository>`: the tree at a tag (or the default branch) copied
/// into the destination directory, a `:subdir` fragment, git's modes, no
/// `.git` unless `--keep-git-dir=true`.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn add_from_a_git_repository() {
    let c = Case::new("FROM BASE\n", &[]);
    let repo = c.ctx.parent().unwrap().join("src.git");
    two_commit_repo(&repo);
    let url = serve_over_dumb_http(&repo);
    std::fs::write(
        c.ctx.join("Dockerfile"),
        format!(
            "FROM {}\nADD {url}#v1 /src\nADD {url}#v1:sub /sub/\nADD --keep-git-dir=true {url} /withgit\n",
            base()
        ),
    )
    .unwrap();
    let b = c.build(&[]);
    assert_eq!(b.text("/src/sub/a.txt"), "one");
    assert_eq!(b.file("/src/run.sh").mode, 0o755);
    assert_eq!(b.file("/src/sub/a.txt").mode, 0o644);
    assert!(!b.fs.keys().any(|k| k.starts_with("/src/.git")));
    assert_eq!(b.text("/sub/a.txt"), "one");
    assert_eq!(b.text("/withgit/sub/a.txt"), "two");
    assert_eq!(b.file("/withgit/.git").kind, tar::EntryType::Directory);
}

/// `--build-context name=<git URL>#ref:dir` is a context checked out from
/// the repository: COPY --from=name reads it.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn a_named_context_can_be_a_git_repository() {
    let c = Case::new("FROM scratch\nCOPY --from=src a.txt /a.txt\n", &[]);
    let repo = c.ctx.parent().unwrap().join("named");
    two_commit_repo(&repo);
    let url = serve_over_dumb_http(&repo);
    let b = c.build(&["--build-context", &format!("src={url}#v1:sub")]);
    assert_eq!(b.text("/a.txt"), "one");
    let b = c.build(&["--build-context", &format!("src={url}#:sub")]);
    assert_eq!(b.text("/a.txt"), "two");
}

/// A Dockerfile cannot make ADD read a git repository of the host: not by
/// its path, not by a `file://` URL, and not through the user's git
/// configuration (here a `url.insteadOf` in `$HOME/.gitconfig` that would
/// turn the public remote into the host's secret repository).
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn add_never_clones_a_host_repository() {
    let c = Case::new("FROM scratch\n", &[]);
    let top = c.ctx.parent().unwrap().to_path_buf();
    let make = |name: &str, text: &str| {
        let r = top.join(name);
        std::fs::create_dir_all(&r).unwrap();
        std::fs::write(r.join("f.txt"), text).unwrap();
        git_in(&r, &["init", "--quiet"]);
        git_in(&r, &["add", "."]);
        git_in(&r, &["commit", "--quiet", "-m", "x"]);
        r
    };
    let secret = make("secret", "TOPSECRET");
    let public_url = serve_over_dumb_http(&make("public", "public"));
    let home = top.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join(".gitconfig"),
        format!(
            "[url \"file://{}/.git\"]\n\tinsteadOf = {public_url}\n",
            secret.display()
        ),
    )
    .unwrap();
    let build = |src: &str| {
        std::fs::write(
            c.ctx.join("Dockerfile"),
            format!("FROM scratch\nADD {src} /x\n"),
        )
        .unwrap();
        let fs = top.join("fs.tar");
        let _ = std::fs::remove_file(&fs);
        let out = c
            .strata()
            .env("HOME", &home)
            .args(["build", "--progress", "plain", "-o"])
            .arg(format!("type=tar,dest={}", fs.display()))
            .arg(&c.ctx)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success().then(|| listing(&fs)), log)
    };
    for host_path in [
        format!("{}/.git", secret.display()),
        format!("file://{}/.git", secret.display()),
    ] {
        let (fs, log) = build(&host_path);
        assert!(fs.is_none(), "ADD {host_path} built:\n{log}");
        assert!(!log.contains("TOPSECRET"), "{log}");
    }
    let (fs, log) = build(&public_url);
    let fs = fs.unwrap_or_else(|| panic!("ADD {public_url} failed:\n{log}"));
    assert_eq!(fs["/x/f.txt"].content, b"public");
}
