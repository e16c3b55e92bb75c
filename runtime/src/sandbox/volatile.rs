//! Making overlay's `volatile` option safe to use across several steps on
//! the same upper/work pair.
//!
//! With `volatile`, unmounting skips the syncfs of the whole upper file
//! system (5-25 ms per step here). Overlayfs leaves `work/work/incompat/volatile`
//! behind and refuses the next mount while it exists, because after a crash
//! the upper dir may have lost writes. The page cache survives a crashed
//! *process* though; only a reboot loses unsynced data. So each mount
//! records the boot id next to the work dir, and before the next mount the
//! marker is cleared when the boot id is unchanged, or the mount is refused
//! with an explanation when the machine rebooted in between.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const MARKER: &str = "strata-volatile-boot-id";

fn boot_id() -> Result<String, String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("reading /proc/sys/kernel/random/boot_id: {e}"))
}

/// Called before mounting an overlay with `volatile` on `work`.
pub(crate) fn prepare_work_dir(work: &Path) -> Result<(), String> {
    let now = boot_id()?;
    let inner = work.join("work");
    // incompat/ (mode 000 too) only ever holds the `volatile` flag.
    let flag = inner.join("incompat");
    let exists = |p: &Path| fs::symlink_metadata(p).is_ok();
    if exists(&inner) {
        // work/work is mode 000 after a mount; it is ours (uid 0 inside).
        let _ = fs::set_permissions(&inner, fs::Permissions::from_mode(0o700));
    }
    if exists(&flag) {
        let recorded = fs::read_to_string(work.join(MARKER)).unwrap_or_default();
        if recorded.trim() != now {
            return Err(format!(
                "the overlay upper dir next to {} was last used before a reboot with unsynced \
                 (volatile) writes and may be incomplete; discard this snapshot and start from a \
                 fresh one",
                work.display()
            ));
        }
        crate::sandbox::userns::remove_tree(&inner.join("incompat"))
            .or_else(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| format!("clearing the volatile marker in {}: {e}", inner.display()))?;
    }
    fs::write(work.join(MARKER), &now)
        .map_err(|e| format!("writing {}: {e}", work.join(MARKER).display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_is_cleared_only_within_the_same_boot() {
        let d = tempfile::tempdir().unwrap();
        let work = d.path();
        fs::create_dir_all(work.join("work/incompat/volatile")).unwrap();
        fs::write(work.join(MARKER), "some-other-boot\n").unwrap();
        let e = prepare_work_dir(work).unwrap_err();
        assert!(e.contains("before a reboot"), "{e}");
        assert!(work.join("work/incompat/volatile").exists());
        fs::write(work.join(MARKER), boot_id().unwrap()).unwrap();
        fs::set_permissions(
            work.join("work/incompat"),
            fs::Permissions::from_mode(0o000),
        )
        .unwrap();
        prepare_work_dir(work).unwrap();
        assert!(!work.join("work/incompat").exists());
        // A fresh work dir just gets the marker.
        let fresh = d.path().join("fresh");
        fs::create_dir(&fresh).unwrap();
        prepare_work_dir(&fresh).unwrap();
        assert_eq!(
            fs::read_to_string(fresh.join(MARKER)).unwrap(),
            boot_id().unwrap()
        );
    }
}
