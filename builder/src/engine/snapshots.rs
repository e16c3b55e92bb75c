//! Layer directories: every layer of a stack unpacked (or committed) once, in
//! overlay form, at `<root>/snapshots/sha256-<chain id hex>/layer`, so it can
//! be an overlayfs lower (or a native-snapshotter lower) of any later step.
//!
//! The directory of a snapshot key appears atomically: it is filled under a
//! temporary key and renamed into place, so an existing directory is a
//! complete one and a crash leaves only a `tmp-` directory (garbage for
//! `prune`). Two processes that want the same layer take the same file lock
//! (the store's per-key lock); the second finds the directory made by the
//! first. Keyed by chain ID, as containerd does, so images sharing a base
//! share its directories.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use cache::digest::Digest;
use cache::layer::{OwnershipMode, UnpackOptions, WhiteoutMode, unpack};
use cache::reference::Reference;
use runtime::{remove_tree_in_userns, run_in_userns};

use super::Engine;
use super::stack::{LayerStack, StackLayer};

/// The directory name under `<root>/snapshots/` for the layer whose stack
/// has chain ID `chain_id`: what a cache entry lists in
/// `CacheRefs::snapshots` to keep it from `prune`.
pub fn snapshot_key(chain_id: &Digest) -> String {
    format!("{}-{}", chain_id.algorithm(), chain_id.hex())
}

/// A snapshot key no other process or thread uses, for work in progress.
pub(crate) fn temp_key(what: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "tmp-{what}-{}-{}-{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// The process id a temporary key was made by, if it is one.
fn temp_key_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix("tmp-")?;
    let mut parts = rest.split('-');
    let _what = parts.next()?;
    parts.next()?.parse().ok()
}

/// Whether process `pid` exists (a zombie or a process of another user
/// counts: only ESRCH means gone).
fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

impl Engine {
    /// Removes the temporary snapshot directories (`tmp-…`) of processes
    /// that no longer exist: what a killed build left half-made. Another
    /// live process's work is never touched. Best effort: a directory that
    /// cannot be removed now is tried again by the next build.
    pub(crate) fn clean_stale_temp(&self) -> usize {
        let Ok(list) = fs::read_dir(self.store.snapshots_dir()) else {
            return 0;
        };
        let mut removed = 0;
        for item in list.flatten() {
            let name = item.file_name();
            let Some(pid) = name.to_str().and_then(temp_key_pid) else {
                continue;
            };
            if pid_alive(pid) {
                continue;
            }
            if remove_tree_in_userns(self.sandbox.mapping(), &item.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// The snapshot directory of a chain ID and its `layer` subdirectory.
    pub(crate) fn layer_dir_of(&self, chain_id: &Digest) -> (PathBuf, PathBuf) {
        let dir = self.store.snapshots_dir().join(snapshot_key(chain_id));
        let layer = dir.join("layer");
        (dir, layer)
    }

    /// The layer directories of `stack`, **topmost first** (overlayfs'
    /// order, what `Snapshotter::prepare` takes), unpacking any that are
    /// missing (and pulling their blobs from their origin if needed).
    pub fn lowers(&self, stack: &LayerStack) -> anyhow::Result<Vec<PathBuf>> {
        let mut out = Vec::with_capacity(stack.len());
        for layer in stack.layers().iter().rev() {
            out.push(self.ensure_layer_dir(layer)?);
        }
        Ok(out)
    }

    /// Makes sure `layer` is unpacked in overlay form and returns its
    /// directory.
    pub(crate) fn ensure_layer_dir(&self, layer: &StackLayer) -> anyhow::Result<PathBuf> {
        let (dir, layer_dir) = self.layer_dir_of(&layer.chain_id);
        if layer_dir.is_dir() {
            return Ok(layer_dir);
        }
        let key = snapshot_key(&layer.chain_id);
        let _lock = self
            .store
            .lock_key(&format!("snapshot {key}"))
            .context("locking a snapshot directory")?;
        if layer_dir.is_dir() {
            return Ok(layer_dir);
        }
        self.ensure_blob(layer)?;
        let tmp = self.store.snapshots_dir().join(temp_key("unpack"));
        let tmp_layer = tmp.join("layer");
        let blob = self.store.blobs().path(&layer.descriptor.digest);
        let expected = layer.diff_id.clone();
        let res = run_in_userns(self.sandbox.mapping(), || {
            unpack_into(&blob, &tmp_layer, &expected)
        })
        .map_err(anyhow::Error::from)
        .and_then(|()| self.publish(&tmp, &dir));
        if let Err(e) = res {
            let _ = remove_tree_in_userns(self.sandbox.mapping(), &tmp);
            return Err(e.context(format!(
                "unpacking layer {} (diff_id {})",
                layer.descriptor.digest, layer.diff_id
            )));
        }
        Ok(layer_dir)
    }

    /// Moves a finished snapshot directory `tmp` to its final name `dir`.
    /// If another process got there first, ours is removed and theirs used:
    /// both hold the same content (same chain ID).
    pub(crate) fn publish(&self, tmp: &Path, dir: &Path) -> anyhow::Result<()> {
        match fs::rename(tmp, dir) {
            Ok(()) => Ok(()),
            Err(_) if dir.join("layer").is_dir() => {
                remove_tree_in_userns(self.sandbox.mapping(), tmp)
                    .with_context(|| format!("removing {}", tmp.display()))?;
                Ok(())
            }
            Err(e) => {
                Err(e).with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))
            }
        }
    }

    /// Puts a layer's blob in the store, pulling it from its origin.
    pub(crate) fn ensure_blob(&self, layer: &StackLayer) -> anyhow::Result<()> {
        let digest = &layer.descriptor.digest;
        if self.store.blobs().has(digest) {
            return Ok(());
        }
        let origin = layer.origin.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "layer {digest} is not in the store at {} and has no image to fetch it from",
                self.store.root().display()
            )
        })?;
        let reference = Reference::parse(origin)
            .with_context(|| format!("the origin {origin:?} of layer {digest}"))?;
        cache::transport::registry::fetch_blob(
            self.registry()?,
            &self.store,
            &reference,
            &layer.descriptor,
        )
        .with_context(|| format!("fetching layer {digest} of {origin}"))?;
        self.tag_complete_bases()
    }
}

/// In the user namespace: unpack `blob` into the new directory `dest` in
/// overlay form with real ownership, and check its diff ID.
fn unpack_into(blob: &Path, dest: &Path, expected: &Digest) -> Result<(), String> {
    if let Some(parent) = dest.parent() {
        fs::create_dir(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    fs::create_dir(dest).map_err(|e| format!("creating {}: {e}", dest.display()))?;
    let file = fs::File::open(blob).map_err(|e| format!("opening {}: {e}", blob.display()))?;
    let opts = UnpackOptions {
        whiteouts: WhiteoutMode::Overlay,
        ownership: OwnershipMode::Chown,
    };
    let stats = unpack(std::io::BufReader::new(file), dest, &opts).map_err(|e| e.to_string())?;
    if &stats.diff_id != expected {
        return Err(format!(
            "the layer's content hashes to {}, not to the diff_id {expected} the image lists",
            stats.diff_id
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_keys_carry_the_pid_that_made_them() {
        let k = temp_key("unpack");
        assert_eq!(temp_key_pid(&k), Some(std::process::id() as i32));
        assert_ne!(k, temp_key("unpack"), "unique within a process");
        assert_eq!(temp_key_pid("sha256-abc"), None);
        assert!(pid_alive(std::process::id() as i32));
        assert!(!pid_alive(i32::MAX));
    }
}
