//! The layer diff on hand-made trees in overlay form: the corner cases a
//! real step rarely produces (xattr whiteouts, shared whiteout inodes, stray
//! whiteouts, redirect markers, sandbox stubs that did reach the upper
//! directory, deep layer stacks). Everything here runs as the invoking user,
//! with no namespace: creating a 0/0 character device and `user.overlay.*`
//! xattrs needs no privilege.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use runtime::diff::{
    BaseInodes, Change, ChangeKind, EntryType, LowerView, apply_excludes, diff_overlay_upper,
    diff_trees,
};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir (set TMPDIR to a writable ext4/xfs dir)")
}

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("has parent")).expect("mkdir");
    fs::write(p, content).expect("write");
}

fn whiteout(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
    .expect("an unprivileged user can create a 0/0 whiteout (Linux 5.8+)");
}

fn opaque(dir: &Path) {
    xattr::set(dir, "user.overlay.opaque", b"y").expect("user xattrs on the temp dir's fs");
}

/// (path, kind, type) triples, the part of a change these tests check.
fn summary(changes: &[Change]) -> Vec<(String, &'static str, String)> {
    changes
        .iter()
        .map(|c| {
            let kind = match &c.kind {
                ChangeKind::Added(_) => "added",
                ChangeKind::Modified(_) => "modified",
                ChangeKind::Deleted => "deleted",
                ChangeKind::Opaque(_) => "opaque",
            };
            let file = match c.kind.entry().map(|e| &e.file) {
                None => String::new(),
                Some(EntryType::File { .. }) => "file".into(),
                Some(EntryType::Dir) => "dir".into(),
                Some(EntryType::Hardlink { target }) => format!("hardlink {}", target.display()),
                Some(EntryType::Symlink { target }) => format!("symlink {}", target.display()),
                Some(other) => format!("{other:?}"),
            };
            (c.path.display().to_string(), kind, file)
        })
        .collect()
}

fn t(path: &str, kind: &'static str, file: &str) -> (String, &'static str, String) {
    (path.into(), kind, file.into())
}

#[test]
fn whiteouts_of_both_kinds_become_deletions_and_never_hardlinks() {
    let d = tmp();
    let (lower, upper) = (d.path().join("lower"), d.path().join("upper"));
    for f in ["a", "b", "c", "dir/x"] {
        write(&lower, f, "lower");
    }
    fs::create_dir_all(&upper).expect("mkdir");
    // Overlayfs shares one whiteout inode between deletions (nlink > 1).
    whiteout(&upper.join("a"));
    fs::hard_link(upper.join("a"), upper.join("b")).expect("link whiteout");
    // The 6.7+ xattr whiteout: an empty file with user.overlay.whiteout.
    fs::write(upper.join("c"), b"").expect("write");
    xattr::set(upper.join("c"), "user.overlay.whiteout", b"y").expect("xattr");
    // A whiteout of something no lower has deletes nothing.
    whiteout(&upper.join("never-existed"));
    // A whiteout below a directory the upper made anew hides nothing either.
    fs::create_dir(upper.join("fresh")).expect("mkdir");
    whiteout(&upper.join("fresh/ghost"));

    let view = LowerView::new(vec![lower]);
    let changes = diff_overlay_upper(&upper, &view).expect("diff");
    assert_eq!(
        summary(&changes),
        vec![
            t("a", "deleted", ""),
            t("b", "deleted", ""),
            t("c", "deleted", ""),
            t("fresh", "added", "dir"),
        ]
    );
}

#[test]
fn copied_up_directories_appear_only_when_they_changed() {
    let d = tmp();
    let (lower, upper) = (d.path().join("lower"), d.path().join("upper"));
    write(&lower, "same/f", "1");
    write(&lower, "xattr/f", "1");
    write(&lower, "mode/f", "1");
    // Upper copies with identical metadata, as overlayfs' copy-up makes them.
    for dir in ["same", "xattr", "mode"] {
        let u = upper.join(dir);
        fs::create_dir_all(&u).expect("mkdir");
        write(&upper, &format!("{dir}/g"), "2");
        let md = fs::metadata(lower.join(dir)).expect("stat");
        fs::set_permissions(&u, md.permissions()).expect("chmod");
        // Overlay's own bookkeeping is never a change.
        xattr::set(&u, "user.overlay.origin", b"\0fh").expect("xattr");
        filetime_copy(&lower.join(dir), &u);
    }
    xattr::set(upper.join("xattr"), "user.app", b"v").expect("xattr");
    fs::set_permissions(upper.join("mode"), fs::Permissions::from_mode(0o700)).expect("chmod");

    let changes = diff_overlay_upper(&upper, &LowerView::new(vec![lower])).expect("diff");
    assert_eq!(
        summary(&changes),
        vec![
            t("mode", "modified", "dir"),
            t("mode/g", "added", "file"),
            t("same/g", "added", "file"),
            t("xattr", "modified", "dir"),
            t("xattr/g", "added", "file"),
        ]
    );
    let x = changes
        .iter()
        .find(|c| c.path == Path::new("xattr"))
        .and_then(|c| c.kind.entry())
        .expect("xattr dir entry");
    let names: Vec<&[u8]> = x.xattrs.iter().map(|x| x.name.as_slice()).collect();
    assert_eq!(
        names,
        vec![b"user.app".as_slice()],
        "overlay xattrs filtered"
    );
}

fn filetime_copy(from: &Path, to: &Path) {
    let md = fs::symlink_metadata(from).expect("stat");
    set_mtime_ns(to, md.mtime(), md.mtime_nsec());
}

/// Timestamps written moments apart can be equal (the kernel's clock for
/// them is coarse), so tests that need "changed" set times explicitly.
fn set_mtime(to: &Path, secs: i64) {
    set_mtime_ns(to, secs, 0);
}

fn set_mtime_ns(to: &Path, secs: i64, nanos: i64) {
    let ts = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: nanos,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        to,
        &rustix::fs::Timestamps {
            last_access: ts,
            last_modification: ts,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .expect("utimensat");
}

#[test]
fn opaque_only_over_a_lower_directory() {
    let d = tmp();
    let (lower, upper) = (d.path().join("lower"), d.path().join("upper"));
    write(&lower, "o/old", "1");
    write(&lower, "wasfile", "1");
    write(&upper, "o/new", "2");
    opaque(&upper.join("o"));
    write(&upper, "wasfile/inner", "2");
    opaque(&upper.join("wasfile"));
    let changes = diff_overlay_upper(&upper, &LowerView::new(vec![lower])).expect("diff");
    assert_eq!(
        summary(&changes),
        vec![
            t("o", "opaque", "dir"),
            t("o/new", "added", "file"),
            t("wasfile", "modified", "dir"),
            t("wasfile/inner", "added", "file"),
        ]
    );
}

#[test]
fn an_upper_with_redirects_is_refused_with_a_reason() {
    let d = tmp();
    let (lower, upper) = (d.path().join("lower"), d.path().join("upper"));
    fs::create_dir_all(&lower).expect("mkdir");
    fs::create_dir_all(upper.join("moved")).expect("mkdir");
    xattr::set(upper.join("moved"), "user.overlay.redirect", b"/orig").expect("xattr");
    let err = diff_overlay_upper(&upper, &LowerView::new(vec![lower])).expect_err("redirect");
    assert!(err.to_string().contains("userxattr"), "{err}");
}

#[test]
fn lower_view_follows_overlay_rules_across_layers() {
    let d = tmp();
    let (top, mid, bottom) = (
        d.path().join("top"),
        d.path().join("mid"),
        d.path().join("bottom"),
    );
    write(&bottom, "d/z", "bottom");
    write(&bottom, "f", "bottom");
    write(&bottom, "gone", "bottom");
    write(&bottom, "was-dir/child", "bottom");
    write(&mid, "d/y", "mid");
    write(&mid, "was-dir", "now a file in mid");
    fs::create_dir_all(&mid).expect("mkdir");
    whiteout(&mid.join("gone"));
    whiteout(&mid.join("f"));
    write(&top, "f", "top again");
    write(&top, "d/x", "top");
    opaque(&top.join("d"));
    let view = LowerView::new(vec![top.clone(), mid.clone(), bottom.clone()]);

    let names = |rel: &str| -> Vec<String> {
        view.read_dir(Path::new(rel))
            .expect("read_dir")
            .keys()
            .map(|k| k.to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(
        names("d"),
        vec!["x"],
        "the opaque top dir hides mid and bottom"
    );
    assert_eq!(names(""), vec!["d", "f", "was-dir"]);
    assert!(view.lookup(Path::new("d/y")).expect("lookup").is_none());
    assert!(view.lookup(Path::new("gone")).expect("lookup").is_none());
    assert!(
        view.lookup(Path::new("was-dir/child"))
            .expect("lookup")
            .is_none(),
        "a file in mid hides the bottom dir's children"
    );
    let f = view.lookup(Path::new("f")).expect("lookup").expect("f");
    assert_eq!(f.layer, 0);
    assert_eq!(fs::read_to_string(&f.path).expect("read"), "top again");
    assert!(view.lookup(Path::new("../etc")).is_err(), "no escape");
}

#[test]
fn sandbox_stubs_in_the_upper_are_left_out_with_their_parents() {
    let d = tmp();
    let (lower, upper) = (d.path().join("lower"), d.path().join("upper"));
    write(&lower, "etc/passwd", "root");
    write(&lower, "var/lib/keep", "k");
    // The step's own work.
    write(&upper, "var/lib/new", "n");
    // Stubs a sandbox made: /etc copied up (mtime bumped), new /etc/hosts,
    // new /dev, /proc, and the parents of a RUN mount target.
    fs::create_dir_all(upper.join("etc")).expect("mkdir");
    fs::set_permissions(
        upper.join("etc"),
        fs::metadata(lower.join("etc")).expect("stat").permissions(),
    )
    .expect("chmod");
    fs::write(upper.join("etc/hosts"), b"").expect("stub");
    fs::create_dir_all(upper.join("dev")).expect("mkdir");
    fs::create_dir_all(upper.join("proc")).expect("mkdir");
    fs::create_dir_all(upper.join("mnt/cache/tool")).expect("mkdir");
    // The lower is old; /var was copied up (keeping its mtime) on the way to
    // /var/lib, which got a new child (and so a new mtime), as was /etc.
    for dir in ["etc", "var", "var/lib"] {
        set_mtime(&lower.join(dir), 1_600_000_000);
    }
    set_mtime(&upper.join("var"), 1_600_000_000);
    let view = LowerView::new(vec![lower]);
    let raw = diff_overlay_upper(&upper, &view).expect("diff");
    let excludes: Vec<PathBuf> = ["/dev", "/proc", "/etc/hosts", "/mnt/cache/tool"]
        .iter()
        .map(PathBuf::from)
        .collect();
    let changes = apply_excludes(raw, &excludes, &view).expect("excludes");
    assert_eq!(
        summary(&changes),
        vec![
            t("var/lib", "modified", "dir"),
            t("var/lib/new", "added", "file")
        ],
        "only the step's own work"
    );

    // A changed file next to a stub keeps its parent.
    write(&upper, "etc/motd", "hi");
    let raw = diff_overlay_upper(&upper, &view).expect("diff");
    let changes = apply_excludes(raw, &excludes, &view).expect("excludes");
    assert_eq!(
        summary(&changes),
        vec![
            t("etc", "modified", "dir"),
            t("etc/motd", "added", "file"),
            t("var/lib", "modified", "dir"),
            t("var/lib/new", "added", "file")
        ]
    );

    let err =
        apply_excludes(Vec::new(), &[PathBuf::from("/a/../b")], &view).expect_err("`..` refused");
    assert!(err.to_string().contains(".."), "{err}");
}

#[test]
fn native_diff_sees_replaced_inodes_xattrs_and_new_names_of_old_files() {
    let d = tmp();
    let (lower, tree) = (d.path().join("lower"), d.path().join("tree"));
    write(&lower, "same-meta", "abc");
    write(&lower, "xattr", "x");
    write(&lower, "linked1", "L");
    fs::hard_link(lower.join("linked1"), lower.join("linked2")).expect("link");
    write(&lower, "calm", "c");
    // The tree as a copy of the lower (hardlink kept), like prepare makes it.
    write(&tree, "same-meta", "abc");
    write(&tree, "xattr", "x");
    write(&tree, "linked1", "L");
    fs::hard_link(tree.join("linked1"), tree.join("linked2")).expect("link");
    write(&tree, "calm", "c");
    for f in ["same-meta", "xattr", "linked1", "calm"] {
        filetime_copy(&lower.join(f), &tree.join(f));
    }
    filetime_copy(&lower, &tree);
    let base = BaseInodes::record(&tree).expect("record");
    let saved = d.path().join("inodes");
    base.save(&saved).expect("save");
    assert_eq!(BaseInodes::load(&saved).expect("load"), base);

    // Replace a file by an identical one (same size and mtime, new inode).
    write(&tree, "same-meta.new", "xyz");
    filetime_copy(&tree.join("same-meta"), &tree.join("same-meta.new"));
    fs::rename(tree.join("same-meta.new"), tree.join("same-meta")).expect("mv");
    xattr::set(tree.join("xattr"), "user.tag", b"1").expect("xattr");
    fs::hard_link(tree.join("linked1"), tree.join("linked3")).expect("link");
    filetime_copy(&lower, &tree);

    let changes = diff_trees(&tree, &LowerView::new(vec![lower]), &base).expect("diff");
    assert_eq!(
        summary(&changes),
        vec![
            t("linked1", "modified", "file"),
            t("linked2", "modified", "hardlink linked1"),
            t("linked3", "added", "hardlink linked1"),
            t("same-meta", "modified", "file"),
            t("xattr", "modified", "file"),
        ]
    );
}

#[test]
fn names_that_are_not_utf8_survive() {
    let d = tmp();
    let (lower, upper) = (d.path().join("lower"), d.path().join("upper"));
    fs::create_dir_all(&lower).expect("mkdir");
    fs::create_dir_all(&upper).expect("mkdir");
    let odd = std::ffi::OsStr::from_bytes(b"caf\xe9");
    fs::write(upper.join(odd), b"x").expect("write");
    symlink(odd, upper.join("to-odd")).expect("symlink");
    let changes = diff_overlay_upper(&upper, &LowerView::new(vec![lower])).expect("diff");
    assert_eq!(changes[0].path.as_os_str().as_bytes(), b"caf\xe9");
    match changes[1].kind.entry().map(|e| &e.file) {
        Some(EntryType::Symlink { target }) => {
            assert_eq!(target.as_os_str().as_bytes(), b"caf\xe9")
        }
        other => panic!("expected a symlink, got {other:?}"),
    }
}

#[test]
fn reserved_whiteout_names_are_refused() {
    let d = tmp();
    let (lower, upper) = (d.path().join("lower"), d.path().join("upper"));
    fs::create_dir_all(&lower).expect("mkdir");
    write(&upper, "dir/.wh.sneaky", "x");
    let err = diff_overlay_upper(&upper, &LowerView::new(vec![lower])).expect_err(".wh.");
    assert!(err.to_string().contains(".wh."), "{err}");
}

#[test]
fn copied_up_files_that_did_not_change_are_left_out() {
    let d = tmp();
    let (lower, upper) = (d.path().join("lower"), d.path().join("upper"));
    for f in ["same", "same-meta-other-bytes", "linked", "touched"] {
        write(&lower, f, "abc");
        write(
            &upper,
            f,
            if f == "same-meta-other-bytes" {
                "xyz"
            } else {
                "abc"
            },
        );
        filetime_copy(&lower.join(f), &upper.join(f));
    }
    // Two names for one copied-up file stay, or the link would be split.
    fs::hard_link(upper.join("linked"), upper.join("linked2")).expect("link");
    // Only the mtime differs: a change.
    set_mtime(&upper.join("touched"), 1_600_000_000);
    let changes = diff_overlay_upper(&upper, &LowerView::new(vec![lower])).expect("diff");
    assert_eq!(
        summary(&changes),
        vec![
            t("linked", "modified", "file"),
            t("linked2", "added", "hardlink linked"),
            t("same-meta-other-bytes", "modified", "file"),
            t("touched", "modified", "file"),
        ]
    );
}

#[test]
fn native_diff_sees_a_recreated_directory_even_with_its_old_inode_number() {
    let d = tmp();
    let (lower, tree) = (d.path().join("lower"), d.path().join("tree"));
    write(&lower, "re/child", "c");
    write(&tree, "re/child", "c");
    filetime_copy(&lower.join("re/child"), &tree.join("re/child"));
    filetime_copy(&lower.join("re"), &tree.join("re"));
    let base = BaseInodes::record(&tree).expect("record");
    let old_ino = fs::metadata(tree.join("re")).expect("stat").ino();
    // ext4 usually hands the freed inode number straight back.
    fs::remove_dir_all(tree.join("re")).expect("rm -rf");
    fs::create_dir(tree.join("re")).expect("mkdir");
    filetime_copy(&lower.join("re"), &tree.join("re"));
    let reused = fs::metadata(tree.join("re")).expect("stat").ino() == old_ino;
    let changes = diff_trees(&tree, &LowerView::new(vec![lower]), &base).expect("diff");
    assert_eq!(
        summary(&changes),
        vec![t("re", "opaque", "dir")],
        "inode number reused: {reused}"
    );
}
