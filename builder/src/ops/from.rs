//! `--from=<stage|image>`: reading another filesystem state in place.
//!
//! `COPY --from` and `RUN --mount=…,from=` read a stage's or an image's
//! root filesystem. Its layers are already unpacked once per diff_id into
//! `<root>/snapshots/layer-<diff_id>` (see [`super::exec`]), shared by
//! every step and build, so nothing is unpacked again: a snapshot is
//! prepared over those layer directories — for the overlay snapshotter two
//! empty directories, for the native one a copy — and read, then removed.
//!
//! `COPY --from` reads it in a user-namespace child: the merged tree is
//! mounted there (the mount dies with the child), the child chroots into
//! it so that source paths and their symlinks resolve inside the source
//! filesystem and never on the host, selects the sources and writes them
//! into the new layer's directory, opened before the chroot. Inside the
//! namespace subordinate owners read back as container ids, so the copy
//! keeps the source's owners as Docker does. The directory is then
//! committed like any step's ([`super::commit`]).
//!
//! A `RUN --mount=type=bind,from=` hands the sandbox the snapshot's layer
//! directories to stack read-only inside its own namespace (overlay), or
//! the native snapshot's tree to bind.

use std::os::fd::OwnedFd;
use std::path::Path;

use anyhow::{Context as _, anyhow};
use runtime::RootfsSpec;
use runtime::sandbox::run_mounts::BindFrom;

use super::dest::DirMeta;
use super::exec::Executor;
use super::{Layer, file};
use crate::context::checksum::Overrides;
use crate::context::dockerignore::Matcher;
use crate::context::select::{CopySpec, is_wildcard, select};

/// Where, inside a snapshot's directory, its overlay is mounted for reading.
const MERGED_DIR: &str = "merged";

/// The filesystem a `RUN --mount=type=bind,from=` reads, as the sandbox
/// takes it; the snapshot behind it is removed when this is dropped, after
/// the step.
pub struct MountSource<'a> {
    pub from: BindFrom,
    executor: &'a Executor<'a>,
    key: String,
}

impl Drop for MountSource<'_> {
    fn drop(&mut self) {
        self.executor.remove_snapshot(&self.key);
    }
}

impl Executor<'_> {
    /// `COPY --from`: the layer of `spec`'s sources read from `layers`
    /// (bottom first), with the source's modes and owners unless
    /// `--chown`/`--chmod` (`ov`), plus the directories `missing` in the
    /// destination image (`spec.dest` is already resolved there, see
    /// [`super::dest`]); none when there is nothing to write.
    #[allow(clippy::too_many_arguments)] // each is a distinct input of the step
    pub fn copy_from(
        &self,
        layers: &[Layer],
        spec: &CopySpec,
        ov: &Overrides,
        missing: &[String],
        parents: &[DirMeta],
        epoch: Option<i64>,
    ) -> anyhow::Result<Option<Layer>> {
        let lowers = self.lowers(layers)?;
        let (sandbox, choice) = self.get()?;
        let snap = &choice.snapshotter;
        let key = self.snapshot_key("copy-from");
        let out_dir = self.new_layer_dir()?;
        let out = out_dir.clone();
        let parents = parents.to_vec();
        // Prepared as the store's owner (in-process in chroot isolation,
        // where the tree snapshotter keeps its state), read in a child of
        // its own: it mounts and chroots.
        let active = sandbox
            .as_owner(|| snap.prepare(&key, &lowers))
            .map_err(|e| anyhow!("preparing the --from filesystem: {e}"));
        let written = active.and_then(|active| {
            sandbox
                .in_child(|| -> Result<bool, String> {
                    let at = active.dir.join(MERGED_DIR);
                    std::fs::create_dir(&at)
                        .map_err(|e| format!("creating {}: {e}", at.display()))?;
                    let root = active.rootfs.mount_for_reading(&at)?;
                    // Opened before the chroot hides the store.
                    let dest: OwnedFd = std::fs::File::open(&out)
                        .map_err(|e| format!("opening {}: {e}", out.display()))?
                        .into();
                    enter_root(&root)?;
                    write_selection(spec, ov, missing, dest, &out).map_err(|e| format!("{e:#}"))
                })
                .map_err(|e| anyhow!("{e}"))
        });
        self.remove_snapshot(&key);
        match written {
            Ok(true) => {}
            Ok(false) => {
                self.discard(&out_dir);
                return Ok(None);
            }
            Err(e) => {
                self.discard(&out_dir);
                return Err(e);
            }
        }
        // The image's own metadata on the parents the layer holds.
        let files = super::commit::FileLayer {
            parents,
            ..Default::default()
        };
        let d = out_dir.clone();
        self.in_layer_ns(move || files.fix_parents(&d).map_err(|e| format!("{e:#}")))?;
        self.commit_dir(out_dir, epoch).map(Some)
    }

    /// `RUN --mount=type=bind,from=`: `layers` (bottom first) prepared for
    /// the sandbox to mount.
    pub fn mount_source(&self, layers: &[Layer]) -> anyhow::Result<MountSource<'_>> {
        let lowers = self.lowers(layers)?;
        let (sandbox, choice) = self.get()?;
        let snap = &choice.snapshotter;
        let key = self.snapshot_key("mount-from");
        let active = sandbox
            .as_owner(|| snap.prepare(&key, &lowers))
            .map_err(|e| anyhow!("preparing the mount's filesystem: {e}"))?;
        let from = match active.rootfs {
            // The snapshot's own lowers: a stack too deep for one mount is
            // squashed there, an empty one is an empty directory.
            RootfsSpec::Overlay { lowers, .. } => BindFrom::Layers(lowers),
            RootfsSpec::Dir(dir) => BindFrom::Dir(dir),
        };
        Ok(MountSource {
            from,
            executor: self,
            key,
        })
    }
}

/// In the child, chrooted into the source: selects `spec`'s sources and
/// writes them, with the `missing` directories, into the layer directory
/// `dest` (opened before the chroot; `label` names it). Returns whether
/// it holds anything.
fn write_selection(
    spec: &CopySpec,
    ov: &Overrides,
    missing: &[String],
    dest: OwnedFd,
    label: &Path,
) -> anyhow::Result<bool> {
    let root = Path::new("/");
    for src in spec.sources.iter().filter(|s| !is_wildcard(s)) {
        // Said here rather than by `select`, whose words are about the
        // build context.
        if std::fs::symlink_metadata(root.join(src.trim_start_matches('/'))).is_err() {
            anyhow::bail!("{src} does not exist in the --from filesystem");
        }
    }
    let sel = select(root, &Matcher::default(), spec)?;
    let (entries, _) = file::copy_entries(root, &sel, ov, true, false, &[], &spec.dest)?;
    let entries = file::with_dirs(entries, missing, ov.uid, ov.gid);
    if entries.is_empty() {
        return Ok(false);
    }
    let opts = cache::layer::UnpackOptions {
        whiteouts: cache::layer::WhiteoutMode::Overlay,
        ..Default::default()
    };
    cache::layer::unpack_entries_at(entries, dest, label, &opts).context("writing the layer")?;
    Ok(true)
}

/// Makes `root` this process's `/` (and working directory): every path
/// and symlink from here on resolves inside it.
fn enter_root(root: &Path) -> Result<(), String> {
    let c = std::ffi::CString::new(root.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{} holds a NUL byte", root.display()))?;
    // SAFETY: a valid NUL-terminated path; chroot only changes this
    // (forked, single-threaded) process's root.
    if unsafe { libc::chroot(c.as_ptr()) } != 0 {
        return Err(format!(
            "chroot into {}: {}",
            root.display(),
            std::io::Error::last_os_error()
        ));
    }
    std::env::set_current_dir("/").map_err(|e| format!("chdir / after chroot: {e}"))
}
