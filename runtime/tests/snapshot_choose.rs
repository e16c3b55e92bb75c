//! Choosing a snapshotter: the overlay probe works where it should, and
//! where it cannot, the reason names the cause. The failing file systems
//! (an overlayfs root, a root without user xattrs) are mounted in a private
//! user + mount namespace, so these tests need no privilege either.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use runtime::run_in_userns;
use runtime::sandbox::IdMapping;
use runtime::snapshot::{
    ProbeOutcome, SnapshotterKind, SnapshotterRequest, choose, overlay_mount_options, probe_overlay,
};

fn single_mapping() -> IdMapping {
    IdMapping::Single {
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
    }
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in temp paths")
}

/// mount(2) inside the test's namespace child.
fn mount(source: &str, target: &Path, fstype: &str, data: &str) -> Result<(), String> {
    let (src, tgt, fst, dat) = (
        CString::new(source).map_err(|e| e.to_string())?,
        c(target),
        CString::new(fstype).map_err(|e| e.to_string())?,
        CString::new(data).map_err(|e| e.to_string())?,
    );
    // SAFETY: all pointers are valid NUL-terminated strings for the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fst.as_ptr(),
            0,
            dat.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "mount {fstype} on {}: {}",
            target.display(),
            std::io::Error::last_os_error()
        ))
    }
}

fn outcome_text(o: ProbeOutcome) -> String {
    match o {
        ProbeOutcome::Works => "works".into(),
        ProbeOutcome::Unavailable(why) => why,
    }
}

#[test]
fn auto_picks_overlay_on_a_normal_disk_and_remembers_it() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("snapshots");
    assert_eq!(
        probe_overlay(&root),
        ProbeOutcome::Works,
        "this host (Linux 6.x, ext4 under TMPDIR) supports rootless overlay"
    );
    let choice = choose(&root, SnapshotterRequest::Auto).expect("choose");
    assert_eq!(choice.kind, SnapshotterKind::Overlay);
    assert_eq!(choice.snapshotter.kind(), SnapshotterKind::Overlay);
    assert!(choice.reason.contains("overlayfs"), "{}", choice.reason);
    assert!(root.join(".overlay-probe-ok").is_file(), "success stamp");
    let leftovers: Vec<_> = fs::read_dir(&root)
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n.as_bytes().starts_with(b".overlay-probe-") && n != ".overlay-probe-ok")
        .collect();
    assert!(leftovers.is_empty(), "probe dirs removed: {leftovers:?}");

    let native = choose(&root, SnapshotterRequest::Force(SnapshotterKind::Native)).expect("native");
    assert_eq!(native.kind, SnapshotterKind::Native);
    assert!(
        native.reason.contains("--snapshotter native"),
        "{}",
        native.reason
    );
}

#[test]
fn a_root_on_overlayfs_is_explained() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let base = tmp.path().to_path_buf();
    let text = run_in_userns(&single_mapping(), move || {
        for d in ["lower", "upper", "work", "merged"] {
            fs::create_dir(base.join(d)).map_err(|e| e.to_string())?;
        }
        let opts = overlay_mount_options(
            &[base.join("lower")],
            &base.join("upper"),
            &base.join("work"),
        )
        .map_err(|e| e.to_string())?;
        mount("overlay", &base.join("merged"), "overlay", &opts)?;
        let root = base.join("merged/snapshots");
        let probe = outcome_text(probe_overlay(&root));
        let auto = choose(&root, SnapshotterRequest::Auto).map_err(|e| e.to_string())?;
        let forced = choose(&root, SnapshotterRequest::Force(SnapshotterKind::Overlay))
            .map(|c| c.reason)
            .unwrap_or_else(|e| format!("error: {e}"));
        Ok::<String, String>(format!(
            "{probe}\n{:?}: {}\n{forced}",
            auto.kind, auto.reason
        ))
    })
    .expect("namespace child");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("is on overlayfs"), "{text}");
    assert!(lines[0].contains("--root"), "says how to fix it: {text}");
    assert!(
        lines[1].starts_with("Native: native (copy) snapshotter"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("error: --snapshotter overlay cannot work here"),
        "{text}"
    );
}

#[test]
fn a_root_without_user_xattrs_is_explained() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let base = tmp.path().join("ram");
    fs::create_dir(&base).expect("mkdir");
    let text = run_in_userns(&single_mapping(), move || {
        // ramfs has no xattrs at all.
        mount("none", &base, "ramfs", "mode=0755")?;
        Ok::<String, String>(outcome_text(probe_overlay(&base.join("snapshots"))))
    })
    .expect("namespace child");
    assert!(text.contains("no user extended attributes"), "{text}");
}
