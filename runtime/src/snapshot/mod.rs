//! Snapshots: the root filesystem a build step runs in, and what it changed.
//!
//! A snapshotter turns a stack of layer directories into a root filesystem
//! for one step ([`Snapshotter::prepare`] → a [`RootfsSpec`] the sandbox
//! mounts), reports what the step changed ([`Snapshotter::diff`] → the
//! [`Change`] list the builder writes as a layer), and turns those changes
//! into a new layer directory ([`Snapshotter::commit`]) that can be a lower of
//! the next step. Every layer directory, whichever snapshotter made it, has
//! the one on-disk form overlayfs uses (whiteouts as character devices 0/0,
//! opaque directories marked `user.overlay.opaque=y`), so the snapshotters
//! are interchangeable between steps and an unpacked image layer in that form
//! is a valid lower for both.
//!
//! Implementations: [`OverlaySnapshotter`] (kernel overlayfs mounted by the
//! sandbox inside its user namespace; the fast path) and
//! [`NativeSnapshotter`] (a plain copy; always works), and for chroot
//! isolation, where nothing can be mounted, [`TreeSnapshotter`] (one working
//! tree carried from step to step, diffed by walking it). A FUSE
//! snapshotter can be added behind the same trait. [`choose`] and
//! [`choose_for_chroot`] pick one, with a reason.
//!
//! # One step, as the builder drives it
//! ```text
//! let choice = choose(&store.join("snapshots"), request)?;   // once; log choice.reason
//! let snap = &*choice.snapshotter;
//! let m = sandbox.mapping();
//! let active = run_in_userns(m, || snap.prepare(&key, &lowers))?;  // lowers topmost first
//! sandbox.run(&RunSpec::new(active.rootfs.clone(), argv), &mut output)?;
//! let excludes = sandbox_mount_points(&mounts) paths;
//! let changes = run_in_userns(m, || snap.diff(&active, &excludes))?;
//! write the layer tar from `changes` (inside the namespace: content may be
//!   readable only there), BEFORE commit: File sources point into the
//!   active snapshot, which commit moves;
//! run_in_userns(m, || snap.commit(&active, &changes).map(|_| ()))?;
//! let layer = active.layer_dir();      // a lower for the next step
//! ...
//! run_in_userns(m, || snap.remove(&key))?;   // when the layer is no longer needed
//! ```
//! After commit, a change's content is at `layer.join(&change.path)` for
//! both snapshotters.
//!
//! # Credentials
//! Everything here uses the caller's credentials. Layers and snapshots hold
//! files owned by subordinate ids that the invoking user cannot read or
//! delete, so the builder calls `prepare` (native), `diff`, `commit` and
//! `remove` inside the build's user namespace (the sandbox's
//! `run_in_userns`), where those files are owned by mapped ids and the ids
//! reported in the diff are container ids. The overlay `prepare` only creates
//! empty directories and works anywhere.

mod choose;
mod codec;
pub(crate) mod copy;
mod error;
mod key;
mod merge;
mod native;
mod overlay;
mod probe;
mod remove;
mod tree;

use std::path::{Path, PathBuf};

pub use choose::{Choice, SnapshotterKind, SnapshotterRequest, choose, choose_for_chroot};
pub use error::SnapshotError;
pub use native::NativeSnapshotter;
pub use overlay::{OVERLAY_MAX_LOWERS, OverlaySnapshotter, overlay_mount_options};
pub use probe::{ProbeOutcome, probe_overlay};
pub use remove::remove_tree;
pub use tree::TreeSnapshotter;

use crate::RootfsSpec;
use crate::diff::Change;

/// A snapshot that a step can run in (prepared, not yet committed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSnapshot {
    /// The caller's name for it, unique under the snapshotter's root.
    pub key: String,
    /// `<root>/<key>`: everything this snapshot owns lives below it.
    pub dir: PathBuf,
    /// The layer directories it was prepared from, topmost first.
    pub lowers: Vec<PathBuf>,
    /// What the sandbox mounts as `/` for the step.
    pub rootfs: RootfsSpec,
}

impl ActiveSnapshot {
    /// Where [`Snapshotter::commit`] puts the layer (`<dir>/layer`), for a
    /// caller that ran the commit in a forked child.
    pub fn layer_dir(&self) -> PathBuf {
        self.dir.join(LAYER_DIR)
    }
}

/// A way to give a build step a writable root filesystem over read-only
/// layers and to read back what the step changed.
///
/// Layer directories (`lowers`) are always ordered **topmost first**, the
/// order of overlayfs' `lowerdir=` and of [`RootfsSpec::Overlay`]: the base
/// image's first layer is the last element. They must stay unchanged while a
/// snapshot prepared from them exists.
pub trait Snapshotter: Send + Sync {
    /// Which implementation this is (for progress output and cache keys of
    /// nothing: both produce the same layers).
    fn kind(&self) -> SnapshotterKind;

    /// The directory that holds every snapshot of this snapshotter
    /// (`<store>/snapshots/`).
    fn root(&self) -> &Path;

    /// Makes a new writable snapshot `key` over `lowers` (topmost first;
    /// empty for `FROM scratch`). Fails if `key` already exists.
    fn prepare(&self, key: &str, lowers: &[PathBuf]) -> Result<ActiveSnapshot, SnapshotError>;

    /// What the step changed, sorted by path, without the sandbox's mount
    /// points `excludes` (container paths: `/dev`, `/proc`, `/sys`,
    /// `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`, RUN mount targets,
    /// secret targets). Run after the step's processes have exited.
    fn diff(
        &self,
        snapshot: &ActiveSnapshot,
        excludes: &[PathBuf],
    ) -> Result<Vec<Change>, SnapshotError>;

    /// Turns the snapshot into a layer directory holding exactly `changes`
    /// (the list [`Snapshotter::diff`] returned) in overlay form, and returns
    /// its path, `<root>/<key>/layer`. The snapshot can no longer be run in;
    /// the layer directory can be a lower of later prepares until
    /// [`Snapshotter::remove`]. The `source` paths of the changes are invalid
    /// afterwards; the same content is at `<layer>/<change.path>`.
    fn commit(
        &self,
        snapshot: &ActiveSnapshot,
        changes: &[Change],
    ) -> Result<PathBuf, SnapshotError>;

    /// Tells the snapshotter that the layer directory `committed` (made by
    /// [`Snapshotter::commit`]) was moved to, or has identical content at,
    /// `stored`, which later prepares will name in their lowers. Only the
    /// tree snapshotter cares (its parked trees are labelled by lowers).
    fn layer_stored_as(&self, committed: &Path, stored: &Path) {
        let _ = (committed, stored);
    }

    /// Deletes snapshot `key` (active or committed) and everything it owns.
    /// Removing a key that does not exist is not an error.
    fn remove(&self, key: &str) -> Result<(), SnapshotError>;
}

/// The directory name of a committed layer inside a snapshot's directory.
pub(crate) const LAYER_DIR: &str = "layer";

/// Lowers must be absolute (the sandbox mounts them from another working
/// directory) and exist as directories.
pub(crate) fn check_lowers(lowers: &[PathBuf]) -> Result<(), SnapshotError> {
    for l in lowers {
        if !l.is_absolute() {
            return Err(SnapshotError::Unsupported(format!(
                "lower layer {} is a relative path; pass absolute paths",
                l.display()
            )));
        }
        if !l.is_dir() {
            return Err(SnapshotError::MissingLower { path: l.clone() });
        }
    }
    Ok(())
}

/// The snapshot root as an absolute path, so every path in a
/// [`RootfsSpec`] is absolute whatever the sandbox's working directory.
pub(crate) fn absolute_root(root: PathBuf) -> PathBuf {
    std::path::absolute(&root).unwrap_or(root)
}
