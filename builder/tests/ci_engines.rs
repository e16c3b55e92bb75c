//! strata inside real container engines, as CI runners use it (issue 9).
//!
//! `.ci/engines.sh start` (run as root by `.ci/test.sh`) starts a private
//! dockerd with no bridge network and no firewall changes and a rootful
//! podman API service, each on a socket the test user may use; these tests
//! read where from `STRATA_TEST_DOCKER_HOST`, `STRATA_TEST_PODMAN_URL` and
//! `STRATA_TEST_PODMAN_ULIMITS`, and FAIL (never skip) when an engine is
//! missing. Every container runs on `--network host` and talks only to the
//! registry on 127.0.0.1.
//!
//! The main case builds one multi-stage Dockerfile (RUN steps that delete
//! files of a lower layer, write as another USER, chown, set a setuid bit,
//! use a cache mount and a secret) inside a container with the engine's
//! default security profile, as container root, with the store on the
//! container's own root file system; the image is `docker load`ed into the
//! test dockerd and its file listing (type, mode, uid, gid, content) must
//! equal that of the same build run on the host in user-namespace mode.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{Scratch, registry, strata_cmd, unique};

/// Where the test engines are; a missing variable fails the test.
fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: the container-engine tests need the engines that \
             `.ci/engines.sh start` (run as root by .ci/test.sh) provides"
        ),
    }
}

fn base_image_tar(name: &str) -> PathBuf {
    let dir =
        std::env::var("STRATA_TEST_IMAGES").unwrap_or_else(|_| "/var/tmp/peers-images".into());
    let p = Path::new(&dir).join(name);
    assert!(
        p.is_file(),
        "{} is missing (peers/make-base-images.sh)",
        p.display()
    );
    p
}

fn busybox() -> String {
    format!("{}/library/busybox:latest", registry())
}

fn debian() -> String {
    format!("{}/library/debian:bookworm-slim", registry())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    /// The private dockerd: the GitLab docker executor's case.
    Docker,
    /// Rootful podman through its API service.
    PodmanRootful,
    /// The test user's own podman.
    PodmanRootless,
}

impl Engine {
    fn cli(self) -> Command {
        match self {
            Engine::Docker => {
                let bin = std::env::var("STRATA_TEST_DOCKER").unwrap_or_else(|_| "docker".into());
                let mut c = Command::new(bin);
                c.arg("-H").arg(required_env("STRATA_TEST_DOCKER_HOST"));
                c
            }
            Engine::PodmanRootful => {
                let mut c = Command::new("podman");
                c.args(["--remote", "--url"])
                    .arg(required_env("STRATA_TEST_PODMAN_URL"));
                c
            }
            Engine::PodmanRootless => Command::new("podman"),
        }
    }

    /// `run` with the engine's default security profile, host network.
    fn run(self) -> Command {
        let mut c = self.cli();
        c.args(["run", "--rm", "--network", "host"]);
        if self != Engine::Docker {
            // runc cannot raise limits on these machines (no CAP_SYS_RESOURCE):
            // pass exactly the limits the engine already has.
            let limits = match self {
                Engine::PodmanRootful => required_env("STRATA_TEST_PODMAN_ULIMITS"),
                _ => rootless_podman_limits(),
            };
            for l in limits.split(',') {
                c.args(["--ulimit", l]);
            }
        }
        c
    }

    /// Whether files the container's root writes belong to someone other
    /// than the test user (so the container hands them back with chown).
    fn root_is_real_root(self) -> bool {
        self != Engine::PodmanRootless
    }
}

/// The hard open-file and process limits inside the user's podman
/// namespace (podman lowers them there), as --ulimit values.
fn rootless_podman_limits() -> String {
    let limits = ok(Command::new("podman").args(["unshare", "cat", "/proc/self/limits"]));
    let hard = |prefix: &str| {
        let line = limits
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in podman's limits:\n{limits}"));
        let fields: Vec<&str> = line[prefix.len()..].split_whitespace().collect();
        match fields[1] {
            "unlimited" => "-1".to_string(),
            v => v.to_string(),
        }
    };
    let (n, p) = (hard("Max open files"), hard("Max processes"));
    format!("nofile={n}:{n},nproc={p}:{p}")
}

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()))
}

fn ok(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The static strata binary under test.
fn strata_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_strata"))
}

/// A shared directory for one test: `ctx/`, `secret.txt` and an `out/`
/// that container root can write to.
struct Workspace {
    dir: Scratch,
}

impl Workspace {
    fn new(tag: &str, dockerfile: &str, files: &[(&str, &str)]) -> Workspace {
        let dir = Scratch::new(tag);
        let ctx = dir.0.join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        for (name, text) in files {
            std::fs::write(ctx.join(name), text).unwrap();
        }
        std::fs::write(dir.0.join("secret.txt"), "s3cret-token\n").unwrap();
        let out = dir.0.join("out");
        std::fs::create_dir(&out).unwrap();
        use std::os::unix::fs::PermissionsExt;
        for d in [&dir.0, &out] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        Workspace { dir }
    }

    fn path(&self) -> &Path {
        &self.dir.0
    }

    /// Runs `script` with sh in `image` under `engine`, the workspace at /w
    /// and strata at /usr/local/bin/strata; whatever the container wrote
    /// under /w is handed back to the test user (so the workspace can be
    /// removed after the test).
    fn in_container(&self, engine: Engine, image: &str, extra: &[&str], script: &str) -> Output {
        let mut c = engine.run();
        c.arg("-v")
            .arg(format!("{}:/w", self.path().display()))
            .arg("-v")
            .arg(format!(
                "{}:/usr/local/bin/strata:ro",
                strata_bin().display()
            ))
            .args(extra)
            .arg(image);
        let give_back = if engine.root_is_real_root() {
            // SAFETY: getuid/getgid cannot fail.
            let (u, g) = unsafe { (libc::getuid(), libc::getgid()) };
            format!("; rc=$?; chown -R {u}:{g} /w; exit $rc")
        } else {
            String::new()
        };
        c.args(["sh", "-c", &format!("{script}{give_back}")]);
        output(&mut c)
    }
}

/// The multi-stage Dockerfile of the main case.
fn main_dockerfile() -> String {
    let bb = busybox();
    format!(
        r#"FROM {bb} AS side
RUN echo side > /side.txt

FROM {bb} AS base
RUN echo 'app:x:1234:1234::/home/app:/bin/sh' >> /etc/passwd \
 && echo 'app:x:1234:' >> /etc/group \
 && mkdir -p /home/app /data/gone-dir/sub \
 && chown 1234:1234 /home/app \
 && echo old > /data/old && echo keep > /data/keep && echo x > /data/gone-dir/sub/f

FROM base
RUN rm /data/old && rm -r /data/gone-dir && rm /bin/vi
USER app
RUN echo "made by $(id -u):$(id -g)" > /home/app/note && chmod 640 /home/app/note
USER root
RUN chown 1234:1234 /data/keep && mkdir /data/owned && chown 4321:5678 /data/owned \
 && cp /bin/busybox /data/suid && chmod 4755 /data/suid && chmod 2750 /data/owned
RUN --mount=type=cache,target=/var/cache/ci,id=ci-engines-{tag} \
    echo run >> /var/cache/ci/runs && wc -l < /var/cache/ci/runs > /data/cache-runs
RUN --mount=type=secret,id=tok,required=true \
    sha256sum /run/secrets/tok | cut -c1-16 > /data/secret-digest && test ! -e /data/tok
COPY --from=side /side.txt /side.txt
COPY hello.txt /data/hello.txt
"#,
        tag = unique()
    )
}

/// type mode uid gid [md5] [-> target] path, for every path in the image
/// except what the engine itself provides (/proc, /sys, /dev, /etc/hosts…).
const LIST_SCRIPT: &str = r#"cd / && find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev \
 -o -path ./etc/hosts -o -path ./etc/hostname -o -path ./etc/resolv.conf \
 -o -path ./.dockerenv -o -path ./run/.containerenv \) -prune -o -print | sort |
while IFS= read -r f; do
  line=$(stat -c '%F %a %u %g' "$f")
  if [ -L "$f" ]; then line="$line -> $(readlink "$f")";
  elif [ -f "$f" ]; then line="$line $(md5sum < "$f" | cut -d' ' -f1)"; fi
  echo "$line $f"
done"#;

/// Loads a docker archive into the test dockerd and lists the image's files
/// by running it there.
fn docker_listing(archive: &Path, tag: &str) -> String {
    ok(Engine::Docker.cli().arg("load").arg("-i").arg(archive));
    let listing = ok(Engine::Docker
        .run()
        .arg(tag)
        .args(["sh", "-c", LIST_SCRIPT]));
    let _ = Engine::Docker.cli().args(["rmi", "-f", tag]).output();
    listing
}

fn assert_same_listing(what: &str, got: &str, want: &str) {
    if got == want {
        return;
    }
    let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    let only_got: Vec<&&str> = g.iter().filter(|l| !w.contains(l)).collect();
    let only_want: Vec<&&str> = w.iter().filter(|l| !g.contains(l)).collect();
    panic!(
        "{what}: the image's files differ from the host build's\n--- only in {what}:\n{}\n--- only on the host:\n{}",
        only_got
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        only_want
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The same build on the host, as the test user, in user-namespace mode.
fn host_listing(ws: &Workspace) -> String {
    let root = ws.path().join("host-root");
    let archive = ws.path().join("host.tar");
    let tag = format!("strata-ci-engines/host:{}", unique());
    let secret = format!("id=tok,src={}", ws.path().join("secret.txt").display());
    ok(strata_cmd(
        &root,
        &[
            "build",
            "--secret",
            &secret,
            "-t",
            &tag,
            "-o",
            &format!("type=docker,dest={}", archive.display()),
        ],
    )
    .arg(ws.path().join("ctx")));
    docker_listing(&archive, &tag)
}

/// Builds the main case in `image` under `engine` (store on the container's
/// root file system) and checks the result against the host build.
fn main_case_under(engine: Engine, image: &str) {
    let ws = Workspace::new(
        &format!("{engine:?}").to_lowercase(),
        &main_dockerfile(),
        &[("hello.txt", "hello from the context\n")],
    );
    let want = host_listing(&ws);
    let tag = format!(
        "strata-ci-engines/{}:{}",
        format!("{engine:?}").to_lowercase(),
        unique()
    );
    let script = format!(
        "strata -v build --secret id=tok,src=/w/secret.txt -t {tag} \
         -o type=docker,dest=/w/out/image.tar /w/ctx"
    );
    let out = ws.in_container(engine, image, &[], &script);
    assert!(
        out.status.success(),
        "strata build inside {engine:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let got = docker_listing(&ws.path().join("out/image.tar"), &tag);
    // The case really did what it claims (on both sides, as they are equal).
    for needle in [
        "regular file 4755 0 0 ",
        "directory 2750 4321 5678 ./data/owned",
        "regular file 644 1234 1234 ",
        "regular file 640 1234 1234 ",
        "./data/secret-digest",
        "./side.txt",
    ] {
        assert!(got.contains(needle), "{needle:?} missing from:\n{got}");
    }
    for gone in ["./data/old", "./data/gone-dir", "./bin/vi"] {
        assert!(
            !got.lines().any(|l| l.ends_with(&format!(" {gone}"))),
            "{gone} was deleted by a RUN step but is in the image:\n{got}"
        );
    }
    assert_same_listing(&format!("{engine:?}"), &got, &want);
}

fn load_into_rootless_podman(tar: &str) {
    ok(Command::new("podman")
        .args(["load", "-q", "-i"])
        .arg(base_image_tar(tar)));
}

/// (a) The GitLab docker-executor case: root in a container with Docker's
/// default seccomp profile (no unshare, no mount).
#[test]
#[ignore = "needs the engines of .ci/engines.sh (run by .ci/test.sh)"]
fn docker_default_profile_as_container_root_matches_the_host_build() {
    main_case_under(Engine::Docker, &debian());
}

/// (b) Rootful podman's default profile: unshare is allowed, a fresh procfs
/// and sethostname are not; the store sits on the container's overlay root.
#[test]
#[ignore = "needs the engines of .ci/engines.sh (run by .ci/test.sh)"]
fn rootful_podman_default_profile_matches_the_host_build() {
    main_case_under(Engine::PodmanRootful, &debian());
}

/// (b) Rootless podman, as the test user: container root is the user, with
/// its subordinate range as the container's ids.
#[test]
#[ignore = "needs the engines of .ci/engines.sh (run by .ci/test.sh)"]
fn rootless_podman_default_profile_matches_the_host_build() {
    load_into_rootless_podman("debian-bookworm-slim.docker.tar");
    main_case_under(Engine::PodmanRootless, &debian());
}

/// (c) A non-root container without user namespaces: nothing can isolate a
/// RUN step, so strata says why and what to do, exits non-zero, and leaves
/// a store that verifies.
#[test]
#[ignore = "needs the engines of .ci/engines.sh (run by .ci/test.sh)"]
fn non_root_container_without_user_namespaces_gets_a_clear_error() {
    let df = format!("FROM {}\nCOPY hello.txt /\nRUN echo hi > /x\n", busybox());
    let ws = Workspace::new("noroot", &df, &[("hello.txt", "hi\n")]);
    let script = "strata --root /tmp/r build -o type=docker,dest=/tmp/o.tar /w/ctx; \
                  echo \"build-exit=$?\"; strata --root /tmp/r store verify >/dev/null; \
                  echo \"verify-exit=$?\"; \
                  echo \"leftovers=$(find /tmp/r -name '.tmp-*' -o -name '*.partial*' | wc -l)\"";
    let out = ws.in_container(Engine::Docker, &busybox(), &["--user", "1000:1000"], script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("verify-exit=0"),
        "store does not verify:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("leftovers=0"),
        "half-written files:\n{stdout}\n{stderr}"
    );
    assert!(
        !stdout.contains("build-exit=0"),
        "the build succeeded?\n{stdout}\n{stderr}"
    );
    for needle in [
        "RUN echo hi > /x",
        "no isolation for RUN steps is available",
        "this container may not create user namespaces",
        "run strata as root inside the job's container",
        "emptyDir",
        "Running in CI",
    ] {
        assert!(
            stderr.contains(needle),
            "{needle:?} missing from the error:\n{stderr}"
        );
    }
    for leak in ["os error", "panicked", "Os {", "Code("] {
        assert!(!stderr.contains(leak), "{leak:?} in the error:\n{stderr}");
    }
}

/// Item 4: the binary is static, starts in a busybox image (no glibc),
/// resolves `localhost` for a pull and builds a COPY-only and a RUN
/// Dockerfile there.
#[test]
#[ignore = "needs the engines of .ci/engines.sh (run by .ci/test.sh)"]
fn static_binary_builds_inside_a_busybox_container() {
    assert_no_interpreter(&strata_bin());
    let port = registry().rsplit(':').next().unwrap_or("5000").to_string();
    let df_copy =
        format!("FROM localhost:{port}/library/busybox:latest\nCOPY hello.txt /hello.txt\n");
    let ws = Workspace::new("busybox", &df_copy, &[("hello.txt", "static hello\n")]);
    let run_ctx = ws.path().join("run-ctx");
    std::fs::create_dir(&run_ctx).unwrap();
    std::fs::write(
        run_ctx.join("Dockerfile"),
        format!(
            "FROM {}\nRUN echo ran > /ran.txt && rm /bin/vi\n",
            busybox()
        ),
    )
    .unwrap();
    let (copy_tag, run_tag) = (
        format!("strata-ci-engines/copy:{}", unique()),
        format!("strata-ci-engines/run:{}", unique()),
    );
    let script = format!(
        "set -e; strata build -t {copy_tag} -o type=docker,dest=/w/out/copy.tar /w/ctx; \
         strata build -t {run_tag} -o type=docker,dest=/w/out/run.tar /w/run-ctx"
    );
    let out = ws.in_container(Engine::Docker, &busybox(), &[], &script);
    assert!(
        out.status.success(),
        "inside busybox ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = docker_listing(&ws.path().join("out/copy.tar"), &copy_tag);
    assert!(copy.contains("./hello.txt"), "{copy}");
    let run = docker_listing(&ws.path().join("out/run.tar"), &run_tag);
    assert!(
        run.contains("./ran.txt") && !run.contains(" ./bin/vi\n"),
        "{run}"
    );
}

/// No PT_INTERP program header: the kernel runs it without a dynamic loader.
fn assert_no_interpreter(bin: &Path) {
    let elf = std::fs::read(bin).unwrap();
    assert_eq!(
        &elf[..4],
        b"\x7fELF",
        "{} is not an ELF file",
        bin.display()
    );
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[32..40].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    for i in 0..phnum {
        let p_type = u32::from_le_bytes(elf[phoff + i * phentsize..][..4].try_into().unwrap());
        assert_ne!(
            p_type,
            3,
            "{} has a dynamic loader (PT_INTERP)",
            bin.display()
        );
    }
}
