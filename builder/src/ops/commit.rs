//! Committing a step: a directory becomes the layer.
//!
//! What a step made — a RUN's committed upper directory, or the files of a
//! COPY/ADD/WORKDIR written into a fresh directory ([`FileLayer`]) — is
//! moved, never copied, to `<root>/snapshots/layer-<diff_id hex>`, where
//! later steps stack on it as they do on unpacked base layers. Its diff_id
//! is the SHA-256 of the tar the directory makes, streamed through the
//! hasher with no temp file and no compression ([`seal`]). A file layer's
//! diff_id is known before it is written (`super::predict`): when the
//! store has that layer already nothing is written, and a new one is not
//! read back when the write applied exactly what was predicted.
//!
//! That tar is the layer's blob: digest = diff_id, an uncompressed media
//! type, its size recorded. It is never stored. The store keeps an origin
//! record naming the directory (`cache::origin`), and an output that needs
//! the bytes streams them from the directory ([`DirLayers`]) — byte for
//! byte the same every time, because `write_dir` walks in sorted order
//! with fixed options ([`dir_tar_options`]) and reads owners inside the
//! user namespace, where they are the container's ids — and checks them
//! against the digest on the way. Compressed forms are made only by the
//! outputs that need them, once each (`crate::output::encode`).
//!
//! With `SOURCE_DATE_EPOCH` every mtime later than it is clamped in the
//! directory itself before hashing, so the directory, its tar and the
//! image are the same in every store.
//!
//! Layer directories are read and written where the store's files are
//! ours (`Sandbox::as_owner`): in a user-namespace child, where files of
//! subordinate ids are ours, or in this process in chroot isolation (real
//! root); with no sandbox at all in this process, owners then kept in the
//! `user.rootlesscontainers` xattr.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use anyhow::{Context as _, anyhow};
use cache::digest::Digest;
use cache::image::Descriptor;
use cache::layer::{Entry, OwnerSource, UnpackOptions, WhiteoutMode, WriteOptions};
use cache::store::Store;
use runtime::sandbox::userns::PipeCodec;

use super::Layer;
use super::archive::ArchiveAdd;
use super::dest::DirMeta;
use super::exec::{Executor, TMP_SEQ};
use super::predict::Sources;

/// How a layer directory is written as a tar: overlay whiteouts, owners
/// as the user namespace (or the xattr records) show them, nothing
/// compressed, no clamping (the directory is clamped itself). Every tar of
/// a layer directory is written with exactly these.
pub fn dir_tar_options() -> WriteOptions {
    WriteOptions {
        compression: cache::layer::Compression::None,
        flavor: cache::layer::MediaFlavor::Docker,
        source_date_epoch: None,
        zstd_workers: 1,
        owners: OwnerSource::Xattr,
        overlay_whiteouts: true,
    }
}

/// The media type of a layer kept as a directory: a plain tar.
fn dir_media_type() -> &'static str {
    cache::layer::media_type(
        cache::layer::Compression::None,
        cache::layer::MediaFlavor::Docker,
    )
}

/// The files of a COPY, ADD or WORKDIR, to be written as a layer
/// directory.
#[derive(Debug, Default)]
pub struct FileLayer {
    /// Files, directories and links, with their final metadata.
    pub entries: Vec<Entry>,
    /// ADD's local archives, streamed into their directories.
    pub archives: Vec<ArchiveAdd>,
    /// The existing directories of the image on the way to the
    /// destination: the layer holds them as parents, with the image's
    /// metadata.
    pub parents: Vec<DirMeta>,
}

impl FileLayer {
    fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.archives.is_empty()
    }

    /// Writes everything into `dir` (in the layer namespace). Returns
    /// whether every piece of metadata was applied as the entries say (no
    /// xattr, owner or device node left out; see
    /// [`super::predict`]), so that the directory makes the tar the entries
    /// make.
    pub(super) fn write(self, dir: &Path) -> anyhow::Result<bool> {
        let opts = UnpackOptions {
            whiteouts: WhiteoutMode::Overlay,
            ..Default::default()
        };
        let named: std::collections::HashSet<PathBuf> = self
            .entries
            .iter()
            .filter_map(|e| cache::layer::clean_path(&e.path).ok().flatten())
            .collect();
        let stats =
            cache::layer::unpack_entries(self.entries, dir, &opts).context("writing the layer")?;
        let mut faithful =
            stats.xattrs_skipped == 0 && stats.ownership_lost == 0 && stats.placeholders == 0;
        for a in &self.archives {
            a.unpack_into(dir, &opts)?;
        }
        for p in &self.parents {
            if !named.contains(Path::new(&p.path)) {
                faithful &= set_dir_meta(&dir.join(&p.path), p)?;
            }
        }
        Ok(faithful && !super::predict::has_default_acl(dir))
    }

    /// Gives the parents a layer written elsewhere holds (`COPY --from`)
    /// the image's metadata. Its entries name no existing directory of the
    /// image's path to the destination, so every one is implicit.
    pub fn fix_parents(&self, dir: &Path) -> anyhow::Result<()> {
        for p in &self.parents {
            set_dir_meta(&dir.join(&p.path), p)?;
        }
        Ok(())
    }
}

/// Gives an implicit parent of a file layer the image's metadata (if the
/// layer has it at all). Returns whether the owner was applied too.
fn set_dir_meta(path: &Path, m: &DirMeta) -> anyhow::Result<bool> {
    use std::os::unix::fs::PermissionsExt as _;
    if !path.is_dir() {
        return Ok(true);
    }
    // Ids outside the namespace's mapping stay as they are (EINVAL).
    let owned = std::os::unix::fs::lchown(path, Some(m.uid), Some(m.gid)).is_ok();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(m.mode))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    let t = filetime::FileTime::from_unix_time(m.mtime, 0);
    filetime::set_symlink_file_times(path, t, t)
        .with_context(|| format!("setting the time of {}", path.display()))?;
    Ok(owned)
}

/// Clamps every mtime in `dir` later than `epoch` to it, children before
/// their directory (setting a child's time leaves its parent's alone).
fn clamp_mtimes(dir: &Path, epoch: i64) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    let t = filetime::FileTime::from_unix_time(epoch, 0);
    for item in walkdir::WalkDir::new(dir).min_depth(1).contents_first(true) {
        let e = item.map_err(|e| format!("walking {}: {e}", dir.display()))?;
        let md = e
            .metadata()
            .map_err(|err| format!("reading {}: {err}", e.path().display()))?;
        if md.mtime() > epoch {
            filetime::set_symlink_file_times(e.path(), t, t)
                .map_err(|err| format!("clamping the time of {}: {err}", e.path().display()))?;
        }
    }
    Ok(())
}

/// Clamps (with an epoch) and hashes a layer directory: its diff_id and
/// tar size. Runs in the layer namespace.
pub(super) fn seal(dir: &Path, epoch: Option<i64>) -> Result<(Digest, u64), String> {
    if let Some(e) = epoch {
        clamp_mtimes(dir, e)?;
    }
    let d = cache::layer::write_dir(dir, &dir_tar_options(), std::io::sink())
        .map_err(|e| format!("reading the layer {}: {e}", dir.display()))?;
    Ok((d.diff_id, d.size))
}

/// Moves a sealed directory to `snapshots/layer-<hex>`; if that exists (the
/// same layer made before, or by another build), drops this one.
fn adopt(dir: &Path, snapshots: &Path, diff_id: &Digest) -> Result<(), String> {
    let dest = snapshots.join(format!("layer-{}", diff_id.hex()));
    if dest.is_dir() {
        return runtime::sandbox::userns::remove_tree(dir).map_err(|e| e.to_string());
    }
    match std::fs::rename(dir, &dest) {
        Ok(()) => Ok(()),
        Err(_) if dest.is_dir() => {
            runtime::sandbox::userns::remove_tree(dir).map_err(|e| e.to_string())
        }
        Err(e) => Err(format!(
            "moving {} to {}: {e}",
            dir.display(),
            dest.display()
        )),
    }
}

/// The layer a layer-namespace child committed (`"<diff_id> <size>"`),
/// recorded in the store.
fn committed(store: &Store, out: &str) -> anyhow::Result<Layer> {
    let (d, s) = out
        .split_once(' ')
        .ok_or_else(|| anyhow!("internal: bad commit result {out:?}"))?;
    let diff_id: Digest = d.parse().map_err(|e| anyhow!("internal: {e}"))?;
    let size: u64 = s.parse().map_err(|e| anyhow!("internal: {e}"))?;
    layer_from(store, diff_id, size)
}

/// The layer a sealed directory is, recorded in the store so that images
/// may name it.
fn layer_from(store: &Store, diff_id: Digest, size: u64) -> anyhow::Result<Layer> {
    let desc = Descriptor::new(dir_media_type(), diff_id.clone(), size);
    let layer = Layer {
        desc,
        diff_id,
        origin: None,
    };
    record(store, &layer)?;
    Ok(layer)
}

/// Makes sure the store's record of a layer kept as a directory exists.
pub fn record(store: &Store, layer: &Layer) -> anyhow::Result<()> {
    store
        .record_layer_dir(&layer.desc, &super::source::layer_dir_name(layer))
        .with_context(|| format!("recording layer {}", layer.diff_id))
}

/// Whether `layer` is one kept as a directory (no blob; its tar is made
/// from the directory on demand).
/// The store's record decides, not the layer's origin: a layer of a local
/// image built here (`FROM` its tag) names that tag as its origin.
pub fn is_dir_layer(store: &Store, layer: &Layer) -> bool {
    layer.desc.digest == layer.diff_id && store.layer_dir_of(&layer.desc.digest).is_some()
}

impl Executor<'_> {
    /// Runs `f` where layer directories are read and written: in a
    /// user-namespace child when the host has user namespaces, else here.
    pub(super) fn in_layer_ns<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        T: PipeCodec,
        F: FnOnce() -> Result<T, String>,
    {
        match self.get() {
            Ok((sandbox, _)) => sandbox.as_owner(f).map_err(|e| anyhow!("{e}")),
            Err(_) => f().map_err(|e| anyhow!("{e}")),
        }
    }

    /// Makes `dir` (a finished step's directory on the store's filesystem)
    /// a layer: clamped, hashed, moved into place and recorded.
    pub fn commit_dir(&self, dir: PathBuf, epoch: Option<i64>) -> anyhow::Result<Layer> {
        let store = self.store();
        let snapshots = store.snapshots_dir();
        let out = self
            .in_layer_ns(move || -> Result<String, String> {
                let (diff_id, size) = seal(&dir, epoch)?;
                adopt(&dir, &snapshots, &diff_id)?;
                Ok(format!("{diff_id} {size}"))
            })
            .context("committing the layer")?;
        committed(store, &out)
    }

    /// A fresh directory to write a layer into, beside the layer
    /// directories (a crash leaves it for `strata prune`).
    pub(super) fn new_layer_dir(&self) -> anyhow::Result<PathBuf> {
        let dir = self.store().snapshots_dir().join(format!(
            ".tmp-{}-{}-files",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// Removes a directory that did not become a layer.
    pub(super) fn discard(&self, dir: &Path) {
        let d = dir.to_path_buf();
        let _ = self.in_layer_ns(move || {
            runtime::sandbox::userns::remove_tree(&d).map_err(|e| e.to_string())
        });
    }

    /// The layer of a COPY, ADD or WORKDIR; none when it holds nothing.
    pub fn commit_files(
        &self,
        mut files: FileLayer,
        epoch: Option<i64>,
    ) -> anyhow::Result<Option<Layer>> {
        let store = self.store();
        if files.is_empty() {
            return Ok(None);
        }
        if let Some(e) = epoch {
            files.clamp_mtimes(e);
        }
        let sources = Sources::of(&files);
        let predicted = files.predict();
        // The same files made before (a --no-cache rebuild, a COPY under a
        // changed step): the layer is there, nothing is written.
        if let Some((diff_id, size)) = &predicted
            && store.layer_dir_of(diff_id).is_some()
        {
            return layer_from(store, diff_id.clone(), *size).map(Some);
        }
        let trusted = predicted.filter(|_| files.only_user_xattrs());
        let dir = self.new_layer_dir()?;
        let snapshots = store.snapshots_dir();
        let d = dir.clone();
        let out = self.in_layer_ns(move || -> Result<String, String> {
            let faithful = files.write(&d).map_err(|e| format!("{e:#}"))?;
            // The prediction stands when the write applied all of it and
            // no source changed since it was read; else hash what is there.
            let (diff_id, size) = match trusted {
                Some(p) if faithful && sources.unchanged() => p,
                _ => seal(&d, epoch)?,
            };
            adopt(&d, &snapshots, &diff_id)?;
            Ok(format!("{diff_id} {size}"))
        });
        match out {
            Ok(out) => committed(store, &out).map(Some),
            Err(e) => {
                self.discard(&dir);
                Err(e.context("committing the layer"))
            }
        }
    }

    /// The tar of a layer kept as a directory, streamed from a layer-
    /// namespace child (or a thread, without user namespaces): exactly
    /// `layer.desc.size` bytes, which the reader checks against the
    /// diff_id at the end.
    pub fn open_dir_layer(&self, layer: &Layer) -> anyhow::Result<MadeLayer> {
        let dir = self
            .store()
            .layer_dir_of(&layer.desc.digest)
            .ok_or_else(|| anyhow!("layer {} has no directory in the store", layer.diff_id))?;
        let (reader, writer) = std::io::pipe().context("a pipe for the layer")?;
        let isolation = self.get().ok().map(|(s, _)| s.isolation().clone());
        let write = move || -> Result<(), String> {
            cache::layer::write_dir(&dir, &dir_tar_options(), writer)
                .map(|_| ())
                .map_err(|e| format!("reading the layer {}: {e}", dir.display()))
        };
        let thread = std::thread::Builder::new()
            .name("layer-tar".into())
            .spawn(move || match isolation {
                Some(i) => i.as_owner(write).map_err(|e| e.to_string()),
                None => write(),
            })
            .context("starting the layer writer")?;
        Ok(MadeLayer {
            reader: Some(reader.take(layer.desc.size)),
            hasher: cache::digest::Sha256::new(),
            expected: layer.diff_id.clone(),
            thread: Some(thread),
        })
    }
}

/// A layer's tar being made from its directory.
pub struct MadeLayer {
    reader: Option<std::io::Take<std::io::PipeReader>>,
    hasher: cache::digest::Sha256,
    expected: Digest,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl MadeLayer {
    /// Ends the stream: the writer's error if it failed.
    fn finish(&mut self) -> std::io::Result<()> {
        drop(self.reader.take());
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(Err(e))) => Err(std::io::Error::other(e)),
            Some(Err(_)) => Err(std::io::Error::other("the layer writer panicked")),
            _ => Ok(()),
        }
    }
}

impl Read for MadeLayer {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(r) = self.reader.as_mut() else {
            return Ok(0);
        };
        let n = r.read(buf)?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
            return Ok(n);
        }
        let short = r.limit() > 0;
        self.finish()?;
        let actual = std::mem::replace(&mut self.hasher, cache::digest::Sha256::new()).finalize();
        if short || actual != self.expected {
            return Err(std::io::Error::other(format!(
                "the layer directory no longer makes layer {} (it gives {actual}); run `strata prune` and build again",
                self.expected
            )));
        }
        Ok(0)
    }
}

impl Drop for MadeLayer {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// The layers of a store kept as directories, for the writers of image
/// archives (`cache::transport::LayerSource`).
pub struct DirLayers<'a> {
    pub store: &'a Store,
    pub executor: &'a Executor<'a>,
}

impl cache::transport::LayerSource for DirLayers<'_> {
    fn makes(&self, digest: &Digest) -> bool {
        self.store.layer_dir_of(digest).is_some()
    }

    fn open(&self, digest: &Digest) -> std::io::Result<Box<dyn Read + '_>> {
        let rec = self
            .store
            .origins()
            .get(digest)
            .map_err(std::io::Error::other)?
            .ok_or_else(|| std::io::Error::other(format!("no record of layer {digest}")))?;
        let layer = Layer {
            desc: Descriptor::new(dir_media_type(), digest.clone(), rec.size),
            diff_id: digest.clone(),
            origin: None,
        };
        let r = self
            .executor
            .open_dir_layer(&layer)
            .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        Ok(Box::new(r))
    }
}
