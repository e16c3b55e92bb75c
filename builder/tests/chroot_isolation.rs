//! `--isolation chroot`: RUN steps without namespaces or mounts, as in a CI
//! container with the default seccomp profile.
//!
//! Chroot isolation needs real root with CAP_SYS_CHROOT. The test user has
//! neither, so these tests run strata as root of a user namespace made by
//! util-linux `unshare --map-root-user --map-auto` (the test user's
//! subordinate range mapped to ids 1…): the chroot code path, rootless. The
//! real thing, inside docker and podman, is tested by the engine tests.
//!
//! Needs the `.ci/test.sh` environment (unprivileged user with subordinate
//! ids, `unshare` and `newuidmap`, the local registry with the peers base
//! images), so every test is ignored by default.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

fn registry() -> String {
    std::env::var("STRATA_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into())
}

/// One tar entry, without its mtime.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    link: Option<String>,
    content: Vec<u8>,
}

type Listing = BTreeMap<String, Node>;

fn listing_of(reader: impl std::io::Read) -> Listing {
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(reader);
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
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        out.insert(
            p,
            Node {
                kind: h.entry_type(),
                mode: h.mode().unwrap() & 0o7777,
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                link,
                content,
            },
        );
    }
    out
}

/// The listing of every layer of a docker-archive, bottom first.
fn layers_of(archive: &Path) -> Vec<Listing> {
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
    m[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let blob = files[l.as_str().unwrap()].as_slice();
            // Gzip or plain, whichever the archive carries.
            if blob.starts_with(&[0x1f, 0x8b]) {
                listing_of(flate2::read::GzDecoder::new(blob))
            } else {
                listing_of(blob)
            }
        })
        .collect()
}

/// A context and two stores (one per isolation) in a scratch directory,
/// removed from inside a user namespace with the test user's subordinate
/// range, where the files the chroot build chowned are ours.
struct Case {
    dir: PathBuf,
}

impl Case {
    fn new(tag: &str, dockerfile: &str, files: &[(&str, &str)]) -> Case {
        let dir = std::env::temp_dir().join(format!(
            "strata-chroot-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let ctx = dir.join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        for (p, c) in files {
            std::fs::write(ctx.join(p), c).unwrap();
        }
        Case { dir }
    }

    fn ctx(&self) -> PathBuf {
        self.dir.join("ctx")
    }

    /// `strata -v --root <dir>/root-<isolation> build --isolation <isolation>
    /// --progress plain ARGS <ctx>`; chroot runs as root of a user namespace.
    fn build(&self, isolation: &str, args: &[&str]) -> Output {
        let root = self.dir.join(format!("root-{isolation}"));
        let mut c = if isolation == "chroot" {
            let mut c = Command::new("unshare");
            c.args(["--user", "--map-root-user", "--map-auto", STRATA]);
            c
        } else {
            Command::new(STRATA)
        };
        c.arg("-v")
            .arg("--root")
            .arg(&root)
            .args(["build", "--isolation", isolation, "--progress", "plain"])
            .args(args)
            .arg(self.ctx())
            .env_remove("STRATA_REGISTRY_MIRROR")
            .output()
            .expect("strata (and util-linux unshare) must be installed")
    }

    fn archive(&self, isolation: &str) -> PathBuf {
        self.dir.join(format!("{isolation}.tar"))
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let _ = Command::new("unshare")
            .args(["--user", "--map-root-user", "--map-auto", "rm", "-rf"])
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The union of the layers, as the final root filesystem shows it.
fn merged(layers: &[Listing]) -> Listing {
    let mut fs = Listing::new();
    for l in layers {
        for (p, n) in l {
            let name = p.rsplit('/').next().unwrap_or("");
            let parent = &p[..p.len() - name.len()];
            if let Some(hidden) = name.strip_prefix(".wh.") {
                let gone = format!("{parent}{hidden}");
                fs.retain(|k, _| k != &gone && !k.starts_with(&format!("{gone}/")));
                continue;
            }
            fs.insert(p.clone(), n.clone());
        }
    }
    fs
}

const MULTI_STAGE: &str = "\
FROM BASE AS tools
RUN echo tool > /tool && chmod 0750 /tool

FROM BASE
RUN groupadd -g 1001 appgrp && useradd -u 1000 -g appgrp -m app && mkdir /work && chown app:appgrp /work
RUN --mount=type=cache,target=/var/cache/strata-test echo run >> /var/cache/strata-test/runs && cp /var/cache/strata-test/runs /cache-runs
RUN --mount=type=secret,id=tok,required=true cat /run/secrets/tok > /seen-secret && stat -c ' %a %u %g' /run/secrets/tok >> /seen-secret
USER app
RUN id > /work/id && echo by-app > /work/by-app && mkdir /work/sub
USER root
RUN rm -rf /usr/share/doc /usr/bin/tail /etc/issue && cp /bin/true /usr/local/bin/suid && chown 1000:1001 /usr/local/bin/suid && chmod 4755 /usr/local/bin/suid && ln -s /work/by-app /link
COPY --from=tools /tool /tool
RUN --mount=type=tmpfs,target=/scratch --mount=type=bind,from=tools,source=/tool,target=/mnt/tool cat /mnt/tool > /scratch/t && cp /scratch/t /tool-copy
";

/// The acceptance build: deletions of lower files, a file written
/// as another USER, chown, a setuid bit, a cache mount, a secret, a tmpfs
/// and a bind from another stage. Chroot isolation must give the same
/// layers (every entry's type, mode, owner, link and content) as
/// user-namespace isolation, and `-v` must say what was chosen.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn chroot_build_makes_the_same_layers_as_a_user_namespace_build() {
    let base = format!("{}/library/debian:bookworm-slim", registry());
    let case = Case::new(
        "same",
        &MULTI_STAGE.replace("BASE", &base),
        &[("tok.txt", "s3cret")],
    );
    let secret = format!("id=tok,src={}", case.ctx().join("tok.txt").display());
    let mut layers = BTreeMap::new();
    for iso in ["userns", "chroot"] {
        let dest = format!("type=docker,dest={}", case.archive(iso).display());
        let out = case.build(iso, &["--secret", &secret, "-o", &dest]);
        let all = text(&out);
        assert!(out.status.success(), "{iso} build failed:\n{all}");
        let said: Vec<&str> = all
            .lines()
            .filter(|l| {
                l.starts_with("isolation: ")
                    || l.starts_with("id mapping: ")
                    || l.starts_with("snapshotter: ")
            })
            .collect();
        assert_eq!(said.len(), 3, "-v must say all three choices:\n{all}");
        if iso == "chroot" {
            assert!(
                said[0].starts_with("isolation: chroot isolation, as requested"),
                "{all}"
            );
            assert!(said[0].contains("is the security boundary"), "{all}");
            assert!(said[1].starts_with("id mapping: none"), "{all}");
            assert!(
                said[2].starts_with("snapshotter: tree snapshotter"),
                "{all}"
            );
        } else {
            assert!(
                said[0].starts_with("isolation: user-namespace isolation"),
                "{all}"
            );
            assert!(
                said[1].starts_with("id mapping: subordinate id mapping"),
                "{all}"
            );
        }
        layers.insert(iso, layers_of(&case.archive(iso)));
    }
    let (userns, chroot) = (&layers["userns"], &layers["chroot"]);
    assert_eq!(userns.len(), chroot.len(), "layer counts differ");
    for (i, (u, c)) in userns.iter().zip(chroot).enumerate() {
        if u != c {
            let show = |a: &Listing, b: &Listing| -> Vec<String> {
                a.iter()
                    .filter(|(k, v)| b.get(*k) != Some(v))
                    .map(|(k, n)| {
                        format!(
                            "{k} {:?} {:o} {}:{} {:?} {:?}",
                            n.kind,
                            n.mode,
                            n.uid,
                            n.gid,
                            n.link,
                            String::from_utf8_lossy(&n.content)
                        )
                    })
                    .collect()
            };
            panic!(
                "layer {i} differs:\nuserns: {:#?}\nchroot: {:#?}",
                show(u, c),
                show(c, u)
            );
        }
    }
    let fs = merged(chroot);
    let content = |p: &str| {
        let n = fs.get(p).unwrap_or_else(|| panic!("{p} missing"));
        String::from_utf8_lossy(&n.content).into_owned()
    };
    // Issue 12: the primary group is a supplementary group too.
    assert_eq!(
        content("/work/id"),
        "uid=1000(app) gid=1001(appgrp) groups=1001(appgrp)\n"
    );
    assert_eq!(content("/seen-secret"), "s3cret 400 0 0\n");
    assert_eq!(content("/cache-runs"), "run\n");
    assert_eq!(content("/tool-copy"), "tool\n");
    let suid = &fs["/usr/local/bin/suid"];
    assert_eq!((suid.mode, suid.uid, suid.gid), (0o4755, 1000, 1001));
    let by_app = &fs["/work/by-app"];
    assert_eq!((by_app.uid, by_app.gid), (1000, 1001));
    for gone in ["/usr/share/doc", "/usr/bin/tail", "/etc/issue"] {
        assert!(!fs.contains_key(gone), "{gone} was deleted by a step");
    }
    for never in [
        "/run/secrets/tok",
        "/var/cache/strata-test/runs",
        "/scratch/t",
        "/mnt/tool",
        "/proc/cpuinfo",
        "/dev/null",
    ] {
        assert!(!fs.contains_key(never), "{never} must not reach the image");
    }
}

/// What needs a namespace or a mount fails with a clear message, never
/// silently.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn network_none_is_refused_in_chroot_isolation() {
    let base = format!("{}/library/busybox:latest", registry());
    let case = Case::new(
        "netnone",
        &format!("FROM {base}\nRUN --network=none true\n"),
        &[],
    );
    let out = case.build("chroot", &[]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("not possible in chroot isolation: RUN --network=none"),
        "{all}"
    );
    let out = case.build("chroot", &["--snapshotter", "overlay"]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("not possible in chroot isolation: --snapshotter overlay needs a mount"),
        "{all}"
    );
}

/// The pids of processes whose command line is `sleep <secs>`.
fn sleepers(secs: &str) -> Vec<String> {
    let want = format!("sleep\0{secs}\0");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
            && cmd == want.as_bytes()
        {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

/// A step's background processes, even one in a session of its own, are
/// killed when the step ends; a step sees the /dev and /proc the README
/// describes and its /etc files.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn chroot_steps_leave_no_process_and_see_dev_proc_and_etc() {
    let base = format!("{}/library/busybox:latest", registry());
    let case = Case::new(
        "procs",
        &format!(
            "FROM {base}\n\
             RUN sleep 9871 & setsid sleep 9872 & echo started\n\
             RUN test -c /dev/null -o -f /dev/null && head -c 4 /dev/zero | wc -c > /zero \
             && cat /proc/meminfo | head -1 | cut -d: -f1 > /meminfo \
             && (test -e /proc/self && echo has-self || echo no-self) > /self \
             && cat /etc/hostname > /hostname && grep -c localhost /etc/hosts > /hosts \
             && (test -c /dev/urandom && echo device || echo file) > /urandom\n"
        ),
        &[],
    );
    let dest = format!("type=docker,dest={}", case.archive("chroot").display());
    let out = case.build("chroot", &["-o", &dest]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(sleepers("9871"), Vec::<String>::new(), "left behind");
    assert_eq!(sleepers("9872"), Vec::<String>::new(), "left behind");
    let fs = merged(&layers_of(&case.archive("chroot")));
    let content = |p: &str| String::from_utf8_lossy(&fs[p].content).into_owned();
    assert_eq!(content("/zero").trim(), "4");
    assert_eq!(content("/meminfo").trim(), "MemTotal");
    assert_eq!(content("/self").trim(), "no-self");
    assert_eq!(content("/hostname").trim(), "strata");
    assert_ne!(content("/hosts").trim(), "0");
    // Stand-in files (mknod refused, as in a user namespace) are said in
    // the step's output; real device nodes need no word.
    let noted = text(&out).contains("no device nodes can be made here");
    assert_eq!(
        noted,
        content("/urandom").trim() == "file",
        "{}",
        text(&out)
    );
    for never in ["/etc/hostname", "/etc/hosts", "/proc/meminfo", "/dev/zero"] {
        assert!(!fs.contains_key(never), "{never} must not reach the image");
    }
}

/// A failing step cancels a running one in chroot isolation too: the
/// reaper kills its processes, and the build stops without waiting.
#[test]
#[ignore = "needs the .ci/test.sh environment"]
fn a_failure_cancels_a_parallel_chroot_step() {
    let base = format!("{}/library/busybox:latest", registry());
    let case = Case::new(
        "cancel",
        &format!(
            "FROM {base} AS slow\nRUN sleep 9873\n\
             FROM {base} AS bad\nRUN sleep 1 && false\n\
             FROM {base}\nCOPY --from=slow /bin/sh /a\nCOPY --from=bad /bin/sh /b\n"
        ),
        &[],
    );
    let t = std::time::Instant::now();
    let out = case.build("chroot", &[]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(120),
        "the build waited for the slow step: {all}"
    );
    assert_eq!(sleepers("9873"), Vec::<String>::new(), "left behind");
}
