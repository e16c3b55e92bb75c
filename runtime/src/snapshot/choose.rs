//! Picking a snapshotter, and saying why.
//!
//! `auto` uses kernel overlayfs when a probe mount in a user namespace works
//! on the snapshot root's file system, and the native copy otherwise; the
//! reason is a sentence the builder shows in verbose output, so a slow build
//! on the fallback explains itself. `--snapshotter overlay|native` forces one;
//! forcing overlay where the probe fails is an error that carries the probe's
//! explanation rather than a mount failure in the middle of a build.
//!
//! Probing costs a fork and a mount (a few ms), so outcomes are cached per
//! root for the life of the process, and a success is also remembered in
//! `<root>/.overlay-probe-ok` keyed by kernel release and device, so that
//! later runs skip it. Failures are not cached on disk: the fix (a sysctl, a
//! volume) should take effect on the next run.

use std::collections::HashMap;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

use super::probe::{ProbeOutcome, probe_overlay};
use super::{NativeSnapshotter, OverlaySnapshotter, SnapshotError, Snapshotter, TreeSnapshotter};

/// The implementations. Non-exhaustive: a FUSE snapshotter is planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SnapshotterKind {
    Overlay,
    Native,
    /// One working tree per chain of steps (chroot isolation).
    Tree,
}

impl fmt::Display for SnapshotterKind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            SnapshotterKind::Overlay => "overlay",
            SnapshotterKind::Native => "native",
            SnapshotterKind::Tree => "tree",
        })
    }
}

/// The value of `--snapshotter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotterRequest {
    #[default]
    Auto,
    Force(SnapshotterKind),
}

impl FromStr for SnapshotterRequest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(SnapshotterRequest::Auto),
            "overlay" => Ok(SnapshotterRequest::Force(SnapshotterKind::Overlay)),
            "native" => Ok(SnapshotterRequest::Force(SnapshotterKind::Native)),
            other => Err(format!(
                "unknown snapshotter {other:?}: expected auto, overlay or native"
            )),
        }
    }
}

/// The chosen snapshotter and why.
pub struct Choice {
    pub snapshotter: Box<dyn Snapshotter>,
    pub kind: SnapshotterKind,
    /// One sentence for verbose output.
    pub reason: String,
}

impl fmt::Debug for Choice {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Choice")
            .field("kind", &self.kind)
            .field("reason", &self.reason)
            .finish()
    }
}

/// Chooses the snapshotter for snapshots under `root` (`<store>/snapshots/`).
pub fn choose(root: &Path, request: SnapshotterRequest) -> Result<Choice, SnapshotError> {
    let make = |kind, reason: String| {
        let snapshotter: Box<dyn Snapshotter> = match kind {
            SnapshotterKind::Overlay => Box::new(OverlaySnapshotter::new(root)),
            SnapshotterKind::Native => Box::new(NativeSnapshotter::new(root)),
            SnapshotterKind::Tree => Box::new(TreeSnapshotter::new(root)),
        };
        Choice {
            snapshotter,
            kind,
            reason,
        }
    };
    match request {
        SnapshotterRequest::Force(SnapshotterKind::Native) => Ok(make(
            SnapshotterKind::Native,
            "native (copy) snapshotter, as requested with --snapshotter native".into(),
        )),
        SnapshotterRequest::Force(SnapshotterKind::Tree) => Ok(make(
            SnapshotterKind::Tree,
            "tree snapshotter (one working tree per chain of steps), as requested".into(),
        )),
        SnapshotterRequest::Force(SnapshotterKind::Overlay) => match cached_probe(root) {
            ProbeOutcome::Works => Ok(make(
                SnapshotterKind::Overlay,
                "overlay snapshotter, as requested with --snapshotter overlay".into(),
            )),
            ProbeOutcome::Unavailable(why) => Err(SnapshotError::Unsupported(format!(
                "--snapshotter overlay cannot work here: {why}; use --snapshotter native (or \
                 auto) instead"
            ))),
        },
        SnapshotterRequest::Auto => match cached_probe(root) {
            ProbeOutcome::Works => Ok(make(
                SnapshotterKind::Overlay,
                format!(
                    "overlay snapshotter: kernel overlayfs with userxattr works in a user \
                     namespace on {}",
                    root.display()
                ),
            )),
            ProbeOutcome::Unavailable(why) => Ok(make(
                SnapshotterKind::Native,
                format!(
                    "native (copy) snapshotter, slower, because kernel overlayfs is not usable: \
                     {why}"
                ),
            )),
        },
    }
}

/// Chooses the snapshotter for chroot isolation, where nothing can be
/// mounted: the tree snapshotter unless `--snapshotter native` asks for a
/// copy per step; overlay is refused.
pub fn choose_for_chroot(
    root: &Path,
    request: SnapshotterRequest,
) -> Result<Choice, SnapshotError> {
    let (kind, reason): (SnapshotterKind, String) = match request {
        SnapshotterRequest::Force(SnapshotterKind::Overlay) => {
            return Err(SnapshotError::Unsupported(
                "not possible in chroot isolation: --snapshotter overlay needs a mount; use \
                 --snapshotter auto (or native)"
                    .into(),
            ));
        }
        SnapshotterRequest::Force(SnapshotterKind::Native) => (
            SnapshotterKind::Native,
            "native (copy) snapshotter, as requested with --snapshotter native".into(),
        ),
        SnapshotterRequest::Force(SnapshotterKind::Tree) | SnapshotterRequest::Auto => (
            SnapshotterKind::Tree,
            "tree snapshotter: chroot isolation cannot mount an overlay, so consecutive steps \
             share one working tree and each step's changes are found by walking it"
                .into(),
        ),
    };
    let snapshotter: Box<dyn Snapshotter> = match kind {
        SnapshotterKind::Native => Box::new(NativeSnapshotter::new(root)),
        _ => Box::new(TreeSnapshotter::new(root)),
    };
    Ok(Choice {
        snapshotter,
        kind,
        reason,
    })
}

fn cached_probe(root: &Path) -> ProbeOutcome {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, ProbeOutcome>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache.lock().ok().and_then(|c| c.get(root).cloned()) {
        return hit;
    }
    let stamp = root.join(".overlay-probe-ok");
    let expected = disk_stamp(root);
    let outcome = if expected.is_some() && std::fs::read_to_string(&stamp).ok() == expected {
        ProbeOutcome::Works
    } else {
        let outcome = probe_overlay(root);
        if let (ProbeOutcome::Works, Some(text)) = (&outcome, &expected) {
            // Only a hint for later runs; a failed write just means probing again.
            let tmp = root.join(format!(".overlay-probe-ok.{}", std::process::id()));
            if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, &stamp).is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
        }
        outcome
    };
    if let Ok(mut c) = cache.lock() {
        c.insert(root.to_path_buf(), outcome.clone());
    }
    outcome
}

/// What a success stamp must contain to be trusted: the kernel release and
/// the device of the root (a new kernel or a root moved to another file
/// system probes again).
fn disk_stamp(root: &Path) -> Option<String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let dev = std::fs::metadata(root).ok()?.dev();
    Some(format!("{}\n{dev}\n", release.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_flag() {
        assert_eq!("auto".parse(), Ok(SnapshotterRequest::Auto));
        assert_eq!(
            "overlay".parse(),
            Ok(SnapshotterRequest::Force(SnapshotterKind::Overlay))
        );
        assert_eq!(
            "native".parse(),
            Ok(SnapshotterRequest::Force(SnapshotterKind::Native))
        );
        let err = "fuse"
            .parse::<SnapshotterRequest>()
            .expect_err("unknown name");
        assert!(err.contains("auto, overlay or native"), "{err}");
    }
}
