//! The kernel overlayfs snapshotter: the fast path.
//!
//! `prepare` only creates an empty upper and work directory; the sandbox
//! mounts `overlay` with `userxattr` from inside its user namespace (an
//! unprivileged user may mount overlayfs only there, Linux 5.11+). The
//! step's writes land in the upper directory, which after the step *is* the
//! diff ([`crate::diff::diff_overlay_upper`]) and, pruned of the sandbox's
//! mount points, the committed layer: it is already in the form overlayfs
//! reads as a lower, so commit is a rename.
//!
//! Stack depth. Overlayfs stacks at most 500 layers. The legacy mount(2)
//! option string is limited to one page (4096 bytes including the NUL), which
//! with absolute paths of ~100 bytes allows only ~35 lowers. The new mount API
//! (`fsopen("overlay")` and one `fsconfig(FSCONFIG_SET_STRING, "lowerdir+",
//! dir)` per layer, topmost first; Linux 6.8+) has no such limit, but the
//! sandbox mounts with mount(2), so `prepare` squashes the bottom of a stack
//! that would not fit into one copied layer (see `squash_if_too_deep`).
//! [`overlay_mount_options`] builds the legacy string and refuses one that
//! does not fit, saying so.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::key::validate_key;
use super::merge::merge_into;
use super::remove::remove_tree;
use super::{ActiveSnapshot, LAYER_DIR, SnapshotError, Snapshotter, SnapshotterKind};
use super::{absolute_root, check_lowers};
use crate::RootfsSpec;
use crate::diff::overlay_form::{OPAQUE_XATTR, is_whiteout};
use crate::diff::{Change, ChangeKind, LowerView, apply_excludes, diff_overlay_upper};

/// Overlayfs' `OVL_MAX_STACK`.
pub const OVERLAY_MAX_LOWERS: usize = 500;
/// Lowers this snapshotter mounts at most: one less than overlayfs allows,
/// for the sandbox's own mount-point stub layer.
const STACK_BUDGET: usize = OVERLAY_MAX_LOWERS - 1;
/// Room left in the mount(2) page for what the sandbox adds to the options
/// (its stub layer's path).
const SANDBOX_OPTION_MARGIN: usize = 512;
/// The bottom of a stack too deep for one mount, copied into one layer.
const SQUASHED_DIR: &str = "squashed";
/// The legacy mount(2) data page, including its terminating NUL.
const MOUNT_DATA_MAX: usize = 4096;

const UPPER_DIR: &str = "upper";
const WORK_DIR: &str = "work";
/// The lower of a `FROM scratch` step (overlayfs needs at least one).
const EMPTY_DIR: &str = "empty";

/// Bookkeeping overlayfs writes on copied-up objects; meaningless once the
/// upper directory becomes a lower, so commit removes it.
const BOOKKEEPING_XATTRS: [&str; 3] = [
    "user.overlay.origin",
    "user.overlay.impure",
    "user.overlay.uuid",
];

#[derive(Debug, Clone)]
pub struct OverlaySnapshotter {
    root: PathBuf,
}

impl OverlaySnapshotter {
    /// Snapshots live under `root` (`<store>/snapshots/`). The root must be on
    /// a file system that can hold an overlay upper directory with user
    /// xattrs; [`super::choose`] checks that.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        OverlaySnapshotter {
            root: absolute_root(root.into()),
        }
    }

    fn upper_of(snapshot: &ActiveSnapshot) -> Result<&Path, SnapshotError> {
        match &snapshot.rootfs {
            RootfsSpec::Overlay { upper, .. } if upper.is_dir() => Ok(upper),
            _ => Err(SnapshotError::NotActive {
                path: snapshot.dir.clone(),
            }),
        }
    }
}

impl Snapshotter for OverlaySnapshotter {
    fn kind(&self) -> SnapshotterKind {
        SnapshotterKind::Overlay
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn prepare(&self, key: &str, lowers: &[PathBuf]) -> Result<ActiveSnapshot, SnapshotError> {
        validate_key(key)?;
        check_lowers(lowers)?;
        let dir = create_snapshot_dir(&self.root, key)?;
        prepare_in(&dir, key, lowers).inspect_err(|_| {
            // Leave no half-made snapshot behind; the original error matters.
            let _ = remove_tree(&dir);
        })
    }

    fn diff(
        &self,
        snapshot: &ActiveSnapshot,
        excludes: &[PathBuf],
    ) -> Result<Vec<Change>, SnapshotError> {
        let upper = Self::upper_of(snapshot)?;
        let view = LowerView::new(snapshot.lowers.clone());
        let raw = diff_overlay_upper(upper, &view)?;
        Ok(apply_excludes(raw, excludes, &view)?)
    }

    fn commit(
        &self,
        snapshot: &ActiveSnapshot,
        changes: &[Change],
    ) -> Result<PathBuf, SnapshotError> {
        let upper = Self::upper_of(snapshot)?.to_path_buf();
        let keep = KeepSet::new(changes);
        prune(&upper, Path::new(""), &keep)?;
        let layer = snapshot.dir.join(LAYER_DIR);
        std::fs::rename(&upper, &layer)
            .map_err(|e| SnapshotError::io("rename the upper directory to", &layer, e))?;
        remove_tree(&snapshot.dir.join(WORK_DIR))?;
        remove_tree(&snapshot.dir.join(EMPTY_DIR))?;
        remove_tree(&snapshot.dir.join(SQUASHED_DIR))?;
        Ok(layer)
    }

    fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        validate_key(key)?;
        remove_tree(&self.root.join(key))
    }
}

/// The body of [`OverlaySnapshotter::prepare`] once `dir` exists.
fn prepare_in(dir: &Path, key: &str, lowers: &[PathBuf]) -> Result<ActiveSnapshot, SnapshotError> {
    let upper = dir.join(UPPER_DIR);
    let work = dir.join(WORK_DIR);
    for d in [&upper, &work] {
        std::fs::create_dir(d).map_err(|e| SnapshotError::io("create directory", d, e))?;
    }
    let mut mount_lowers = squash_if_too_deep(dir, lowers, &upper, &work)?;
    if mount_lowers.is_empty() {
        let empty = dir.join(EMPTY_DIR);
        std::fs::create_dir(&empty)
            .map_err(|e| SnapshotError::io("create directory", &empty, e))?;
        mount_lowers.push(empty);
    }
    // The merged root takes the upper root's attributes; keep the image's.
    let top_mode = std::fs::metadata(&mount_lowers[0])
        .map_err(|e| SnapshotError::io("stat", &mount_lowers[0], e))?
        .permissions()
        .mode();
    std::fs::set_permissions(&upper, std::fs::Permissions::from_mode(top_mode & 0o7777))
        .map_err(|e| SnapshotError::io("chmod", &upper, e))?;
    Ok(ActiveSnapshot {
        key: key.to_string(),
        dir: dir.to_path_buf(),
        lowers: lowers.to_vec(),
        rootfs: RootfsSpec::Overlay {
            lowers: mount_lowers,
            upper,
            work,
        },
    })
}

/// The lowers to mount: `lowers` itself when the stack fits one mount, else
/// its top layers plus one squashed copy of the rest (`<dir>/squashed`).
///
/// A stack does not fit when it has more layers than overlayfs stacks, or
/// when the legacy mount(2) option string (which the sandbox uses) would
/// exceed its page. Squashing costs a copy of the bottom layers, like the
/// native snapshotter, but keeps deep images buildable on the fast path.
fn squash_if_too_deep(
    dir: &Path,
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
) -> Result<Vec<PathBuf>, SnapshotError> {
    let fits = |ls: &[PathBuf]| {
        ls.len() <= STACK_BUDGET
            && mount_options_bytes(ls, upper, work).len() + SANDBOX_OPTION_MARGIN < MOUNT_DATA_MAX
    };
    if fits(lowers) {
        return Ok(lowers.to_vec());
    }
    let squashed = dir.join(SQUASHED_DIR);
    // As many top layers as fit beside the squashed rest.
    let with_squashed = |keep: usize| {
        let mut ls = lowers[..keep].to_vec();
        ls.push(squashed.clone());
        ls
    };
    let keep = (0..lowers.len().min(STACK_BUDGET - 1))
        .rev()
        .find(|&keep| fits(&with_squashed(keep)))
        .ok_or_else(|| {
            SnapshotError::Unsupported(format!(
                "the snapshot root {} is too long a path for an overlay mount; use a shorter \
                 --root or --snapshotter native",
                dir.display()
            ))
        })?;
    merge_into(&LowerView::new(lowers[keep..].to_vec()), &squashed)?;
    Ok(with_squashed(keep))
}

/// Creates `<root>/<key>`, refusing an existing one.
pub(crate) fn create_snapshot_dir(root: &Path, key: &str) -> Result<PathBuf, SnapshotError> {
    std::fs::create_dir_all(root).map_err(|e| SnapshotError::io("create directory", root, e))?;
    let dir = root.join(key);
    match std::fs::create_dir(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(SnapshotError::Exists { path: dir })
        }
        Err(e) => Err(SnapshotError::io("create directory", &dir, e)),
    }
}

/// The paths a committed upper keeps: every change and its ancestors; and
/// which directories stay opaque.
struct KeepSet {
    paths: std::collections::HashSet<PathBuf>,
    opaque: std::collections::HashSet<PathBuf>,
}

impl KeepSet {
    fn new(changes: &[Change]) -> Self {
        let mut paths = std::collections::HashSet::new();
        let mut opaque = std::collections::HashSet::new();
        for c in changes {
            if matches!(c.kind, ChangeKind::Opaque(_)) {
                opaque.insert(c.path.clone());
            }
            for a in c.path.ancestors() {
                if !paths.insert(a.to_path_buf()) {
                    break;
                }
            }
        }
        KeepSet { paths, opaque }
    }
}

/// Removes from the upper directory everything the diff left out (sandbox
/// mount points and their copied-up parents, whiteouts of nothing), and
/// overlay's bookkeeping xattrs from what stays. An opaque marker stays only
/// where the diff reports an opaque directory: overlayfs also sets it on a
/// directory made where a file was deleted, where it hides nothing, and
/// dropping it there makes the layer identical to the native snapshotter's.
fn prune(abs: &Path, rel: &Path, keep: &KeepSet) -> Result<(), SnapshotError> {
    strip_bookkeeping(abs, !keep.opaque.contains(rel))?;
    let rd = std::fs::read_dir(abs).map_err(|e| SnapshotError::io("list", abs, e))?;
    for item in rd {
        let item = item.map_err(|e| SnapshotError::io("list", abs, e))?;
        let child_rel = rel.join(item.file_name());
        let child_abs = item.path();
        let file_type = item
            .file_type()
            .map_err(|e| SnapshotError::io("stat", &child_abs, e))?;
        if !keep.paths.contains(&child_rel) {
            if file_type.is_dir() {
                remove_tree(&child_abs)?;
            } else {
                std::fs::remove_file(&child_abs)
                    .map_err(|e| SnapshotError::io("remove", &child_abs, e))?;
            }
        } else if file_type.is_dir() {
            prune(&child_abs, &child_rel, keep)?;
        } else if file_type.is_file() && !is_xattr_whiteout(&child_abs)? {
            strip_bookkeeping(&child_abs, false)?;
        }
    }
    Ok(())
}

fn is_xattr_whiteout(path: &Path) -> Result<bool, SnapshotError> {
    let md = std::fs::symlink_metadata(path).map_err(|e| SnapshotError::io("stat", path, e))?;
    Ok(is_whiteout(path, &md)?)
}

/// Removes overlay's bookkeeping xattrs (and the opaque marker if asked)
/// from a directory or regular file.
fn strip_bookkeeping(path: &Path, opaque_too: bool) -> Result<(), SnapshotError> {
    let extra = opaque_too.then_some(OPAQUE_XATTR);
    for name in BOOKKEEPING_XATTRS.into_iter().chain(extra) {
        match xattr::remove(path, name) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENODATA) | Some(libc::EOPNOTSUPP)
                ) => {}
            Err(e) => return Err(SnapshotError::io("remove overlay xattr from", path, e)),
        }
    }
    Ok(())
}

/// The legacy mount(2) data string for `overlay` with `userxattr`:
/// `lowerdir=L1:L2,upperdir=U,workdir=W,userxattr` (lowers topmost first),
/// with `\`, `,` and `:` in paths escaped by a backslash. Fails when it does
/// not fit the one page mount(2) accepts; see the module documentation for
/// the two ways around that.
pub fn overlay_mount_options(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
) -> Result<String, SnapshotError> {
    let s = mount_options_bytes(lowers, upper, work);
    if s.len() >= MOUNT_DATA_MAX {
        return Err(SnapshotError::Unsupported(format!(
            "the overlay mount options for {} lower layers are {} bytes, more than mount(2) \
             accepts ({}); mount with the new mount API (fsconfig lowerdir+, Linux 6.8+), use \
             paths relative to the snapshot root, or use --snapshotter native",
            lowers.len(),
            s.len(),
            MOUNT_DATA_MAX - 1
        )));
    }
    String::from_utf8(s).map_err(|_| {
        SnapshotError::Unsupported(
            "a snapshot path is not UTF-8; overlay mount options must be text".into(),
        )
    })
}

/// The option string of [`overlay_mount_options`], unchecked.
fn mount_options_bytes(lowers: &[PathBuf], upper: &Path, work: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    fn escape(p: &Path, out: &mut Vec<u8>) {
        for &b in p.as_os_str().as_bytes() {
            if matches!(b, b'\\' | b',' | b':') {
                out.push(b'\\');
            }
            out.push(b);
        }
    }
    let mut s = b"lowerdir=".to_vec();
    for (i, l) in lowers.iter().enumerate() {
        if i > 0 {
            s.push(b':');
        }
        escape(l, &mut s);
    }
    s.extend_from_slice(b",upperdir=");
    escape(upper, &mut s);
    s.extend_from_slice(b",workdir=");
    escape(work, &mut s);
    s.extend_from_slice(b",userxattr");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options_escape_and_order() {
        let opts = overlay_mount_options(
            &[PathBuf::from("/s/top"), PathBuf::from("/s/a,b:c")],
            Path::new("/s/u"),
            Path::new("/s/w"),
        )
        .expect("short options fit");
        assert_eq!(
            opts,
            r"lowerdir=/s/top:/s/a\,b\:c,upperdir=/s/u,workdir=/s/w,userxattr"
        );
    }

    #[test]
    fn mount_options_refuse_more_than_a_page() {
        let lowers: Vec<PathBuf> = (0..60)
            .map(|i| {
                PathBuf::from(format!(
                    "/home/user/.local/share/strata/snapshots/{i:064}/layer"
                ))
            })
            .collect();
        let err = overlay_mount_options(&lowers, Path::new("/u"), Path::new("/w"))
            .expect_err("60 long paths exceed a page");
        assert!(err.to_string().contains("lowerdir+"), "{err}");
    }
}
