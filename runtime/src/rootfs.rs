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

impl RootfsSpec {
    /// Makes the tree readable, read-only, at one directory and returns it,
    /// for a caller that only reads it (the builder's `COPY --from`): an
    /// overlay is mounted on `at` (an empty directory), a plain directory
    /// is already its own answer and `at` is not used.
    ///
    /// Call it inside a user + mount namespace (a
    /// [`crate::run_in_userns`] closure): overlayfs with `userxattr` mounts
    /// only there, and the mount is private to that namespace, so it goes
    /// away with the process and nothing is left to unmount. The overlay is
    /// volatile: nothing writes to it, so its end need not sync the file
    /// system under the store.
    pub fn mount_for_reading(&self, at: &std::path::Path) -> Result<PathBuf, String> {
        match self {
            RootfsSpec::Dir(dir) => Ok(dir.clone()),
            RootfsSpec::Overlay {
                lowers,
                upper,
                work,
            } => {
                crate::sandbox::overlay::OverlaySpec::new(
                    lowers.clone(),
                    Some((upper, work)),
                    true,
                )?
                .mount(at)?;
                crate::sandbox::mounts::make_readonly(at)?;
                Ok(at.to_path_buf())
            }
        }
    }
}
