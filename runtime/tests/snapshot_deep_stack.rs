//! An image deeper than one overlay mount takes: 60 layers whose paths add up
//! to more than the one page of mount(2) options. The overlay snapshotter
//! squashes the bottom of the stack into one copied layer; the step must
//! still see exactly the merged view (whiteouts and opaque directories of the
//! kept layers applied over the squashed ones) and the diff must still be
//! relative to the real stack.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

use runtime::diff::ChangeKind;
use runtime::sandbox::{OutputStream, RunSpec, Sandbox, SandboxOptions, UsernsMode};
use runtime::snapshot::{OverlaySnapshotter, Snapshotter};
use runtime::{RootfsSpec, remove_tree_in_userns, run_in_userns};

const LAYERS: usize = 60;

#[test]
fn a_stack_deeper_than_one_mount_is_squashed_and_still_correct() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let sandbox = Sandbox::new(SandboxOptions {
        isolation: Default::default(),
        userns: UsernsMode::Auto,
        state_dir: tmp.path().join("state"),
        cache_dir: None,
    })
    .unwrap_or_else(|e| panic!("cannot create a sandbox: {e}"));
    // lowers[0] is the topmost layer, lowers[LAYERS - 1] the base.
    let lowers: Vec<PathBuf> = (0..LAYERS)
        .map(|k| tmp.path().join(format!("layers/{k:02}-{}", "x".repeat(60))))
        .collect();
    for (k, layer) in lowers.iter().enumerate() {
        fs::create_dir_all(layer.join("from")).expect("mkdir");
        fs::write(layer.join(format!("from/{k}")), k.to_string()).expect("write");
    }
    let base = &lowers[LAYERS - 1];
    fs::create_dir_all(base.join("bin")).expect("mkdir");
    fs::copy("/bin/busybox", base.join("bin/busybox")).expect("busybox-static at /bin/busybox");
    symlink("busybox", base.join("bin/sh")).expect("symlink");
    // Layer 20 deletes layer 40's file; layer 5 makes /dir opaque over 45's.
    rustix::fs::mknodat(
        rustix::fs::CWD,
        lowers[20].join("from/40"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
    .expect("whiteout");
    fs::create_dir_all(lowers[45].join("dir")).expect("mkdir");
    fs::write(lowers[45].join("dir/x"), "x").expect("write");
    fs::create_dir_all(lowers[5].join("dir")).expect("mkdir");
    fs::write(lowers[5].join("dir/y"), "y").expect("write");
    xattr::set(lowers[5].join("dir"), "user.overlay.opaque", b"y").expect("xattr");

    let snaps = tmp.path().join("snapshots");
    let snap = OverlaySnapshotter::new(&snaps);
    let mapping = sandbox.mapping().expect("user-namespace isolation").clone();
    let active = run_in_userns(&mapping, || snap.prepare("deep", &lowers)).expect("prepare");
    let RootfsSpec::Overlay {
        lowers: mounted, ..
    } = &active.rootfs
    else {
        panic!("overlay rootfs expected");
    };
    assert!(mounted.len() < LAYERS, "squashed: {} lowers", mounted.len());
    assert!(mounted.last().is_some_and(|l| l.ends_with("squashed")));
    assert_eq!(active.lowers, lowers, "the diff still sees the real stack");

    let mut spec = RunSpec::new(
        active.rootfs.clone(),
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "set -e; ls /from | /bin/busybox wc -l; test ! -e /from/40 && echo gone; \
             /bin/busybox ls /dir; /bin/busybox cat /from/59; echo z > /from/3"
                .into(),
        ],
    );
    spec.cwd = "/".into();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let outcome = sandbox
        .run(&spec, &mut |s, l| {
            let l = String::from_utf8_lossy(l).into_owned();
            match s {
                OutputStream::Stdout => out.push(l),
                OutputStream::Stderr => err.push(l),
            }
        })
        .unwrap_or_else(|e| panic!("run: {e}; {err:?}"));
    assert!(outcome.exit.success(), "{:?} {out:?} {err:?}", outcome.exit);
    let lines: Vec<&str> = out.iter().map(|l| l.trim()).collect();
    assert_eq!(lines, vec!["59", "gone", "y", "59"], "stderr: {err:?}");

    let changes = run_in_userns(&mapping, || snap.diff(&active, &[])).expect("diff");
    let got: Vec<(String, bool)> = changes
        .iter()
        .map(|c| {
            (
                c.path.display().to_string(),
                matches!(c.kind, ChangeKind::Modified(_)),
            )
        })
        .collect();
    assert_eq!(got, vec![("from/3".to_string(), true)]);
    run_in_userns(&mapping, || {
        snap.commit(&active, &changes)?;
        snap.remove("deep")
    })
    .expect("commit and remove");
    assert!(!snaps.join("deep").exists());
    let _ = remove_tree_in_userns(&mapping, &snaps);
}
