//! The native snapshotter where overlayfs would not work: a snapshot root
//! without user xattrs (ramfs here, mounted in a private user + mount
//! namespace, so no privilege is needed). An opaque directory cannot be
//! marked there, so the committed layer must hide the lower directory's
//! children with explicit whiteouts instead, and still read back as the same
//! merged view.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use runtime::diff::{ChangeKind, LowerView};
use runtime::run_in_userns;
use runtime::sandbox::IdMapping;
use runtime::snapshot::{NativeSnapshotter, Snapshotter};

fn single_mapping() -> IdMapping {
    IdMapping::Single {
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
    }
}

fn mount_ramfs(target: &Path) -> Result<(), String> {
    let tgt = CString::new(target.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: constant and owned NUL-terminated strings, valid for the call.
    let rc = unsafe {
        libc::mount(
            c"none".as_ptr(),
            tgt.as_ptr(),
            c"ramfs".as_ptr(),
            0,
            c"mode=0755".as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("mount ramfs: {}", std::io::Error::last_os_error()))
    }
}

fn step(rootfs: &Path) -> std::io::Result<()> {
    fs::remove_dir_all(rootfs.join("opq"))?;
    fs::create_dir(rootfs.join("opq"))?;
    fs::write(rootfs.join("opq/new"), "n")?;
    // A name the lower directory had, made again: it must not be whited out.
    fs::write(rootfs.join("opq/old1"), "again")?;
    fs::remove_file(rootfs.join("gone"))
}

#[test]
fn opaque_directories_become_explicit_whiteouts_without_xattrs() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let base = tmp.path().join("base");
    for (f, content) in [
        ("opq/old1", "1"),
        ("opq/old2", "2"),
        ("gone", "g"),
        ("kept", "k"),
    ] {
        let p = base.join(f);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, content).expect("write");
    }
    let ram = tmp.path().join("ram");
    fs::create_dir(&ram).expect("mkdir");
    let report = run_in_userns(&single_mapping(), move || {
        mount_ramfs(&ram)?;
        let snap = NativeSnapshotter::new(ram.join("snapshots"));
        let active = snap
            .prepare("k", std::slice::from_ref(&base))
            .map_err(|e| e.to_string())?;
        let runtime::RootfsSpec::Dir(rootfs) = &active.rootfs else {
            return Err("native gives a Dir rootfs".to_string());
        };
        step(rootfs).map_err(|e| e.to_string())?;
        let changes = snap.diff(&active, &[]).map_err(|e| e.to_string())?;
        let mut lines: Vec<String> = changes
            .iter()
            .map(|c| {
                let kind = match c.kind {
                    ChangeKind::Added(_) => "added",
                    ChangeKind::Modified(_) => "modified",
                    ChangeKind::Deleted => "deleted",
                    ChangeKind::Opaque(_) => "opaque",
                };
                format!("{} {kind}", c.path.display())
            })
            .collect();
        let layer = snap.commit(&active, &changes).map_err(|e| e.to_string())?;
        for name in ["gone", "opq/old2"] {
            let md = fs::symlink_metadata(layer.join(name)).map_err(|e| e.to_string())?;
            let is_whiteout = md.file_type().is_char_device() && md.rdev() == 0;
            lines.push(format!("layer {name} whiteout={is_whiteout}"));
        }
        let view = LowerView::new(vec![layer.clone(), base.clone()]);
        let merged: Vec<String> = view
            .read_dir(Path::new("opq"))
            .map_err(|e| e.to_string())?
            .keys()
            .map(|k| k.to_string_lossy().into_owned())
            .collect();
        lines.push(format!("merged opq: {}", merged.join(",")));
        let top: Vec<String> = view
            .read_dir(Path::new(""))
            .map_err(|e| e.to_string())?
            .keys()
            .map(|k| k.to_string_lossy().into_owned())
            .collect();
        lines.push(format!("merged root: {}", top.join(",")));
        let old1 = fs::read_to_string(layer.join("opq/old1")).map_err(|e| e.to_string())?;
        lines.push(format!("layer opq/old1: {old1}"));
        Ok::<String, String>(lines.join("\n"))
    })
    .expect("namespace child");
    assert_eq!(
        report.lines().collect::<Vec<_>>(),
        vec![
            "gone deleted",
            "opq opaque",
            "opq/new added",
            "opq/old1 added",
            "layer gone whiteout=true",
            "layer opq/old2 whiteout=true",
            "merged opq: new,old1",
            "merged root: kept,opq",
            "layer opq/old1: again",
        ]
    );
}
