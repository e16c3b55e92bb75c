//! Acceptance tests of the snapshotters and the layer diff, run as an
//! unprivileged user (the CI user `builder`, with a subordinate id range).
//!
//! One step script runs in the real sandbox (busybox `sh -c`) on a snapshot
//! of a small base layer, once per snapshotter; `prepare`, `diff`, `commit`
//! and `remove` run inside the build's user namespace as the builder will run
//! them. Both snapshotters must report exactly the expected changes, the
//! same for both, and a committed layer must give the merged view to the
//! next step.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use runtime::diff::{Change, ChangeKind, EntryType};
use runtime::sandbox::run_mounts::{RunMount, TmpfsMount};
use runtime::sandbox::{
    IdMapping, OutputStream, RunSpec, Sandbox, SandboxOptions, UsernsMode, sandbox_mount_points,
};
use runtime::snapshot::{ActiveSnapshot, NativeSnapshotter, OverlaySnapshotter, Snapshotter};
use runtime::{RootfsSpec, remove_tree_in_userns, run_in_userns};

/// A fixed mtime for the base layer, so "changed" is never an accident.
const BASE_MTIME: i64 = 1_600_000_000;

struct Fixture {
    tmp: tempfile::TempDir,
    sandbox: Sandbox,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_mode(UsernsMode::Auto)
    }

    fn with_mode(userns: UsernsMode) -> Fixture {
        let tmp = tempfile::tempdir().expect("temp dir (set TMPDIR to a writable ext4/xfs dir)");
        let sandbox = Sandbox::new(SandboxOptions {
            isolation: Default::default(),
            userns,
            state_dir: tmp.path().join("state"),
            cache_dir: Some(tmp.path().join("cache")),
        })
        .unwrap_or_else(|e| panic!("cannot create a sandbox: {e}"));
        let base = tmp.path().join("base");
        make_base(&base);
        Fixture { tmp, sandbox }
    }

    fn base(&self) -> PathBuf {
        self.tmp.path().join("base")
    }

    fn snapshots(&self) -> PathBuf {
        self.tmp.path().join("snapshots")
    }

    fn mapping(&self) -> &IdMapping {
        self.sandbox.mapping().expect("user-namespace isolation")
    }

    fn snapshotters(&self) -> Vec<Box<dyn Snapshotter>> {
        vec![
            Box::new(OverlaySnapshotter::new(self.snapshots())),
            Box::new(NativeSnapshotter::new(self.snapshots())),
        ]
    }

    fn prepare(&self, s: &dyn Snapshotter, key: &str, lowers: &[PathBuf]) -> ActiveSnapshot {
        run_in_userns(self.mapping(), || s.prepare(key, lowers))
            .unwrap_or_else(|e| panic!("{} prepare {key}: {e}", s.kind()))
    }

    fn diff(&self, s: &dyn Snapshotter, a: &ActiveSnapshot, excludes: &[PathBuf]) -> Vec<Change> {
        run_in_userns(self.mapping(), || s.diff(a, excludes))
            .unwrap_or_else(|e| panic!("{} diff: {e}", s.kind()))
    }

    fn commit(&self, s: &dyn Snapshotter, a: &ActiveSnapshot, changes: &[Change]) -> PathBuf {
        run_in_userns(self.mapping(), || s.commit(a, changes).map(|_| ()))
            .unwrap_or_else(|e| panic!("{} commit: {e}", s.kind()));
        a.layer_dir()
    }

    /// Runs `script` with busybox sh in the sandbox; returns stdout lines.
    fn run(&self, rootfs: &RootfsSpec, script: &str, mounts: Vec<RunMount>) -> Vec<String> {
        let mut spec = RunSpec::new(
            rootfs.clone(),
            vec!["/bin/sh".into(), "-c".into(), script.into()],
        );
        spec.mounts = mounts;
        let mut out = Vec::new();
        let mut err = Vec::new();
        let res = self.sandbox.run(&spec, &mut |stream, line| {
            let line = String::from_utf8_lossy(line).into_owned();
            match stream {
                OutputStream::Stdout => out.push(line),
                OutputStream::Stderr => err.push(line),
            }
        });
        let outcome = res.unwrap_or_else(|e| panic!("step did not run: {e}; stderr {err:?}"));
        assert!(
            outcome.exit.success(),
            "step failed: {:?}; stdout {out:?}; stderr {err:?}",
            outcome.exit
        );
        out
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Snapshots may hold files of subordinate ids.
        let _ = remove_tree_in_userns(
            self.sandbox.mapping().expect("user-namespace isolation"),
            &self.snapshots(),
        );
    }
}

/// The base layer: busybox, plain files, a dir with children, a symlink.
fn make_base(base: &Path) {
    let w = |p: &str, content: &str| {
        let path = base.join(p);
        fs::create_dir_all(path.parent().expect("relative paths have parents")).expect("mkdir");
        fs::write(&path, content).expect("write base file");
    };
    fs::create_dir_all(base.join("bin")).expect("mkdir bin");
    fs::copy("/bin/busybox", base.join("bin/busybox"))
        .expect("busybox-static must be installed at /bin/busybox");
    symlink("busybox", base.join("bin/sh")).expect("symlink sh");
    fs::create_dir_all(base.join("etc")).expect("mkdir etc");
    w("etc/conf", "v1\n");
    w("keep.txt", "keep\n");
    w("modify.txt", "old\n");
    w("delete.txt", "bye\n");
    w("chmod.bin", "#!/bin/sh\n");
    w("dir_del/a", "a\n");
    w("dir_del/sub/b", "b\n");
    w("dir_to_file/x", "x\n");
    w("file_to_dir", "f\n");
    w("opq/old1", "1\n");
    w("opq/old2", "2\n");
    w("parent/child", "c\n");
    w("deep/a/b/file", "deep\n");
    fs::create_dir_all(base.join("untouched/deeper")).expect("mkdir");
    w("untouched/deeper/file", "same\n");
    symlink("keep.txt", base.join("link")).expect("symlink");
    fs::set_permissions(base.join("chmod.bin"), fs::Permissions::from_mode(0o755)).expect("chmod");
    set_tree_mtime(base);
}

/// Every entry below `dir` (and `dir`) gets [`BASE_MTIME`], children first.
fn set_tree_mtime(dir: &Path) {
    for item in fs::read_dir(dir).expect("list") {
        let path = item.expect("entry").path();
        let md = fs::symlink_metadata(&path).expect("stat");
        if md.is_dir() {
            set_tree_mtime(&path);
        }
        set_mtime(&path);
    }
    set_mtime(dir);
}

fn set_mtime(path: &Path) {
    let ts = rustix::fs::Timespec {
        tv_sec: BASE_MTIME,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: ts,
            last_modification: ts,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .expect("utimensat");
}

/// The step every snapshotter runs. `chown` to a non-root id only where the
/// mapping has other ids.
fn step_script(range: bool) -> String {
    let chown = if range {
        "chown 1000:1000 /added.txt && chmod 600 /added.txt"
    } else {
        "true"
    };
    format!(
        "set -e
        echo new > /added.txt
        {chown}
        echo changed >> /modify.txt
        rm /delete.txt
        rm -rf /dir_del
        rm -rf /dir_to_file && echo f > /dir_to_file
        rm /file_to_dir && mkdir /file_to_dir && echo in > /file_to_dir/inner
        rm -rf /opq && mkdir /opq && echo n > /opq/new
        mkdir -p /newdir/deep && echo d > /newdir/deep/file
        echo p > /parent/added
        echo more >> /deep/a/b/file
        echo h > /hl_a && ln /hl_a /hl_b
        ln -s /keep.txt /newlink
        chmod 4755 /chmod.bin
        chown 0:0 /keep.txt
        echo data > /scratch/in-tmpfs"
    )
}

/// A change reduced to what must be equal between snapshotters (no mtimes,
/// no host paths).
#[derive(Debug, PartialEq, Eq, Clone)]
struct Shape {
    path: String,
    kind: &'static str,
    file: String,
    mode: Option<u32>,
    owner: Option<(u32, u32)>,
}

fn shape(c: &Change) -> Shape {
    let kind = match &c.kind {
        ChangeKind::Added(_) => "added",
        ChangeKind::Modified(_) => "modified",
        ChangeKind::Deleted => "deleted",
        ChangeKind::Opaque(_) => "opaque",
    };
    let entry = c.kind.entry();
    let file = match entry.map(|e| &e.file) {
        None => String::new(),
        Some(EntryType::File { size, .. }) => format!("file {size}"),
        Some(EntryType::Dir) => "dir".into(),
        Some(EntryType::Symlink { target }) => format!("symlink {}", target.display()),
        Some(EntryType::Hardlink { target }) => format!("hardlink {}", target.display()),
        Some(other) => format!("{other:?}"),
    };
    Shape {
        path: c.path.display().to_string(),
        kind,
        file,
        mode: entry.map(|e| e.mode),
        owner: entry.map(|e| (e.uid, e.gid)),
    }
}

fn s(
    path: &str,
    kind: &'static str,
    file: &str,
    mode: Option<u32>,
    owner: Option<(u32, u32)>,
) -> Shape {
    Shape {
        path: path.into(),
        kind,
        file: file.into(),
        mode,
        owner,
    }
}

fn expected(range: bool) -> Vec<Shape> {
    let root = Some((0, 0));
    let added_owner = if range { Some((1000, 1000)) } else { root };
    let added_mode = if range { 0o600 } else { 0o644 };
    vec![
        s(
            "added.txt",
            "added",
            "file 4",
            Some(added_mode),
            added_owner,
        ),
        s("chmod.bin", "modified", "file 10", Some(0o4755), root),
        s("deep/a/b/file", "modified", "file 10", Some(0o644), root),
        s("delete.txt", "deleted", "", None, None),
        s("dir_del", "deleted", "", None, None),
        s("dir_to_file", "modified", "file 2", Some(0o644), root),
        s("file_to_dir", "modified", "dir", Some(0o755), root),
        s("file_to_dir/inner", "added", "file 3", Some(0o644), root),
        s("hl_a", "added", "file 2", Some(0o644), root),
        s("hl_b", "added", "hardlink hl_a", Some(0o644), root),
        s("modify.txt", "modified", "file 12", Some(0o644), root),
        s("newdir", "added", "dir", Some(0o755), root),
        s("newdir/deep", "added", "dir", Some(0o755), root),
        s("newdir/deep/file", "added", "file 2", Some(0o644), root),
        s("newlink", "added", "symlink /keep.txt", Some(0o777), root),
        s("opq", "opaque", "dir", Some(0o755), root),
        s("opq/new", "added", "file 2", Some(0o644), root),
        s("parent", "modified", "dir", Some(0o755), root),
        s("parent/added", "added", "file 2", Some(0o644), root),
    ]
}

/// Where the diff says the content of file `path` is.
fn source_of(changes: &[Change], path: &str) -> PathBuf {
    changes
        .iter()
        .find_map(|c| match c.kind.entry().map(|e| &e.file) {
            Some(EntryType::File { source, .. }) if c.path == Path::new(path) => {
                Some(source.clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("{path} is a file change"))
}

fn excludes_for(mounts: &[RunMount]) -> Vec<PathBuf> {
    sandbox_mount_points(mounts)
        .into_iter()
        .map(|m| PathBuf::from(m.path))
        .collect()
}

fn scratch_mount() -> Vec<RunMount> {
    vec![RunMount::Tmpfs(TmpfsMount {
        target: "/scratch".into(),
        size: None,
    })]
}

#[test]
fn the_same_step_gives_the_same_exact_diff_with_every_snapshotter() {
    let fx = Fixture::new();
    assert_eq!(
        fx.mapping().is_range(),
        fx.sandbox.host().range_mapping_available().is_ok(),
        "a subordinate range is used whenever the host offers one, so container ids are tested"
    );
    same_step_same_diff(&fx);
}

#[test]
fn the_same_step_gives_the_same_exact_diff_with_a_single_id_mapping() {
    let fx = Fixture::with_mode(UsernsMode::Single);
    assert!(!fx.mapping().is_range());
    same_step_same_diff(&fx);
}

fn same_step_same_diff(fx: &Fixture) {
    let range = fx.mapping().is_range();
    let want = expected(range);
    let mut results = Vec::new();
    for s in fx.snapshotters() {
        let key = format!("step-{}", s.kind());
        let active = fx.prepare(s.as_ref(), &key, &[fx.base()]);
        let mounts = scratch_mount();
        fx.run(&active.rootfs, &step_script(range), mounts.clone());
        let changes = fx.diff(s.as_ref(), &active, &excludes_for(&mounts));
        let got: Vec<Shape> = changes.iter().map(shape).collect();
        assert_eq!(got, want, "{} snapshotter", s.kind());
        // Content is readable where the diff says (inside the namespace).
        let source = source_of(&changes, "modify.txt");
        let content = run_in_userns(fx.mapping(), || {
            fs::read_to_string(&source).map_err(|e| e.to_string())
        })
        .expect("read content");
        assert_eq!(content, "old\nchanged\n", "{} content", s.kind());
        if range {
            // A file of a subordinate id with mode 600: readable only inside
            // the namespace, which is why the builder diffs and writes
            // layers there.
            let added = source_of(&changes, "added.txt");
            assert!(fs::read(&added).is_err(), "unreadable from outside");
            let inside = run_in_userns(fx.mapping(), || {
                fs::read_to_string(&added).map_err(|e| e.to_string())
            })
            .expect("readable inside");
            assert_eq!(inside, "new\n");
        }
        results.push(got);
        run_in_userns(fx.mapping(), || s.remove(&key)).expect("remove");
        assert!(!fx.snapshots().join(&key).exists(), "removed");
    }
    assert_eq!(results[0], results[1], "overlay and native agree");
}

#[test]
fn a_committed_layer_is_the_lower_of_the_next_step_for_every_combination() {
    let fx = Fixture::new();
    let range = fx.mapping().is_range();
    let check = "set -e
        test ! -e /delete.txt && echo delete-gone
        test ! -e /dir_del && echo dir-gone
        ls /opq
        test -f /dir_to_file && echo dir-now-file
        cat /file_to_dir/inner
        cat /modify.txt
        stat -c %a /chmod.bin
        stat -c %h /hl_a
        readlink /newlink
        cat /untouched/deeper/file
        cat /deep/a/b/file
        test ! -e /scratch/in-tmpfs && echo tmpfs-not-in-layer
        stat -c %u /added.txt";
    let owner = if range { "1000" } else { "0" };
    let want: Vec<String> = [
        "delete-gone",
        "dir-gone",
        "new",
        "dir-now-file",
        "in",
        "old",
        "changed",
        "4755",
        "2",
        "/keep.txt",
        "same",
        "deep",
        "more",
        "tmpfs-not-in-layer",
        owner,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let snapshotters = fx.snapshotters();
    let mut listings = Vec::new();
    for (first, second) in [(0, 0), (1, 1), (0, 1), (1, 0)] {
        let (a, b) = (snapshotters[first].as_ref(), snapshotters[second].as_ref());
        let k1 = format!("one-{}-{first}{second}", a.kind());
        let k2 = format!("two-{}-{first}{second}", b.kind());
        let step1 = fx.prepare(a, &k1, &[fx.base()]);
        let mounts = scratch_mount();
        fx.run(&step1.rootfs, &step_script(range), mounts.clone());
        let changes = fx.diff(a, &step1, &excludes_for(&mounts));
        let layer = fx.commit(a, &step1, &changes);
        assert!(layer.is_dir(), "commit made {}", layer.display());
        if first == second {
            let listing = run_in_userns(fx.mapping(), || layer_listing(&layer))
                .unwrap_or_else(|e| panic!("list {}: {e}", layer.display()));
            listings.push(listing);
        }

        let step2 = fx.prepare(b, &k2, &[layer.clone(), fx.base()]);
        let out = fx.run(&step2.rootfs, check, Vec::new());
        assert_eq!(out, want, "{} layer under {}", a.kind(), b.kind());
        // A step that changes nothing has an empty diff.
        let none = fx.diff(b, &step2, &excludes_for(&[]));
        assert_eq!(none, Vec::new(), "{} over {}", b.kind(), a.kind());
        for (s, k) in [(b, &k2), (a, &k1)] {
            run_in_userns(fx.mapping(), || s.remove(k)).expect("remove");
        }
    }
    // Both snapshotters commit the very same layer, in overlay form.
    assert_eq!(listings[0], listings[1], "overlay layer vs native layer");
    let owner = if range { "1000:1000" } else { "0:0" };
    let want = [
        format!(
            "added.txt f {} {owner} 4 1",
            if range { "600" } else { "644" }
        ),
        "chmod.bin f 4755 0:0 10 1".to_string(),
        "deep d 755 0:0".to_string(),
        "deep/a d 755 0:0".to_string(),
        "deep/a/b d 755 0:0".to_string(),
        "deep/a/b/file f 644 0:0 10 1".to_string(),
        "delete.txt whiteout".to_string(),
        "dir_del whiteout".to_string(),
        "dir_to_file f 644 0:0 2 1".to_string(),
        "file_to_dir d 755 0:0".to_string(),
        "file_to_dir/inner f 644 0:0 3 1".to_string(),
        "hl_a f 644 0:0 2 2".to_string(),
        "hl_b f 644 0:0 2 2".to_string(),
        "modify.txt f 644 0:0 12 1".to_string(),
        "newdir d 755 0:0".to_string(),
        "newdir/deep d 755 0:0".to_string(),
        "newdir/deep/file f 644 0:0 2 1".to_string(),
        "newlink l /keep.txt".to_string(),
        "opq d 755 0:0 opaque".to_string(),
        "opq/new f 644 0:0 2 1".to_string(),
        "parent d 755 0:0".to_string(),
        "parent/added f 644 0:0 2 1".to_string(),
    ];
    assert_eq!(listings[0].lines().collect::<Vec<_>>(), want);
}

/// One line per entry of a layer directory: path, type, mode, owner, size,
/// link count; whiteouts and opaque markers spelled out; no mtimes.
fn layer_listing(layer: &Path) -> Result<String, String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<(), String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(|e| e.to_string())?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let rel = format!("{rel}{}", name.to_string_lossy());
            let md = fs::symlink_metadata(&path).map_err(|e| e.to_string())?;
            let ft = md.file_type();
            let perm = md.mode() & 0o7777;
            let owner = format!("{}:{}", md.uid(), md.gid());
            if ft.is_char_device() && md.rdev() == 0 {
                out.push(format!("{rel} whiteout"));
            } else if ft.is_dir() {
                let opaque = xattr::get(&path, "user.overlay.opaque")
                    .map_err(|e| e.to_string())?
                    .is_some_and(|v| v == b"y");
                let mark = if opaque { " opaque" } else { "" };
                out.push(format!("{rel} d {perm:o} {owner}{mark}"));
                walk(&path, &format!("{rel}/"), out)?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&path).map_err(|e| e.to_string())?;
                out.push(format!("{rel} l {}", target.display()));
            } else {
                out.push(format!(
                    "{rel} f {perm:o} {owner} {} {}",
                    md.len(),
                    md.nlink()
                ));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(layer, "", &mut out)?;
    Ok(out.join("\n"))
}

#[test]
fn the_sandbox_mount_points_never_reach_the_diff() {
    let fx = Fixture::new();
    for s in fx.snapshotters() {
        let key = format!("mounts-{}", s.kind());
        let active = fx.prepare(s.as_ref(), &key, &[fx.base()]);
        let mounts = vec![RunMount::Tmpfs(TmpfsMount {
            target: "/var/cache/tool".into(),
            size: None,
        })];
        // Writes into every mounted place, none of which is the rootfs.
        fx.run(
            &active.rootfs,
            "set -e; echo x > /var/cache/tool/f; cat /etc/hosts > /dev/null; \
             test -d /proc/self && test -e /dev/null; echo nameserver > /etc/resolv.conf || true",
            mounts.clone(),
        );
        let changes = fx.diff(s.as_ref(), &active, &excludes_for(&mounts));
        assert_eq!(
            changes.iter().map(shape).collect::<Vec<_>>(),
            Vec::new(),
            "{}",
            s.kind()
        );
        run_in_userns(fx.mapping(), || s.remove(&key)).expect("remove");
    }
}

#[test]
fn from_scratch_both_snapshotters_start_empty() {
    let fx = Fixture::new();
    for s in fx.snapshotters() {
        let key = format!("scratch-{}", s.kind());
        let active = fx.prepare(s.as_ref(), &key, &[]);
        // What the builder's COPY into a scratch stage would do: write into
        // the writable part of the snapshot (no mount needed for new files).
        let target = match &active.rootfs {
            RootfsSpec::Overlay { upper, .. } => upper.clone(),
            RootfsSpec::Dir(dir) => dir.clone(),
        };
        let listing = run_in_userns(fx.mapping(), || {
            let before = fs::read_dir(&target).map_err(|e| e.to_string())?.count();
            fs::write(target.join("hello"), "hi").map_err(|e| e.to_string())?;
            Ok::<u64, String>(before as u64)
        })
        .expect("write into the snapshot");
        assert_eq!(listing, 0, "{}: an empty root", s.kind());
        let changes = fx.diff(s.as_ref(), &active, &[]);
        assert_eq!(
            changes.iter().map(shape).collect::<Vec<_>>(),
            vec![self::s(
                "hello",
                "added",
                "file 2",
                Some(0o644),
                Some((0, 0))
            )],
            "{}",
            s.kind()
        );
        let layer = fx.commit(s.as_ref(), &active, &changes);
        let listing = run_in_userns(fx.mapping(), || layer_listing(&layer)).expect("list");
        assert_eq!(listing, "hello f 644 0:0 2 1", "{}", s.kind());
        run_in_userns(fx.mapping(), || s.remove(&key)).expect("remove");
    }
}
