//! Shared fixtures for the sandbox tests: a busybox rootfs built from the
//! host's static /bin/busybox, and sandboxes in a private temp dir.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use runtime::sandbox::{OutputStream, RunSpec, Sandbox, SandboxOptions, UsernsMode};
use runtime::{RootfsSpec, RunOutcome, SandboxError};

pub const APPLETS: &[&str] = &[
    "sh", "id", "echo", "cat", "chown", "ls", "wget", "nc", "sleep", "ip", "true", "false", "stat",
    "mkdir", "touch", "rm", "grep", "test", "uname", "hostname", "env", "pwd", "find", "wc",
    "readlink",
];

/// `<dir>/bin/busybox` + applet symlinks, /etc/passwd with root and nobody.
pub fn busybox_tree(dir: &Path) {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::create_dir_all(dir.join("tmp")).unwrap();
    fs::copy("/bin/busybox", dir.join("bin/busybox"))
        .expect("busybox-static must be installed at /bin/busybox");
    for a in APPLETS {
        symlink("busybox", dir.join("bin").join(a)).unwrap();
    }
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
}

pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub sandbox: Sandbox,
}

impl Fixture {
    pub fn new(mode: UsernsMode) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("lower")).unwrap();
        busybox_tree(&tmp.path().join("lower"));
        let sandbox = Sandbox::new(SandboxOptions {
            isolation: Default::default(),
            userns: mode,
            state_dir: tmp.path().join("state"),
            cache_dir: Some(tmp.path().join("cache")),
        })
        .unwrap_or_else(|e| panic!("cannot create a sandbox: {e}"));
        Fixture { tmp, sandbox }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    /// A fresh overlay rootfs over the busybox lower: (spec, upper dir).
    pub fn overlay(&self, name: &str) -> (RootfsSpec, PathBuf) {
        let upper = self.path(&format!("{name}-upper"));
        let work = self.path(&format!("{name}-work"));
        fs::create_dir_all(&upper).unwrap();
        fs::create_dir_all(&work).unwrap();
        (
            RootfsSpec::Overlay {
                lowers: vec![self.path("lower")],
                upper: upper.clone(),
                work,
            },
            upper,
        )
    }

    pub fn spec(&self, rootfs: RootfsSpec, script: &str) -> RunSpec {
        RunSpec::new(rootfs, vec!["sh".into(), "-c".into(), script.into()])
    }

    /// Runs and collects (stream, line) pairs.
    pub fn run(
        &self,
        spec: &RunSpec,
    ) -> (
        Result<RunOutcome, SandboxError>,
        Vec<(OutputStream, String)>,
    ) {
        let mut lines = Vec::new();
        let res = self.sandbox.run(spec, &mut |s, l| {
            lines.push((s, String::from_utf8_lossy(l).into_owned()))
        });
        (res, lines)
    }

    /// Runs, requires exit 0, returns stdout lines.
    pub fn stdout(&self, spec: &RunSpec) -> Vec<String> {
        let (res, lines) = self.run(spec);
        let out = res.unwrap_or_else(|e| panic!("run failed: {e}; output {lines:?}"));
        assert!(
            out.exit.success(),
            "exit {} with output {lines:?}",
            out.exit
        );
        lines
            .into_iter()
            .filter(|(s, _)| *s == OutputStream::Stdout)
            .map(|(_, l)| l)
            .collect()
    }
}

/// Every entry below `dir`, relative, sorted.
pub fn list_tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(base, &p, out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}
