//! What a sandbox mounts as `/`: the meeting point between snapshotters
//! (which prepare it) and the sandbox (which mounts it inside its own user and
//! mount namespaces, because overlayfs with `userxattr` can only be mounted
//! from a mount namespace owned by an unprivileged user namespace).

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootfsSpec {
    /// Kernel overlayfs, mounted by the sandbox with `userxattr`.
    /// `lowers` are ordered topmost first, as overlayfs' `lowerdir=` wants them.
    Overlay {
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
    },
    /// A directory used as it is, read-write (the copy-based snapshotter's
    /// prepared tree). The sandbox bind-mounts it.
    Dir(PathBuf),
}
