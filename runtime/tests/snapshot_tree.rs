//! The tree snapshotter (chroot isolation): consecutive steps of a chain
//! mutate one working tree instead of copying the image for every step, a
//! layer put on top between two steps (a COPY) is applied to it, and the
//! changes it reports are the native snapshotter's for the same step.
//!
//! Runs as any user: the layers are made of the caller's own files.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use runtime::diff::{Change, ChangeKind};
use runtime::snapshot::{NativeSnapshotter, Snapshotter, TreeSnapshotter};

fn write(p: &Path, content: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn summary(changes: &[Change]) -> Vec<(PathBuf, &'static str)> {
    changes
        .iter()
        .map(|c| {
            let kind = match c.kind {
                ChangeKind::Added(_) => "added",
                ChangeKind::Modified(_) => "modified",
                ChangeKind::Deleted => "deleted",
                ChangeKind::Opaque(_) => "opaque",
            };
            (c.path.clone(), kind)
        })
        .collect()
}

/// One step on `lowers`: deletes `a`, adds `new`, rewrites `keep` in place
/// with the same size and mtime (found only by ctime and content).
fn step(snap: &dyn Snapshotter, key: &str, lowers: &[PathBuf]) -> (Vec<Change>, PathBuf) {
    let active = snap.prepare(key, lowers).unwrap();
    let runtime::RootfsSpec::Dir(rootfs) = &active.rootfs else {
        panic!("a directory root")
    };
    std::fs::remove_file(rootfs.join("a")).unwrap();
    write(&rootfs.join("new"), "new");
    let keep = rootfs.join("d/keep");
    let mtime = std::fs::metadata(&keep).unwrap().modified().unwrap();
    std::fs::write(&keep, "KEEP").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&keep)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let changes = snap.diff(&active, &[]).unwrap();
    let layer = snap.commit(&active, &changes).unwrap();
    (changes, layer)
}

#[test]
fn one_tree_is_carried_from_step_to_step_and_diffs_like_native() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("layers/base");
    write(&base.join("a"), "a");
    write(&base.join("d/keep"), "keep");
    write(&base.join("d/other"), "other");

    // The native snapshotter's view of the same step, for comparison.
    let native = NativeSnapshotter::new(tmp.path().join("native"));
    let (native_changes, _) = step(&native, "n1", std::slice::from_ref(&base));

    let tree = TreeSnapshotter::new(tmp.path().join("tree"));
    let (changes, layer) = step(&tree, "s1", std::slice::from_ref(&base));
    assert_eq!(summary(&changes), summary(&native_changes));
    assert_eq!(
        summary(&changes),
        vec![
            (PathBuf::from("a"), "deleted"),
            (PathBuf::from("d/keep"), "modified"),
            (PathBuf::from("new"), "added"),
        ]
    );
    // As the builder does: the layer moves to its shared place.
    let l1 = tmp.path().join("layers/l1");
    std::fs::rename(&layer, &l1).unwrap();
    tree.layer_stored_as(&layer, &l1);
    tree.remove("s1").unwrap();

    // The next step gets the very same tree: no copy of the image.
    let lowers = vec![l1.clone(), base.clone()];
    let active = tree.prepare("s2", &lowers).unwrap();
    let runtime::RootfsSpec::Dir(rootfs) = active.rootfs.clone() else {
        panic!("a directory root")
    };
    let other = std::fs::metadata(rootfs.join("d/other")).unwrap().ino();
    assert!(rootfs.join("new").exists() && !rootfs.join("a").exists());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("d/keep")).unwrap(),
        "KEEP"
    );
    // A step that changes nothing keeps the tree for the next one too.
    assert!(tree.diff(&active, &[]).unwrap().is_empty());
    tree.remove("s2").unwrap();

    // A COPY-like layer between two steps: applied to the carried tree.
    let copy = tmp.path().join("layers/copy");
    write(&copy.join("c"), "copied");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        copy.join("new"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
    .expect("a whiteout device (Linux 5.8+)");
    let lowers = vec![copy, l1, base];
    let active = tree.prepare("s3", &lowers).unwrap();
    let runtime::RootfsSpec::Dir(rootfs) = active.rootfs.clone() else {
        panic!("a directory root")
    };
    assert_eq!(
        std::fs::metadata(rootfs.join("d/other")).unwrap().ino(),
        other,
        "the tree was copied instead of carried"
    );
    assert_eq!(std::fs::read_to_string(rootfs.join("c")).unwrap(), "copied");
    assert!(!rootfs.join("new").exists(), "the whiteout was not applied");
    assert!(tree.diff(&active, &[]).unwrap().is_empty());
    tree.remove("s3").unwrap();

    // Dropping the snapshotter removes the parked tree.
    drop(tree);
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("tree"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
