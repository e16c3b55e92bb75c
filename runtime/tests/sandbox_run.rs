//! Acceptance tests of the rootless sandbox. They must pass as an
//! unprivileged user with a subordinate id range (the CI user `builder`).

mod sandbox_support;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use runtime::sandbox::run_mounts::{
    BindFrom, BindMount, CacheMount, CacheSharing, RunMount, SecretMount, SecretValue, SshMount,
    TmpfsMount,
};
use runtime::sandbox::{CancelToken, ExitStatus, Network, OutputStream, UsernsMode};
use runtime::{RootfsSpec, SandboxError, remove_tree_in_userns, run_in_userns};
use sandbox_support::{Fixture, list_tree};

#[test]
fn id_is_root_on_overlay_and_dir_in_both_modes() {
    for mode in [UsernsMode::Single, UsernsMode::Subuid] {
        let fx = Fixture::new(mode);
        let (ov, _) = fx.overlay("a");
        assert_eq!(
            fx.stdout(&fx.spec(ov, "id -u; id -g")),
            vec!["0", "0"],
            "{mode:?}"
        );
        let dir = RootfsSpec::Dir(fx.path("lower"));
        assert_eq!(fx.stdout(&fx.spec(dir, "id -u")), vec!["0"], "{mode:?}");
    }
}

#[test]
fn the_inside_looks_like_a_container() {
    let fx = Fixture::new(UsernsMode::Auto);
    let (ov, _) = fx.overlay("a");
    let mut spec = fx.spec(
        ov,
        "echo $$; hostname; cat /etc/hostname; echo x > /dev/null && echo devnull-ok; \
         test -c /dev/urandom && echo urandom-ok; test -e /proc/self/status && echo proc-ok; \
         touch /sys/x 2>/dev/null || echo sys-ro; cat /proc/self/status | grep NoNewPrivs; \
         pwd; echo $FOO; touch /tmp/umask && stat -c %a /tmp/umask; ls -d /dev/pts /dev/shm",
    );
    spec.hostname = "stepbox".into();
    spec.env.push(("FOO".into(), "bar baz".into()));
    spec.cwd = "/work/dir".into();
    let out = fx.stdout(&spec);
    assert_eq!(
        out,
        vec![
            "1",
            "stepbox",
            "stepbox",
            "devnull-ok",
            "urandom-ok",
            "proc-ok",
            "sys-ro",
            "NoNewPrivs:\t1",
            "/work/dir",
            "bar baz",
            "644",
            "/dev/pts",
            "/dev/shm"
        ]
    );
}

#[test]
fn stdout_and_stderr_stream_as_lines_while_the_step_runs() {
    let fx = Fixture::new(UsernsMode::Auto);
    let (ov, _) = fx.overlay("a");
    let spec = fx.spec(
        ov,
        "echo one; echo two >&2; sleep 1; printf 'a\\nb\\n'; printf 'no-newline'",
    );
    let start = Instant::now();
    let mut lines = Vec::new();
    let res = fx.sandbox.run(&spec, &mut |s, l| {
        lines.push((s, String::from_utf8_lossy(l).into_owned(), start.elapsed()))
    });
    assert!(res.unwrap().exit.success());
    // Order is kept within a stream (not across the two pipes).
    let of = |k: OutputStream| -> Vec<&str> {
        lines
            .iter()
            .filter(|(s, ..)| *s == k)
            .map(|(_, l, _)| l.as_str())
            .collect()
    };
    assert_eq!(
        of(OutputStream::Stdout),
        vec!["one", "a", "b", "no-newline"]
    );
    assert_eq!(of(OutputStream::Stderr), vec!["two"]);
    // "one" was delivered before the step's sleep ended, not at exit.
    let t_one = lines.iter().find(|(_, l, _)| l == "one").unwrap().2;
    let t_a = lines.iter().find(|(_, l, _)| l == "a").unwrap().2;
    assert!(
        t_a - t_one > Duration::from_millis(800),
        "{t_one:?} vs {t_a:?}"
    );
}

#[test]
fn chown_works_with_a_subuid_range() {
    let fx = Fixture::new(UsernsMode::Subuid);
    let (ov, upper) = fx.overlay("a");
    fx.stdout(&fx.spec(ov, "touch /f && chown 1000:1000 /f && stat -c %u:%g /f"));
    let meta = fs::metadata(upper.join("f")).unwrap();
    let (sub_uid, sub_gid) = (
        fx.sandbox
            .mapping()
            .expect("user-namespace isolation")
            .host_uid(1000)
            .unwrap(),
        fx.sandbox
            .mapping()
            .expect("user-namespace isolation")
            .host_gid(1000)
            .unwrap(),
    );
    assert_eq!((meta.uid(), meta.gid()), (sub_uid, sub_gid));
    assert_ne!(meta.uid(), unsafe { libc::getuid() });
}

#[test]
fn chown_fails_clearly_in_single_mode() {
    let fx = Fixture::new(UsernsMode::Single);
    let (ov, _) = fx.overlay("a");
    let (res, lines) = fx.run(&fx.spec(ov.clone(), "touch /f && chown 1000:1000 /f"));
    let out = res.unwrap();
    assert_eq!(out.exit, ExitStatus::Code(1), "{lines:?}");
    assert!(
        lines.iter().any(|(_, l)| l.contains("Invalid argument")),
        "{lines:?}"
    );
    let hint = out
        .hint
        .expect("a failed step in single mode carries a hint");
    assert!(
        hint.contains("usermod --add-subuids 100000-165535"),
        "{hint}"
    );
    assert_eq!(fx.sandbox.single_mapping_hint(), Some(hint));
    // A USER that needs other ids fails before exec, saying how to fix it.
    let mut spec = fx.spec(ov, "id -u");
    spec.user = Some("nobody".into());
    match fx.run(&spec).0 {
        Err(SandboxError::Exec(m)) => assert!(m.contains("usermod --add-subuids"), "{m}"),
        other => panic!("expected an exec error, got {other:?}"),
    }
}

#[test]
fn user_nobody_runs_as_65534() {
    let fx = Fixture::new(UsernsMode::Subuid);
    let (ov, _) = fx.overlay("a");
    let mut spec = fx.spec(ov, "id -u; id -g");
    spec.user = Some("nobody".into());
    assert_eq!(fx.stdout(&spec), vec!["65534", "65534"]);
    let (ov, _) = fx.overlay("b");
    let mut spec = fx.spec(ov, "id -u; id -g");
    spec.user = Some("4242:77".into());
    assert_eq!(fx.stdout(&spec), vec!["4242", "77"]);
    let (ov, _) = fx.overlay("c");
    let mut spec = fx.spec(ov, "id -u");
    spec.user = Some("ghost".into());
    match fx.run(&spec).0 {
        Err(SandboxError::Exec(m)) => assert!(m.contains("unable to find user ghost"), "{m}"),
        other => panic!("expected an exec error, got {other:?}"),
    }
}

#[test]
fn network_none_has_only_loopback_and_it_is_up() {
    let fx = Fixture::new(UsernsMode::Auto);
    let (ov, _) = fx.overlay("a");
    let mut spec = fx.spec(
        ov,
        "ls /sys/class/net; cat /sys/class/net/lo/flags; tail -n +3 /proc/net/dev | cut -d: -f1",
    );
    spec.network = Network::None;
    let out = fx.stdout(&spec);
    assert_eq!(out[0], "lo");
    let flags = u32::from_str_radix(out[1].trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is not up: {out:?}");
    let ifaces: Vec<&str> = out[2..].iter().map(|s| s.trim()).collect();
    assert_eq!(ifaces, vec!["lo"]);
}

#[test]
fn network_host_reaches_a_server_on_localhost_and_none_does_not() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 16\r\n\r\nhello-from-host\n")
            .unwrap();
    });
    let fx = Fixture::new(UsernsMode::Auto);
    let (ov, _) = fx.overlay("a");
    let url = format!("http://127.0.0.1:{port}/");
    let mut spec = fx.spec(ov, &format!("wget -q -O - {url}"));
    spec.network = Network::Host;
    assert_eq!(fx.stdout(&spec), vec!["hello-from-host"]);
    server.join().unwrap();
    let (ov, _) = fx.overlay("b");
    let mut spec = fx.spec(ov, &format!("wget -q -T 2 -O - {url}"));
    spec.network = Network::None;
    let (res, _) = fx.run(&spec);
    assert!(!res.unwrap().exit.success());
}

#[test]
fn exit_codes_propagate_and_missing_commands_are_explained() {
    let fx = Fixture::new(UsernsMode::Auto);
    let (ov, _) = fx.overlay("a");
    assert_eq!(
        fx.run(&fx.spec(ov.clone(), "exit 3")).0.unwrap().exit,
        ExitStatus::Code(3)
    );
    let spec = runtime::RunSpec::new(ov.clone(), vec!["nosuchcmd".into(), "x".into()]);
    match fx.run(&spec).0 {
        Err(SandboxError::Exec(m)) => assert!(m.contains("command not found: nosuchcmd"), "{m}"),
        other => panic!("expected an exec error, got {other:?}"),
    }
    let spec = runtime::RunSpec::new(ov, vec!["/bin/nope".into()]);
    match fx.run(&spec).0 {
        Err(SandboxError::Exec(m)) => {
            assert!(m.contains("/bin/nope") && m.contains("No such file"), "{m}")
        }
        other => panic!("expected an exec error, got {other:?}"),
    }
}

fn sleepers(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains("sleep") && c.contains(marker) {
                found.push(format!("{}: {c}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

fn wait_until_gone(marker: &str) -> Vec<String> {
    let t = Instant::now();
    loop {
        let s = sleepers(marker);
        if s.is_empty() || t.elapsed() > Duration::from_secs(5) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn timeout_and_cancel_kill_the_whole_tree() {
    let fx = Fixture::new(UsernsMode::Auto);
    let (ov, _) = fx.overlay("a");
    let mut spec = fx.spec(ov.clone(), "sleep 871 & sleep 871");
    spec.timeout = Some(Duration::from_millis(300));
    let t = Instant::now();
    assert!(matches!(fx.run(&spec).0, Err(SandboxError::Timeout(_))));
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(wait_until_gone("871"), Vec::<String>::new());

    let mut spec = fx.spec(ov, "sleep 872 & sleep 872");
    let cancel = CancelToken::new();
    spec.cancel = Some(cancel.clone());
    let c2 = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        c2.cancel();
    });
    assert!(matches!(fx.run(&spec).0, Err(SandboxError::Cancelled)));
    assert_eq!(wait_until_gone("872"), Vec::<String>::new());
}

/// Helper for the SIGKILL test: runs only when re-invoked by it.
#[test]
#[ignore]
fn helper_run_sleep_forever() {
    let Ok(state) = std::env::var("STRATA_TEST_HELPER_DIR") else {
        return;
    };
    let fx = Fixture::new(UsernsMode::Auto);
    let _ = fs::write(
        format!("{state}/tmpdir"),
        fx.tmp.path().display().to_string(),
    );
    let (ov, _) = fx.overlay("a");
    let mut spec = fx.spec(ov, "echo started; sleep 993 & exec sleep 993");
    spec.mounts.push(RunMount::Tmpfs(TmpfsMount {
        target: "/scratch".into(),
        size: None,
    }));
    let _ = fx.sandbox.run(&spec, &mut |_, l| {
        if l == b"started" {
            let _ = fs::write(format!("{state}/started"), "1");
        }
    });
}

#[test]
fn sigkill_of_strata_leaves_no_process_and_no_mount() {
    let state = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_run_sleep_forever",
            "--include-ignored",
            "--nocapture",
        ])
        .env("STRATA_TEST_HELPER_DIR", state.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !state.path().join("started").exists() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "helper never started its step"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // "started" is printed before the two sleeps exec; wait for both.
    while sleepers("993").len() < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the step's sleeps never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(
        wait_until_gone("993"),
        Vec::<String>::new(),
        "processes left behind"
    );
    let helper_tmp = fs::read_to_string(state.path().join("tmpdir")).unwrap();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(&helper_tmp),
        "mounts left behind:\n{mountinfo}"
    );
    // The helper's mount namespace is gone too: no overlay mount is left on
    // its paths. (Only overlay-type mounts under the helper's own directory
    // count: a container engine the suite started may hold overlay-named
    // directories elsewhere.)
    assert!(
        !mountinfo
            .lines()
            .any(|l| l.contains(" - overlay ") && l.contains(helper_tmp.trim())),
        "{mountinfo}"
    );
    // Its scratch dir is garbage now; the next sandbox on that state dir removes it.
    let state = std::path::Path::new(&helper_tmp).join("state");
    let runs = || {
        list_tree(&state)
            .into_iter()
            .filter(|e| !e.contains('/'))
            .count()
    };
    assert_eq!(runs(), 1, "the killed step's run dir");
    let sb = runtime::Sandbox::new(runtime::SandboxOptions {
        isolation: Default::default(),
        userns: UsernsMode::Auto,
        state_dir: state.clone(),
        cache_dir: None,
    })
    .unwrap();
    assert_eq!(runs(), 0, "stale run dirs are removed");
    runtime::remove_tree_in_userns(
        sb.mapping().expect("user-namespace isolation"),
        std::path::Path::new(&helper_tmp),
    )
    .unwrap();
}

#[test]
fn cache_mount_survives_runs_and_stays_out_of_the_upper_dir() {
    let fx = Fixture::new(UsernsMode::Auto);
    let cache = || {
        RunMount::Cache(CacheMount {
            id: Some("gocache".into()),
            target: "/root/.cache/go".into(),
            sharing: CacheSharing::Locked,
            from: None,
            source: None,
            mode: None,
            uid: None,
            gid: None,
            readonly: false,
        })
    };
    let (ov, upper) = fx.overlay("a");
    let mut spec = fx.spec(ov, "echo cached-data > /root/.cache/go/f");
    spec.mounts.push(cache());
    fx.stdout(&spec);
    assert_eq!(
        list_tree(&upper),
        Vec::<String>::new(),
        "the step wrote only to the cache"
    );
    let (ov, upper) = fx.overlay("b");
    let mut spec = fx.spec(ov, "cat /root/.cache/go/f");
    spec.mounts.push(cache());
    assert_eq!(fx.stdout(&spec), vec!["cached-data"]);
    assert_eq!(list_tree(&upper), Vec::<String>::new());
}

const SECRET: &str = "s3cr3t-Value-91f0";

#[test]
fn secrets_are_readable_but_never_in_the_layer_or_the_output() {
    for mode in [UsernsMode::Single, UsernsMode::Subuid] {
        let fx = Fixture::new(mode);
        let (ov, upper) = fx.overlay("a");
        let mut spec = fx.spec(
            ov,
            // The script must not contain the whole secret itself.
            "s=$(cat /run/secrets/tok); test \"${s%-91f0}\" = s3cr3t-Value && echo file-ok; \
             test \"${TOKEN#s3cr3t-}\" = Value-91f0 && echo env-ok; stat -c %a /run/secrets/tok; \
             (echo > /run/secrets/tok) 2>/dev/null || echo ro",
        );
        let secret = |env: Option<&str>, target: Option<&str>| {
            RunMount::Secret(SecretMount {
                id: "tok".into(),
                target: target.map(str::to_owned),
                env: env.map(str::to_owned),
                required: true,
                mode: None,
                uid: None,
                gid: None,
                value: Some(SecretValue(SECRET.as_bytes().to_vec())),
            })
        };
        spec.mounts.push(secret(None, None));
        spec.mounts.push(secret(Some("TOKEN"), None));
        assert!(
            !format!("{spec:?}").contains(SECRET),
            "Debug of the spec leaks the secret"
        );
        let (res, lines) = fx.run(&spec);
        assert!(res.unwrap().exit.success());
        let out: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(out, vec!["file-ok", "env-ok", "400", "ro"], "{mode:?}");
        assert!(lines.iter().all(|(_, l)| !l.contains(SECRET)));
        assert_eq!(list_tree(&upper), Vec::<String>::new(), "{mode:?}");
        // Nor anywhere else on disk the sandbox wrote: its state dir is gone.
        assert_eq!(list_tree(&fx.path("state")), Vec::<String>::new());
    }
}

#[test]
fn bind_tmpfs_mounts_and_mount_points_leave_no_trace() {
    let fx = Fixture::new(UsernsMode::Auto);
    let ctx = fx.path("context");
    fs::create_dir_all(ctx.join("sub")).unwrap();
    fs::write(ctx.join("sub/file"), "from-context\n").unwrap();
    let (ov, upper) = fx.overlay("a");
    let mut spec = fx.spec(
        ov,
        "cat /src/file; touch /src/x 2>/dev/null || echo ro; touch /rw/y && echo rw-ok; \
         echo t > /scratch/t && cat /scratch/t",
    );
    spec.mounts.push(RunMount::Bind(BindMount {
        from: BindFrom::Dir(ctx.clone()),
        source: Some("sub".into()),
        target: "/src".into(),
        readwrite: false,
    }));
    spec.mounts.push(RunMount::Bind(BindMount {
        from: BindFrom::Dir(ctx.clone()),
        source: Some("/sub/../sub".into()),
        target: "/rw".into(),
        readwrite: true,
    }));
    spec.mounts.push(RunMount::Tmpfs(TmpfsMount {
        target: "/scratch".into(),
        size: Some(1 << 20),
    }));
    assert_eq!(fx.stdout(&spec), vec!["from-context", "ro", "rw-ok", "t"]);
    assert_eq!(
        list_tree(&upper),
        Vec::<String>::new(),
        "mount points leaked into the upper dir"
    );
    assert!(
        !ctx.join("sub/y").exists(),
        "rw bind writes must be discarded"
    );

    // A Dir rootfs without /proc, /dev, /sys or /etc/hosts: stubs are removed again.
    let dir = fx.path("dirroot");
    sandbox_support::busybox_tree(&dir);
    let before = list_tree(&dir);
    let etc_mtime = fs::metadata(dir.join("etc")).unwrap().modified().unwrap();
    let mut spec = fx.spec(
        RootfsSpec::Dir(dir.clone()),
        "cat /etc/hosts | grep -c localhost; ls /scratch",
    );
    spec.mounts.push(RunMount::Tmpfs(TmpfsMount {
        target: "/scratch/deep".into(),
        size: None,
    }));
    assert_eq!(fx.stdout(&spec), vec!["2", "deep"]);
    assert_eq!(list_tree(&dir), before);
    assert_eq!(
        fs::metadata(dir.join("etc")).unwrap().modified().unwrap(),
        etc_mtime
    );
    // A step that changes /etc itself keeps its new mtime.
    std::thread::sleep(Duration::from_millis(20));
    fx.stdout(&fx.spec(RootfsSpec::Dir(dir.clone()), "touch /etc/newfile"));
    assert!(dir.join("etc/newfile").exists());
    assert_ne!(
        fs::metadata(dir.join("etc")).unwrap().modified().unwrap(),
        etc_mtime
    );
}

#[test]
fn run_in_userns_owns_subordinate_files() {
    let fx = Fixture::new(UsernsMode::Subuid);
    let m = fx
        .sandbox
        .mapping()
        .expect("user-namespace isolation")
        .clone();
    let d = fx.path("owned");
    let d2 = d.clone();
    let uid = run_in_userns(&m, move || -> std::io::Result<u64> {
        fs::create_dir_all(d2.join("a/b"))?;
        fs::write(d2.join("a/b/f"), "x")?;
        std::os::unix::fs::chown(d2.join("a/b/f"), Some(1000), Some(1000))?;
        std::os::unix::fs::chown(d2.join("a/b"), Some(1000), Some(1000))?;
        fs::set_permissions(
            d2.join("a/b"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
        Ok(u64::from(fs::metadata(d2.join("a/b/f"))?.uid()))
    })
    .unwrap();
    assert_eq!(uid, 1000, "ids inside are container ids");
    assert_eq!(
        fs::metadata(d.join("a/b")).unwrap().uid(),
        m.host_uid(1000).unwrap()
    );
    assert!(
        fs::remove_dir_all(&d).is_err(),
        "the caller cannot delete subuid-owned files"
    );
    remove_tree_in_userns(&m, &d).unwrap();
    assert!(!d.exists());
    let err = run_in_userns(&m, || Err::<(), _>("nope")).unwrap_err();
    assert_eq!(err.to_string(), "nope");
}

#[test]
fn many_lower_layers_beyond_one_page_of_mount_options() {
    let fx = Fixture::new(UsernsMode::Auto);
    // 60 layers with long paths: ~7 KiB of lowerdir=, past mount(2)'s page.
    let mut lowers = Vec::new();
    for i in (0..60).rev() {
        let l = fx.path(&format!("layer-{i:02}-{}", "x".repeat(90)));
        fs::create_dir_all(l.join("layers")).unwrap();
        fs::write(l.join(format!("layers/{i:02}")), "").unwrap();
        fs::write(l.join("top"), format!("{i}\n")).unwrap();
        lowers.push(l);
    }
    lowers.push(fx.path("lower")); // busybox at the bottom
    let total: usize = lowers.iter().map(|l| l.as_os_str().len() + 1).sum();
    assert!(total > 4096, "the test must exceed one page ({total})");
    let (upper, work) = (fx.path("many-upper"), fx.path("many-work"));
    fs::create_dir_all(&upper).unwrap();
    fs::create_dir_all(&work).unwrap();
    let rootfs = RootfsSpec::Overlay {
        lowers,
        upper,
        work,
    };
    let out = fx.stdout(&fx.spec(rootfs, "ls /layers | wc -l; cat /top; id -u"));
    // The topmost layer (listed first) wins for /top.
    assert_eq!(out, vec!["60", "59", "0"]);
}

fn cache_mount(id: &str, target: &str, sharing: CacheSharing) -> CacheMount {
    CacheMount {
        id: Some(id.into()),
        target: target.into(),
        sharing,
        from: None,
        source: None,
        mode: None,
        uid: None,
        gid: None,
        readonly: false,
    }
}

#[test]
fn cache_mount_options_owner_mode_seed_and_private_sharing() {
    let fx = std::sync::Arc::new(Fixture::new(UsernsMode::Subuid));
    // Owner and mode of a new cache, as container ids.
    let (ov, _) = fx.overlay("a");
    let mut spec = fx.spec(ov.clone(), "stat -c '%u:%g %a' /c");
    let mut c = cache_mount("owned", "/c", CacheSharing::Shared);
    (c.uid, c.gid, c.mode) = (Some(1000), Some(1000), Some(0o700));
    spec.mounts.push(RunMount::Cache(c));
    assert_eq!(fx.stdout(&spec), vec!["1000:1000 700"]);

    // Seeded from a directory of the caller.
    let seed = fx.path("seed");
    fs::create_dir_all(seed.join("sub")).unwrap();
    fs::write(seed.join("sub/hello"), "seeded\n").unwrap();
    let mut spec = fx.spec(ov.clone(), "cat /c/hello");
    let mut c = cache_mount("seeded", "/c", CacheSharing::Shared);
    (c.from, c.source) = (Some(seed), Some("sub".into()));
    spec.mounts.push(RunMount::Cache(c));
    assert_eq!(fx.stdout(&spec), vec!["seeded"]);

    // private: a second concurrent user gets another, empty instance.
    let mut long = fx.spec(ov.clone(), "echo first > /c/who; echo started; sleep 2");
    long.mounts.push(RunMount::Cache(cache_mount(
        "priv",
        "/c",
        CacheSharing::Private,
    )));
    let (tx, rx) = std::sync::mpsc::channel();
    let fx2 = fx.clone();
    let t = std::thread::spawn(move || {
        fx2.sandbox.run(&long, &mut |_, l| {
            if l == b"started" {
                let _ = tx.send(());
            }
        })
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("first step started");
    let (ov2, _) = fx.overlay("b");
    let mut spec = fx.spec(ov2, "ls /c | wc -l");
    spec.mounts.push(RunMount::Cache(cache_mount(
        "priv",
        "/c",
        CacheSharing::Private,
    )));
    assert_eq!(fx.stdout(&spec), vec!["0"]);
    assert!(t.join().unwrap().unwrap().exit.success());
    // Once free, the first instance is used again.
    let mut spec = fx.spec(ov, "cat /c/who");
    spec.mounts.push(RunMount::Cache(cache_mount(
        "priv",
        "/c",
        CacheSharing::Private,
    )));
    assert_eq!(fx.stdout(&spec), vec!["first"]);
}

#[test]
fn cache_owner_needs_a_range_in_single_mode() {
    let fx = Fixture::new(UsernsMode::Single);
    let (ov, _) = fx.overlay("a");
    let mut spec = fx.spec(ov, "true");
    let mut c = cache_mount("owned", "/c", CacheSharing::Shared);
    c.uid = Some(1000);
    spec.mounts.push(RunMount::Cache(c));
    match fx.run(&spec).0 {
        Err(SandboxError::InvalidSpec(m)) => assert!(m.contains("usermod --add-subuids"), "{m}"),
        other => panic!("expected an invalid-spec error, got {other:?}"),
    }
}

#[test]
fn ssh_agent_socket_is_forwarded() {
    let fx = Fixture::new(UsernsMode::Auto);
    let sock = fx.path("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let (ov, upper) = fx.overlay("a");
    let mut spec = fx.spec(
        ov.clone(),
        "test -S \"$SSH_AUTH_SOCK\" && echo $SSH_AUTH_SOCK",
    );
    let ssh = |socket| {
        RunMount::Ssh(SshMount {
            id: None,
            target: None,
            required: true,
            socket,
        })
    };
    spec.mounts.push(ssh(Some(sock)));
    assert_eq!(fx.stdout(&spec), vec!["/run/buildkit/ssh_agent.0"]);
    assert_eq!(list_tree(&upper), Vec::<String>::new());
    let mut spec = fx.spec(ov, "true");
    spec.mounts.push(ssh(None));
    match fx.run(&spec).0 {
        Err(SandboxError::InvalidSpec(m)) => assert!(m.contains("SSH_AUTH_SOCK"), "{m}"),
        other => panic!("expected an invalid-spec error, got {other:?}"),
    }
}

#[test]
fn user_groups_home_and_env_come_from_the_image_and_the_step() {
    let fx = Fixture::new(UsernsMode::Subuid);
    let dir = fx.path("groups-root");
    sandbox_support::busybox_tree(&dir);
    let passwd = fs::read_to_string(dir.join("etc/passwd")).unwrap();
    fs::write(
        dir.join("etc/passwd"),
        passwd + "app:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    let group = fs::read_to_string(dir.join("etc/group")).unwrap();
    fs::write(
        dir.join("etc/group"),
        group + "wheel:x:10:root,app\napp:x:1000:\n",
    )
    .unwrap();
    let mut spec = fx.spec(
        RootfsSpec::Dir(dir),
        "id -u; id -g; id -G; echo $HOME; echo $X; umask",
    );
    spec.user = Some("app".into());
    spec.env = vec![("X".into(), "old".into()), ("X".into(), "new".into())];
    let out = fx.stdout(&spec);
    assert_eq!(
        out,
        vec!["1000", "1000", "1000 10", "/home/app", "new", "0022"]
    );
}

#[test]
fn the_step_starts_with_default_signal_handling() {
    // The Rust runtime of this test ignores SIGPIPE; the step must not inherit it.
    let fx = Fixture::new(UsernsMode::Auto);
    let (ov, _) = fx.overlay("a");
    // Directly, not via sh (which sets up its own signal handling).
    let argv = ["grep", "-E", "Sig(Ign|Blk)", "/proc/self/status"];
    let spec = runtime::RunSpec::new(ov, argv.iter().map(|s| s.to_string()).collect());
    let out = fx.stdout(&spec);
    assert_eq!(
        out,
        vec!["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"]
    );
}

#[test]
fn a_subuid_range_is_mapped_once_and_shared() {
    let fx = Fixture::new(UsernsMode::Subuid);
    let script = "readlink /proc/self/ns/user; readlink /proc/self/ns/mnt; cat /proc/self/uid_map";
    let (ov, _) = fx.overlay("a");
    let a = fx.stdout(&fx.spec(ov.clone(), script));
    let b = fx.stdout(&fx.spec(ov, script));
    assert_eq!(a[0], b[0], "both steps run in the build's user namespace");
    // ...which is the one this process keeps open (inode numbers of freed
    // namespaces are reused, so equality alone would not prove sharing).
    let held: Vec<String> = fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .map(|p| p.display().to_string())
        .filter(|l| l.starts_with("user:["))
        .collect();
    assert!(held.contains(&a[0]), "{} not in {held:?}", a[0]);
    let own_mnt = fs::read_link("/proc/self/ns/mnt")
        .unwrap()
        .display()
        .to_string();
    assert_ne!(a[1], own_mnt, "the step has its own mount namespace");
    let maps: Vec<Vec<&str>> = a[2..]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let (uid, _) = fx
        .sandbox
        .mapping()
        .expect("user-namespace isolation")
        .caller();
    assert_eq!(
        maps,
        vec![
            vec!["0", &uid.to_string(), "1"],
            vec!["1", "100000", "65536"]
        ]
    );
    let m = fx
        .sandbox
        .mapping()
        .expect("user-namespace isolation")
        .clone();
    let inside = run_in_userns(&m, || {
        fs::read_link("/proc/self/ns/user").map(|p| p.display().to_string())
    })
    .unwrap();
    assert_eq!(inside, a[0]);
}

/// Helper for the disabled-userns test: runs only when re-invoked by it.
#[test]
#[ignore]
fn helper_report_sandbox_error() {
    if std::env::var_os("STRATA_TEST_REPORT_SANDBOX_ERROR").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let isolation = std::env::var("STRATA_TEST_ISOLATION")
        .unwrap_or_default()
        .parse()
        .unwrap();
    let res = runtime::Sandbox::new(runtime::SandboxOptions {
        isolation,
        userns: UsernsMode::Auto,
        state_dir: tmp.path().join("state"),
        cache_dir: None,
    });
    match res {
        Ok(sb) => println!("SANDBOX-RESULT: ok: {}", sb.isolation_reason()),
        Err(e) => println!("SANDBOX-RESULT: {e}"),
    }
}

/// The result line of `helper_report_sandbox_error` run as root of a user
/// namespace whose limit for nested user namespaces is 0.
fn sandbox_result_without_nested_userns(isolation: &str) -> String {
    let out = std::process::Command::new("unshare")
        .args(["-Ur", "sh", "-c"])
        .arg("echo 0 > /proc/sys/user/max_user_namespaces && exec \"$0\" --exact helper_report_sandbox_error --include-ignored --nocapture")
        .arg(std::env::current_exe().unwrap())
        .env("STRATA_TEST_REPORT_SANDBOX_ERROR", "1")
        .env("STRATA_TEST_ISOLATION", isolation)
        .output()
        .expect("util-linux `unshare` is needed for this test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find(|l| l.starts_with("SANDBOX-RESULT: "))
        .unwrap_or_else(|| {
            panic!(
                "no result: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string()
}

/// Root with CAP_SYS_CHROOT where no user namespace can be made (a CI
/// container with the default seccomp profile, in miniature): `auto`
/// picks chroot isolation and says why.
#[test]
fn auto_isolation_falls_back_to_chroot_as_root_without_user_namespaces() {
    let line = sandbox_result_without_nested_userns("auto");
    assert!(
        line.starts_with(
            "SANDBOX-RESULT: ok: chroot isolation, because no user namespace can be made here"
        ),
        "{line}"
    );
    assert!(line.contains("user.max_user_namespaces is 0"), "{line}");
    assert!(
        line.contains("the container strata runs in is the security boundary"),
        "{line}"
    );
}

#[test]
fn disabled_user_namespaces_are_explained() {
    // Inside a user namespace of our own, its root may lower the limit for
    // namespaces created below it: a host with userns disabled, in miniature.
    let line = sandbox_result_without_nested_userns("userns");
    assert!(
        line.contains("sysctl user.max_user_namespaces is 0; ask your admin to raise it"),
        "{line}"
    );
}

#[test]
fn bind_mounts_from_layers_see_their_union() {
    let fx = Fixture::new(UsernsMode::Auto);
    let (top, bottom) = (fx.path("layer-top"), fx.path("layer-bottom"));
    fs::create_dir_all(top.join("data")).unwrap();
    fs::create_dir_all(bottom.join("data")).unwrap();
    fs::write(top.join("data/same"), "top\n").unwrap();
    fs::write(bottom.join("data/same"), "bottom\n").unwrap();
    fs::write(bottom.join("data/only-bottom"), "b\n").unwrap();
    let bind = |target: &str, readwrite: bool, layers: Vec<std::path::PathBuf>| {
        RunMount::Bind(BindMount {
            from: BindFrom::Layers(layers),
            source: Some("/data".into()),
            target: target.into(),
            readwrite,
        })
    };
    let (ov, upper) = fx.overlay("a");
    let mut spec = fx.spec(
        ov,
        "cat /ro/same /ro/only-bottom; touch /ro/x 2>/dev/null || echo ro; \
         touch /rw/x && echo rw-ok; cat /one/same",
    );
    spec.mounts
        .push(bind("/ro", false, vec![top.clone(), bottom.clone()]));
    spec.mounts
        .push(bind("/rw", true, vec![top.clone(), bottom.clone()]));
    spec.mounts.push(bind("/one", false, vec![bottom.clone()]));
    assert_eq!(fx.stdout(&spec), vec!["top", "b", "ro", "rw-ok", "bottom"]);
    assert!(!top.join("data/x").exists() && !bottom.join("data/x").exists());
    assert_eq!(list_tree(&upper), Vec::<String>::new());
}
