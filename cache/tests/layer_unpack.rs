//! Unpacking: whiteouts and opaque markers applied (stacking) or kept in
//! overlay form, hostile layers refused with nothing written outside, and
//! ownership the user cannot apply recorded so it survives the next layer.

mod layer_support;

use std::io::Cursor;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use cache::layer::{
    Compression, Content, Entry, EntryKind, LayerError, OwnerSource, OwnershipMode, ROOTLESS_XATTR,
    Record, UnpackOptions, WhiteoutMode, WriteOptions, read_entries, unpack, write_dir,
    write_layer,
};
use layer_support::{chmod_tree_writable, raw_end, raw_member};

fn layer(entries: Vec<Entry>, c: Compression) -> Vec<u8> {
    let mut blob = Vec::new();
    let o = WriteOptions {
        compression: c,
        ..WriteOptions::default()
    };
    write_layer(entries, &o, &mut blob).unwrap();
    blob
}

fn bytes(s: &str) -> Content {
    Content::Bytes(s.as_bytes().to_vec())
}

fn base() -> Vec<Entry> {
    vec![
        Entry::dir("a"),
        Entry::file("a/x", bytes("x")),
        Entry::file("a/y", bytes("y")),
        Entry::dir("c"),
        Entry::file("c/1", bytes("1")),
        Entry::dir("c/sub"),
        Entry::file("c/sub/2", bytes("2")),
        Entry::dir("ro").mode(0o555),
        Entry::file("ro/f", bytes("f")).mode(0o444),
    ]
}

#[test]
fn stacked_layers_apply_whiteouts_and_opaque_dirs() {
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("rootfs");
    std::fs::create_dir(&dest).unwrap();
    let o = UnpackOptions::default();
    let s1 = unpack(
        Cursor::new(layer(base(), Compression::Gzip { level: 6 })),
        &dest,
        &o,
    )
    .unwrap();
    assert_eq!(s1.compression, Compression::Gzip { level: 0 });
    assert_eq!((s1.files, s1.dirs), (5, 4));
    assert_eq!(
        std::fs::metadata(dest.join("ro")).unwrap().mode() & 0o7777,
        0o555
    );
    let top = vec![
        Entry::whiteout("a/x"),
        Entry::opaque("c"),
        Entry::dir("c"),
        Entry::file("c/3", bytes("3")),
        // Into a read-only directory of the lower layer.
        Entry::file("ro/g", bytes("g")),
        Entry::whiteout("not/there"),
    ];
    let s2 = unpack(
        Cursor::new(layer(top, Compression::Zstd { level: 3 })),
        &dest,
        &o,
    )
    .unwrap();
    assert_eq!((s2.whiteouts, s2.opaques), (2, 1));
    assert!(!dest.join("a/x").exists(), "whiteout applied");
    assert_eq!(std::fs::read(dest.join("a/y")).unwrap(), b"y");
    let mut c: Vec<_> = std::fs::read_dir(dest.join("c"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    c.sort();
    assert_eq!(c, ["3"], "opaque dir keeps only this layer's entries");
    assert_eq!(std::fs::read(dest.join("ro/g")).unwrap(), b"g");
    assert_eq!(
        std::fs::metadata(dest.join("ro")).unwrap().mode() & 0o7777,
        0o555
    );
    assert!(!dest.join("not").exists(), "a whiteout creates nothing");
    chmod_tree_writable(&dest);
}

#[test]
fn a_whiteout_after_its_sibling_only_hides_lower_layers() {
    // Hand-made tar: the file comes first, its whiteout after (consumers
    // must accept that order); also an opaque marker after a sibling.
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("d");
    std::fs::create_dir(&dest).unwrap();
    std::fs::create_dir_all(dest.join("o/lower")).unwrap();
    std::fs::write(dest.join("o/lower/f"), b"old").unwrap();
    let mut tar = Vec::new();
    raw_member(&mut tar, "k", b'0', "", b"new");
    raw_member(&mut tar, ".wh.k", b'0', "", b"");
    raw_member(&mut tar, "o/mine", b'0', "", b"m");
    raw_member(&mut tar, "o/.wh..wh..opq", b'0', "", b"");
    raw_end(&mut tar);
    unpack(Cursor::new(tar), &dest, &UnpackOptions::default()).unwrap();
    assert_eq!(std::fs::read(dest.join("k")).unwrap(), b"new");
    assert_eq!(std::fs::read(dest.join("o/mine")).unwrap(), b"m");
    assert!(!dest.join("o/lower").exists());
}

#[test]
fn overlay_mode_keeps_whiteouts_as_devices_and_xattrs() {
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("lower");
    std::fs::create_dir(&dest).unwrap();
    let top = vec![
        Entry::whiteout("etc/gone"),
        Entry::opaque("var"),
        Entry::dir("var"),
    ];
    let o = UnpackOptions {
        whiteouts: WhiteoutMode::Overlay,
        ..UnpackOptions::default()
    };
    unpack(Cursor::new(layer(top, Compression::None)), &dest, &o).unwrap();
    let md = std::fs::symlink_metadata(dest.join("etc/gone")).unwrap();
    assert!(
        md.file_type().is_char_device() && md.rdev() == 0,
        "0/0 whiteout device"
    );
    assert_eq!(
        xattr::get(dest.join("var"), "user.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
    // And write_dir turns the same directory back into the same layer facts.
    let mut blob = Vec::new();
    let w = WriteOptions {
        compression: Compression::None,
        overlay_whiteouts: true,
        ..WriteOptions::default()
    };
    write_dir(&dest, &w, &mut blob).unwrap();
    let (entries, _) = read_entries(Cursor::new(blob)).unwrap();
    let kinds: Vec<_> = entries
        .iter()
        .map(|e| (e.path.display().to_string(), e.kind.clone()))
        .collect();
    assert!(
        kinds.contains(&("etc/gone".into(), EntryKind::Whiteout)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("var".into(), EntryKind::Opaque)),
        "{kinds:?}"
    );
}

/// Unpacks a hostile tar and checks the refusal and that nothing outside
/// `dest` appeared.
fn refused(build: impl FnOnce(&Path, &mut Vec<u8>), entry: &str, why: &str) {
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("dest");
    let outside = t.path().join("outside");
    std::fs::create_dir(&dest).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"s").unwrap();
    let mut tar = Vec::new();
    build(&outside, &mut tar);
    raw_end(&mut tar);
    let err = unpack(Cursor::new(tar), &dest, &UnpackOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, LayerError::Escape { .. }),
        "{entry}: not an escape error: {msg}"
    );
    assert!(
        msg.contains(entry) && msg.contains(why),
        "{entry}: unclear message: {msg}"
    );
    let mut names: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["secret"], "{entry}: something was written outside");
    assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"s");
    assert!(!t.path().join("x").exists() && !t.path().join("pwned").exists());
}

#[test]
fn hostile_layers_are_refused_with_nothing_written_outside() {
    refused(
        |_, t| raw_member(t, "../x", b'0', "", b"bad"),
        "../x",
        "`..`",
    );
    refused(
        |_, t| raw_member(t, "/../x", b'0', "", b"bad"),
        "/../x",
        "`..`",
    );
    refused(
        |_, t| raw_member(t, "a/../../x", b'0', "", b"bad"),
        "a/../../x",
        "`..`",
    );
    // Absolute symlink, then a write through it.
    refused(
        |out, t| {
            raw_member(t, "l", b'2', out.to_str().unwrap(), b"");
            raw_member(t, "l/pwned", b'0', "", b"bad");
        },
        "l/pwned",
        "symlink that leads outside",
    );
    // Relative symlink climbing out, then a write through it.
    refused(
        |_, t| {
            raw_member(t, "l", b'2', "../outside", b"");
            raw_member(t, "l/pwned", b'0', "", b"bad");
        },
        "l/pwned",
        "symlink that leads outside",
    );
    // Hardlink to a file outside, by `..` and through a symlink.
    refused(
        |_, t| raw_member(t, "h", b'1', "../outside/secret", b""),
        "h",
        "`..`",
    );
    refused(
        |out, t| {
            raw_member(t, "l", b'2', out.to_str().unwrap(), b"");
            raw_member(t, "h", b'1', "l/secret", b"");
        },
        "h",
        "symlink that leads outside",
    );
    // A whiteout through an outside symlink deletes nothing outside.
    refused(
        |out, t| {
            raw_member(t, "l", b'2', out.to_str().unwrap(), b"");
            raw_member(t, "l/.wh.secret", b'0', "", b"");
        },
        "l/secret",
        "symlink that leads outside",
    );
}

#[test]
fn absolute_names_land_inside_and_inside_symlinks_are_followed() {
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("d");
    std::fs::create_dir(&dest).unwrap();
    let mut tar = Vec::new();
    raw_member(&mut tar, "/etc/hostname", b'0', "", b"h");
    raw_member(&mut tar, "usr/lib/", b'5', "", b"");
    raw_member(&mut tar, "lib", b'2', "usr/lib", b"");
    raw_member(&mut tar, "lib/libc.so", b'0', "", b"c");
    raw_end(&mut tar);
    unpack(Cursor::new(tar), &dest, &UnpackOptions::default()).unwrap();
    assert_eq!(std::fs::read(dest.join("etc/hostname")).unwrap(), b"h");
    assert_eq!(std::fs::read(dest.join("usr/lib/libc.so")).unwrap(), b"c");
}

#[test]
fn ownership_and_devices_survive_into_the_next_layer_via_records() {
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("d");
    std::fs::create_dir(&dest).unwrap();
    let entries = vec![
        Entry::dir("home/user").owner(1000, 1000).mode(0o750),
        Entry::file("home/user/f", bytes("f"))
            .owner(1000, 100)
            .mode(0o2640),
        Entry::file("rootfile", bytes("r")),
        Entry::char_device("dev/tty0", 4, 0).owner(0, 5).mode(0o620),
    ];
    let o = UnpackOptions {
        ownership: OwnershipMode::Record,
        ..UnpackOptions::default()
    };
    let stats = unpack(
        Cursor::new(layer(entries, Compression::Gzip { level: 1 })),
        &dest,
        &o,
    )
    .unwrap();
    assert_eq!(stats.placeholders, 1);
    assert_eq!(stats.ownership_records, 3, "{stats:?}");
    let rec = |p: &str| {
        xattr::get(dest.join(p), ROOTLESS_XATTR)
            .unwrap()
            .map(|v| Record::decode(&v).unwrap())
    };
    assert_eq!(
        rec("home/user/f").map(|r| (r.uid, r.gid)),
        Some((1000, 100))
    );
    assert_eq!(rec("rootfile"), None, "root-owned files need no record");
    let dev = rec("dev/tty0").unwrap();
    assert_eq!(dev.mode, Some(libc::S_IFCHR | 0o620));
    let me = rustix::process::geteuid().as_raw();
    assert_eq!(
        std::fs::metadata(dest.join("home/user/f")).unwrap().uid(),
        me,
        "no chown in Record mode"
    );
    // Setgid survives (the file is ours, in our group).
    assert_eq!(
        std::fs::metadata(dest.join("home/user/f")).unwrap().mode() & 0o7777,
        0o2640
    );

    // The next layer written from this directory carries the recorded facts.
    let mut blob = Vec::new();
    let w = WriteOptions {
        compression: Compression::None,
        owners: OwnerSource::Xattr,
        ..WriteOptions::default()
    };
    write_dir(&dest, &w, &mut blob).unwrap();
    let (back, _) = read_entries(Cursor::new(blob)).unwrap();
    let get = |p: &str| back.iter().find(|e| e.path == Path::new(p)).unwrap();
    assert_eq!(
        (get("home/user").meta.uid, get("home/user").meta.gid),
        (1000, 1000)
    );
    assert_eq!(get("home/user").meta.mode, 0o750);
    assert_eq!(
        (get("home/user/f").meta.uid, get("home/user/f").meta.gid),
        (1000, 100)
    );
    assert_eq!((get("rootfile").meta.uid, get("rootfile").meta.gid), (0, 0));
    assert_eq!(
        get("dev/tty0").kind,
        EntryKind::CharDevice { major: 4, minor: 0 }
    );
    assert_eq!(
        (get("dev/tty0").meta.gid, get("dev/tty0").meta.mode),
        (5, 0o620)
    );
    assert!(
        back.iter()
            .all(|e| e.meta.xattrs.iter().all(|(n, _)| n != ROOTLESS_XATTR)),
        "the record itself is not part of the layer"
    );
}

#[test]
fn chown_mode_chowns_where_permitted_and_records_otherwise() {
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("d");
    std::fs::create_dir(&dest).unwrap();
    let entries = vec![Entry::file("f", bytes("f")).owner(1234, 5678).mode(0o4755)];
    let stats = unpack(
        Cursor::new(layer(entries, Compression::None)),
        &dest,
        &UnpackOptions::default(),
    )
    .unwrap();
    let md = std::fs::metadata(dest.join("f")).unwrap();
    let rec = xattr::get(dest.join("f"), ROOTLESS_XATTR).unwrap();
    if md.uid() == 1234 {
        // Privileged (root, or a user namespace with the id mapped).
        assert_eq!((md.gid(), stats.ownership_records, rec), (5678, 0, None));
    } else {
        let r = Record::decode(&rec.expect("a record when chown is refused")).unwrap();
        assert_eq!((r.uid, r.gid, stats.ownership_records), (1234, 5678, 1));
    }
    // setuid is applied after chown, which would clear it.
    assert_eq!(md.mode() & 0o7777, 0o4755);
    std::fs::set_permissions(dest.join("f"), std::fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn hardlinks_symlinks_and_fifos_unpack() {
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("d");
    std::fs::create_dir(&dest).unwrap();
    let entries = vec![
        Entry::file("bin/busybox", bytes("bb"))
            .mode(0o755)
            .mtime(1_000_000),
        Entry::hardlink("bin/sh", "bin/busybox"),
        Entry::symlink("bin/ls", "busybox").mtime(2_000_000),
        Entry::fifo("run/p").mode(0o640),
        Entry::dir("bin").mtime(3_000_000),
    ];
    let s = unpack(
        Cursor::new(layer(entries, Compression::Gzip { level: 6 })),
        &dest,
        &UnpackOptions::default(),
    )
    .unwrap();
    assert_eq!((s.files, s.hardlinks, s.symlinks), (1, 1, 1));
    let a = std::fs::metadata(dest.join("bin/busybox")).unwrap();
    let b = std::fs::metadata(dest.join("bin/sh")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    assert_eq!(a.mtime(), 1_000_000);
    assert_eq!(
        std::fs::read_link(dest.join("bin/ls")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        std::fs::symlink_metadata(dest.join("bin/ls"))
            .unwrap()
            .mtime(),
        2_000_000
    );
    assert_eq!(
        std::fs::metadata(dest.join("bin")).unwrap().mtime(),
        3_000_000,
        "dir mtime set last"
    );
    let p = std::fs::symlink_metadata(dest.join("run/p")).unwrap();
    assert!(p.file_type().is_fifo() || s.placeholders == 1);
}

#[test]
fn write_unpack_write_reproduces_the_same_diff_id() {
    // Every parent is listed, so the unpacked tree holds exactly these.
    let entries = vec![
        Entry::dir("bin"),
        Entry::file("bin/sh", bytes("#!shell")).mode(0o755),
        Entry::hardlink("bin/ash", "bin/sh"),
        Entry::symlink("bin/ls", "sh"),
        Entry::dir("dev"),
        Entry::char_device("dev/null", 1, 3).mode(0o666),
        Entry::dir("etc"),
        Entry::file("etc/passwd", bytes("root:x:0:0")).xattr("user.note", b"kept".to_vec()),
        Entry::dir("home").mode(0o755),
        Entry::dir("home/u").owner(1000, 1000).mode(0o750),
        Entry::file("home/u/.profile", bytes("p"))
            .owner(1000, 1000)
            .mode(0o600),
        Entry::dir("tmp").mode(0o1777),
        Entry::fifo("tmp/p").mode(0o600),
    ]
    .into_iter()
    .map(|e| e.mtime(1_650_000_000))
    .collect::<Vec<_>>();
    let o = WriteOptions {
        compression: Compression::None,
        ..WriteOptions::default()
    };
    let mut first = Vec::new();
    let d1 = write_layer(entries, &o, &mut first).unwrap();

    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("d");
    std::fs::create_dir(&dest).unwrap();
    let u = UnpackOptions {
        ownership: OwnershipMode::Record,
        ..UnpackOptions::default()
    };
    unpack(Cursor::new(&first), &dest, &u).unwrap();
    let mut second = Vec::new();
    let w = WriteOptions {
        owners: OwnerSource::Xattr,
        ..o
    };
    let d2 = write_dir(&dest, &w, &mut second).unwrap();
    if d1.diff_id != d2.diff_id {
        let (a, _) = read_entries(Cursor::new(&first)).unwrap();
        let (b, _) = read_entries(Cursor::new(&second)).unwrap();
        panic!("layers differ:\n{a:#?}\nvs\n{b:#?}");
    }
    chmod_tree_writable(&dest);
}
