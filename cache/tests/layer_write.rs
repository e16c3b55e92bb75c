//! Writing layers: round trips of every entry kind, ordering, PAX, xattrs,
//! hardlink canonicalisation, and write_dir over a real tree.

mod layer_support;

use std::io::Cursor;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cache::digest::Digest;
use cache::layer::{
    Compression, Content, Entry, EntryKind, OwnerSource, WriteOptions, read_entries, write_dir,
    write_layer,
};
use layer_support::{pseudo_random, sh};

fn opts(compression: Compression) -> WriteOptions {
    WriteOptions {
        compression,
        source_date_epoch: Some(1_700_000_000),
        ..WriteOptions::default()
    }
}

fn all_kinds() -> Vec<Entry> {
    let long_dir = "d".repeat(120);
    let long_name = format!("{long_dir}/{}", "n".repeat(150));
    vec![
        Entry::file("usr/bin/su", Content::Bytes(b"suid".to_vec()))
            .mode(0o4755)
            .owner(0, 0)
            .mtime(1_600_000_000),
        Entry::dir("tmp").mode(0o1777),
        Entry::dir("usr/bin").mode(0o2755).owner(0, 50),
        Entry::dir("usr"),
        Entry::symlink("usr/lib64", "lib"),
        Entry::symlink("long-link", "/".to_string() + &"t".repeat(200)),
        Entry::char_device("dev/null", 1, 3).mode(0o666),
        Entry::block_device("dev/sda", 8, 0).mode(0o660).owner(0, 6),
        Entry::fifo("run/fifo").mode(0o600),
        Entry::whiteout("etc/old"),
        Entry::opaque("var/cache"),
        Entry::dir("var/cache"),
        Entry::dir(long_dir.clone()),
        Entry::file(long_name.clone(), Content::Bytes(b"long".to_vec())),
        Entry::file("big-ids", Content::Bytes(Vec::new())).owner(3_000_000, 4_000_000),
        Entry::file("etc/x", Content::Bytes(b"x".to_vec()))
            .xattr("user.b", b"2".to_vec())
            .xattr("security.capability", vec![1, 0, 0, 2, 0x20, 0, 0, 0])
            .xattr("user.a", b"1\0binary".to_vec()),
        // The link sorts before its target: the writer must swap them.
        Entry::hardlink("a-link", "z-target"),
        Entry::file("z-target", Content::Bytes(b"shared".to_vec())).mode(0o600),
    ]
}

#[test]
fn every_kind_round_trips_in_order() {
    let mut blob = Vec::new();
    let desc = write_layer(all_kinds(), &opts(Compression::None), &mut blob).unwrap();
    assert_eq!(
        desc.digest, desc.diff_id,
        "uncompressed: digest is the diff_id"
    );
    assert_eq!(desc.diff_id, Digest::of(&blob));
    assert_eq!(desc.media_type, "application/vnd.oci.image.layer.v1.tar");
    let (entries, summary) = read_entries(Cursor::new(&blob)).unwrap();
    assert_eq!(summary.diff_id, desc.diff_id);
    let paths: Vec<String> = entries
        .iter()
        .map(|e| match e.kind {
            EntryKind::Whiteout => format!("WH {}", e.path.display()),
            EntryKind::Opaque => format!("OPQ {}", e.path.display()),
            _ => e.path.display().to_string(),
        })
        .collect();
    let long_dir = "d".repeat(120);
    let long_name = format!("{long_dir}/{}", "n".repeat(150));
    let expected = [
        "a-link",
        "big-ids",
        &long_dir,
        &long_name,
        "dev/null",
        "dev/sda",
        "WH etc/old",
        "etc/x",
        "long-link",
        "run/fifo",
        "tmp",
        "usr",
        "usr/bin",
        "usr/bin/su",
        "usr/lib64",
        "var/cache",
        "OPQ var/cache",
        "z-target",
    ];
    assert_eq!(paths, expected);
    let by = |p: &str| {
        entries
            .iter()
            .find(|e| e.path == Path::new(p) && !matches!(e.kind, EntryKind::Opaque))
            .unwrap_or_else(|| panic!("{p} missing"))
    };
    // The hardlink group's content moved to the path written first.
    assert_eq!(
        by("a-link").kind,
        EntryKind::File(Content::Bytes(b"shared".to_vec()))
    );
    assert_eq!(by("a-link").meta.mode, 0o600);
    assert_eq!(
        by("z-target").kind,
        EntryKind::Hardlink(PathBuf::from("a-link"))
    );
    assert_eq!(by("usr/bin/su").meta.mode, 0o4755);
    assert_eq!(by("usr/bin/su").meta.mtime, 1_600_000_000);
    assert_eq!(by("tmp").meta.mode, 0o1777);
    assert_eq!(
        (by("usr/bin").meta.mode, by("usr/bin").meta.gid),
        (0o2755, 50)
    );
    assert_eq!(
        by("dev/null").kind,
        EntryKind::CharDevice { major: 1, minor: 3 }
    );
    assert_eq!(
        by("dev/sda").kind,
        EntryKind::BlockDevice { major: 8, minor: 0 }
    );
    assert_eq!(by("run/fifo").kind, EntryKind::Fifo);
    assert_eq!(
        by("long-link").kind,
        EntryKind::Symlink(PathBuf::from("/".to_string() + &"t".repeat(200)))
    );
    assert_eq!(
        by(&long_name).kind,
        EntryKind::File(Content::Bytes(b"long".to_vec()))
    );
    assert_eq!(
        (by("big-ids").meta.uid, by("big-ids").meta.gid),
        (3_000_000, 4_000_000)
    );
    assert_eq!(
        by("etc/x").meta.xattrs,
        vec![
            (
                "security.capability".to_string(),
                vec![1, 0, 0, 2, 0x20, 0, 0, 0]
            ),
            ("user.a".to_string(), b"1\0binary".to_vec()),
            ("user.b".to_string(), b"2".to_vec()),
        ]
    );
    // mtimes after SOURCE_DATE_EPOCH are clamped, earlier ones kept.
    assert!(entries.iter().all(|e| e.meta.mtime <= 1_700_000_000));
}

#[test]
fn an_independent_tar_reads_names_links_and_pax() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.tar");
    let f = std::fs::File::create(&path).unwrap();
    write_layer(all_kinds(), &opts(Compression::None), f).unwrap();
    let listing = sh(&format!("tar -tvf {} --numeric-owner", path.display()));
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 18, "{listing}");
    let long_name = format!("{}/{}", "d".repeat(120), "n".repeat(150));
    assert!(
        listing.contains(&long_name),
        "GNU tar must see the PAX path:\n{listing}"
    );
    assert!(lines[0].starts_with("-rw------- 0/0"), "{}", lines[0]);
    assert!(listing.contains("z-target link to a-link"), "{listing}");
    assert!(
        listing.contains("3000000/4000000"),
        "PAX uid/gid:\n{listing}"
    );
    assert!(listing.contains("etc/.wh.old"), "{listing}");
    assert!(listing.contains("var/cache/.wh..wh..opq"), "{listing}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("crw-rw-rw- 0/0") && l.contains("1,3")),
        "{listing}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("-rwsr-xr-x")),
        "{listing}"
    );
    let uname_free = !listing.contains("root");
    assert!(uname_free, "uname/gname must be empty:\n{listing}");
}

#[test]
fn contradictions_and_escapes_are_refused_when_writing() {
    let o = opts(Compression::None);
    let dup = vec![Entry::dir("a"), Entry::file("a", Content::Bytes(vec![]))];
    let err = write_layer(dup, &o, Vec::new()).unwrap_err().to_string();
    assert!(err.contains("appears twice") && err.contains('a'), "{err}");
    let both = vec![
        Entry::whiteout("x"),
        Entry::file("x", Content::Bytes(vec![])),
    ];
    let err = write_layer(both, &o, Vec::new()).unwrap_err().to_string();
    assert!(err.contains("both deleted"), "{err}");
    let up = vec![Entry::file("a/../../x", Content::Bytes(vec![]))];
    let err = write_layer(up, &o, Vec::new()).unwrap_err().to_string();
    assert!(err.contains("a/../../x") && err.contains(".."), "{err}");
    let dangling = vec![Entry::hardlink("l", "nowhere")];
    let err = write_layer(dangling, &o, Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nowhere") && err.contains("not in the layer"),
        "{err}"
    );
    let missing = vec![Entry::file(
        "f",
        Content::Path("/nonexistent/strata".into()),
    )];
    let err = write_layer(missing, &o, Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/strata"), "{err}");
}

fn mkfifo(p: &Path) {
    sh(&format!("mkfifo '{}'", p.display()));
}

#[test]
fn write_dir_reads_a_real_tree_and_an_overlay_upper() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    std::fs::create_dir_all(root.join("opq")).unwrap();
    let content = pseudo_random(300_000, 7);
    std::fs::write(root.join("a/b/file"), &content).unwrap();
    std::fs::hard_link(root.join("a/b/file"), root.join("a/hl")).unwrap();
    std::os::unix::fs::symlink("b/file", root.join("a/sym")).unwrap();
    std::fs::write(root.join("suid"), b"s").unwrap();
    std::fs::set_permissions(root.join("suid"), std::fs::Permissions::from_mode(0o4711)).unwrap();
    mkfifo(&root.join("pipe"));
    xattr::set(root.join("a/b/file"), "user.k", b"v").unwrap();
    // Overlay upper facts: a whiteout device and an opaque directory.
    sh(&format!("mknod '{}' c 0 0", root.join("gone").display()));
    xattr::set(root.join("opq"), "user.overlay.opaque", b"y").unwrap();

    let mut blob = Vec::new();
    let o = WriteOptions {
        overlay_whiteouts: true,
        ..opts(Compression::Gzip { level: 6 })
    };
    let desc = write_dir(&root, &o, &mut blob).unwrap();
    assert_eq!(desc.digest, Digest::of(&blob));
    let (entries, summary) = read_entries(Cursor::new(&blob)).unwrap();
    assert_eq!(summary.diff_id, desc.diff_id);
    let names: Vec<String> = entries
        .iter()
        .map(|e| e.path.display().to_string())
        .collect();
    // "a/b/file" is written before "a/hl", so the hardlink points at it.
    assert_eq!(
        names,
        [
            "gone", "a", "a/b", "a/b/file", "a/hl", "a/sym", "opq", "opq", "pipe", "suid"
        ],
        "{entries:#?}"
    );
    assert_eq!(entries[0].kind, EntryKind::Whiteout);
    assert_eq!(entries[3].kind, EntryKind::File(Content::Bytes(content)));
    assert_eq!(
        entries[3].meta.xattrs,
        vec![("user.k".to_string(), b"v".to_vec())]
    );
    assert_eq!(entries[4].kind, EntryKind::Hardlink("a/b/file".into()));
    assert_eq!(entries[5].kind, EntryKind::Symlink("b/file".into()));
    assert_eq!(entries[6].kind, EntryKind::Dir);
    assert_eq!(entries[7].kind, EntryKind::Opaque);
    assert!(
        entries[6].meta.xattrs.is_empty(),
        "overlay xattrs must not leak into the layer"
    );
    assert_eq!(entries[8].kind, EntryKind::Fifo);
    assert_eq!(entries[9].meta.mode, 0o4711);
    let md = std::fs::metadata(root.join("suid")).unwrap();
    assert_eq!(entries[9].meta.uid, md.uid());

    // Without overlay translation the device stays a device and no marker.
    let plain = WriteOptions {
        owners: OwnerSource::Disk,
        ..opts(Compression::None)
    };
    let mut blob = Vec::new();
    write_dir(&root, &plain, &mut blob).unwrap();
    let (entries, _) = read_entries(Cursor::new(&blob)).unwrap();
    assert!(
        entries.iter().any(|e| e.path == Path::new("gone")
            && e.kind == EntryKind::CharDevice { major: 0, minor: 0 })
    );
    assert!(!entries.iter().any(|e| e.kind == EntryKind::Opaque));
}

/// The whiteout form used where a 0/0 device cannot be made (a store on an
/// overlayfs root): an empty file marked `user.overlay.whiteout` becomes a
/// `.wh.` entry, and an empty file without the mark stays a file.
#[test]
fn write_dir_reads_xattr_whiteouts() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::fs::write(root.join("d/gone"), b"").unwrap();
    xattr::set(root.join("d/gone"), "user.overlay.whiteout", b"y").unwrap();
    std::fs::write(root.join("d/empty"), b"").unwrap();
    let o = WriteOptions {
        overlay_whiteouts: true,
        ..opts(Compression::None)
    };
    let mut blob = Vec::new();
    write_dir(&root, &o, &mut blob).unwrap();
    let (entries, _) = read_entries(Cursor::new(&blob)).unwrap();
    let kinds: Vec<(String, &EntryKind)> = entries
        .iter()
        .map(|e| (e.path.display().to_string(), &e.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("d".to_string(), &EntryKind::Dir),
            ("d/gone".to_string(), &EntryKind::Whiteout),
            (
                "d/empty".to_string(),
                &EntryKind::File(Content::Bytes(Vec::new()))
            ),
        ],
        "{entries:#?}"
    );
}
