//! The store: one root directory holding blobs, snapshots, the tag and cache
//! indexes and scratch space, shared safely by several strata processes.
//!
//! ```text
//! <root>/blobs/sha256/<hex>   content-addressed, immutable
//! <root>/snapshots/<id>/      unpacked layers / upper dirs (runtime's)
//! <root>/index/tags/          image names → manifest digests
//! <root>/index/cache/         cache keys → values + what they keep alive
//! <root>/index/origins/       absent blobs → where to fetch them
//! <root>/tmp/<process>/       in-flight work; garbage once its owner is gone
//! <root>/locks/               flock files
//! ```
//!
//! Every process holds a shared lock on `locks/store.lock` while it has the
//! store open; garbage collection takes it exclusively, so it never deletes a
//! blob some live process has written but not yet tagged.
//!
//! An image may name layers the store does not hold, as long as an origin
//! record says where to fetch each one ([`Store::record_origin`]): a fully
//! cached build records its image without downloading base layers nobody
//! needs.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cas::BlobStore;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::image::{Descriptor, Image, ManifestFormat, write_image};
use crate::index::{CacheIndex, CacheRefs, TagIndex};
use crate::lock::{self, LockGuard, ScratchDir};
use crate::origin::OriginIndex;
use crate::platform::Platform;
use crate::reference::Reference;

/// The store's root: created `0700` (as podman's rootless storage is); an
/// existing one that other users can enter is refused. A RUN step may leave
/// setuid or setgid files in a layer (the image needs them), and inside a
/// root others can enter, another local user could run them with the
/// builder's ids. Everything strata keeps (blobs, snapshots, layer trees,
/// scratch) lives below this root, so its mode guards all of it. An
/// existing *empty* directory is taken over and made private: nothing in it
/// can have been reached yet.
fn private_root(root: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let private = |md: &fs::Metadata| md.permissions().mode() & 0o011 == 0;
    match fs::metadata(root) {
        Ok(md) if md.is_dir() => {
            if private(&md) {
                return Ok(());
            }
            let mode = md.permissions().mode() & 0o7777;
            let empty = fs::read_dir(root)
                .ctx("read store directory", root)?
                .next()
                .is_none();
            if !empty {
                // Another strata opening the same empty directory may have
                // just made it private and started filling it (the mode is
                // changed before anything is put in): look again.
                if fs::metadata(root).is_ok_and(|m| private(&m)) {
                    return Ok(());
                }
                return Err(Error::Unsafe(format!(
                    "the store at {} can be entered by other users (mode {mode:04o}): a setuid file a build leaves there would be theirs to run; make it private with `chmod 700 {}` (or pass another --root)",
                    root.display(),
                    root.display()
                )));
            }
        }
        Ok(_) => {
            return Err(Error::Invalid(format!(
                "the store root {} is not a directory; pass a directory with --root",
                root.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).ctx("create store directory", parent)?;
            }
            match fs::DirBuilder::new().mode(0o700).create(root) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).ctx("create store directory", root),
            }
        }
        Err(e) => return Err(e).ctx("read store directory", root),
    }
    fs::set_permissions(root, fs::Permissions::from_mode(0o700)).ctx("make private", root)
}

/// An open store.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    blobs: BlobStore,
    tags: TagIndex,
    cache: CacheIndex,
    origins: OriginIndex,
    scratch: Arc<ScratchDir>,
    _store_lock: LockGuard,
}

impl Store {
    /// Opens (creating if needed) the store at `root`, alongside any other
    /// processes using it, and removes scratch left by dead processes.
    pub fn open(root: impl AsRef<Path>) -> Result<Store> {
        let root = root.as_ref();
        Self::create_layout(root)?;
        let guard = lock::lock_shared(&root.join("locks/store.lock"))?;
        Self::finish_open(root, guard)
    }

    /// Opens the store only if no other process has it open, and keeps
    /// others out until dropped. Garbage collection needs this.
    pub fn open_exclusive(root: impl AsRef<Path>) -> Result<Store> {
        let root = root.as_ref();
        Self::create_layout(root)?;
        let guard = lock::try_lock_exclusive(&root.join("locks/store.lock"))?.ok_or_else(|| {
            Error::Busy(format!(
                "another strata process is using the store at {}; run this again when it has finished",
                root.display()
            ))
        })?;
        Self::finish_open(root, guard)
    }

    fn create_layout(root: &Path) -> Result<()> {
        private_root(root)?;
        for sub in [
            "blobs/sha256",
            "snapshots",
            "index/tags",
            "index/cache",
            "index/origins",
            "tmp",
            "locks",
        ] {
            let p = root.join(sub);
            fs::create_dir_all(&p).ctx("create store directory", &p)?;
        }
        spread_subdirs(&root.join("snapshots"));
        Ok(())
    }

    fn finish_open(root: &Path, guard: LockGuard) -> Result<Store> {
        let (tmp, locks) = (root.join("tmp"), root.join("locks"));
        lock::clean_stale_scratch(&tmp, &locks)?;
        let scratch = Arc::new(ScratchDir::create(&tmp, &locks)?);
        let sp = scratch.path().to_path_buf();
        Ok(Store {
            root: root.to_path_buf(),
            blobs: BlobStore::new(root.join("blobs/sha256"), scratch.clone())?,
            tags: TagIndex::new(root.join("index/tags"), sp.clone())?,
            cache: CacheIndex::new(root.join("index/cache"), sp.clone())?,
            origins: OriginIndex::new(root.join("index/origins"), sp)?,
            scratch,
            _store_lock: guard,
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The blob store.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// The tags.
    pub fn tags(&self) -> &TagIndex {
        &self.tags
    }

    /// The cache-key index.
    pub fn cache(&self) -> &CacheIndex {
        &self.cache
    }

    /// Where absent blobs can be fetched from.
    pub fn origins(&self) -> &OriginIndex {
        &self.origins
    }

    /// Remembers that `reference`'s repository serves the blob `desc`, so an
    /// image may name it without the store holding it. Nothing is recorded
    /// for a blob the store already has: there is nothing to fetch.
    pub fn record_origin(&self, desc: &Descriptor, reference: &Reference) -> Result<()> {
        if self.blobs.has(&desc.digest) {
            return Ok(());
        }
        self.origins.add(desc, reference)
    }

    /// Remembers that the uncompressed layer `desc` (digest = diff_id) is
    /// the tar of `snapshots/<snapshot>`, so an image may name it while
    /// only the directory is kept (see [`crate::origin`]).
    pub fn record_layer_dir(&self, desc: &Descriptor, snapshot: &str) -> Result<()> {
        self.origins.add_snapshot(desc, snapshot)
    }

    /// The directory under `snapshots/` a layer blob is made from, when
    /// the blob is not stored and its record names one that exists.
    pub fn layer_dir_of(&self, digest: &Digest) -> Option<PathBuf> {
        if self.blobs.has(digest) {
            return None;
        }
        let name = self.origins.get(digest).ok()??.snapshot?;
        let dir = self.snapshots_dir().join(name);
        dir.is_dir().then_some(dir)
    }

    /// This process's scratch directory (same filesystem as the store,
    /// removed when the store is dropped or after a crash).
    pub fn scratch_dir(&self) -> &Path {
        self.scratch.path()
    }

    /// Where snapshots live. Name them by something a cache entry can
    /// reference ([`CacheRefs::snapshots`]) or `prune` removes them.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// Takes the lock for one cache key, waiting for another process that
    /// holds it: the first process computes the value, later ones find it
    /// with [`Store::cache_get`] once they get the lock.
    pub fn lock_key(&self, key: &str) -> Result<LockGuard> {
        let name = format!("key-{}.lock", Digest::of(key.as_bytes()).hex());
        lock::lock_exclusive(&self.root.join("locks").join(name))
    }

    /// The value stored under a cache key.
    pub fn cache_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.cache.get(key)
    }

    /// Stores a cache value that keeps nothing else alive.
    pub fn cache_put(&self, key: &str, value: &[u8]) -> Result<()> {
        self.cache.put(key, value, &CacheRefs::default())
    }

    /// Stores a cache value and the blobs and snapshots it needs, which
    /// `prune` then keeps as long as the entry exists. Referenced blobs must
    /// already be in the store.
    pub fn cache_put_with_refs(&self, key: &str, value: &[u8], refs: &CacheRefs) -> Result<()> {
        for d in &refs.blobs {
            if !self.blobs.has(d) {
                return Err(Error::BlobNotFound {
                    digest: d.clone(),
                    root: self.root.clone(),
                });
            }
        }
        self.cache.put(key, value, refs)
    }

    /// Points `reference` (a name with a tag) at a manifest in the store.
    pub fn tag_image(&self, reference: &Reference, manifest: &Digest) -> Result<()> {
        if !self.blobs.has(manifest) {
            return Err(Error::BlobNotFound {
                digest: manifest.clone(),
                root: self.root.clone(),
            });
        }
        self.tags.set(reference, manifest)
    }

    /// The manifest (or index) digest a reference names in this store: its
    /// digest if it has one and the blob is here, else its tag.
    pub fn resolve_digest(&self, reference: &Reference) -> Result<Option<Digest>> {
        if let Some(d) = reference.digest() {
            return Ok(self.blobs.has(d).then(|| d.clone()));
        }
        self.tags.get(reference)
    }

    /// The local image for `reference` on linux/amd64 (the default
    /// platform), or `None` if the store has no such name.
    pub fn resolve_image(&self, reference: &Reference) -> Result<Option<Image>> {
        self.resolve_image_for(reference, &Platform::default())
    }

    /// The local image for `reference` on `platform`.
    pub fn resolve_image_for(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<Option<Image>> {
        match self.resolve_digest(reference)? {
            None => Ok(None),
            Some(d) => Image::load(&self.blobs, &d, platform).map(Some),
        }
    }

    /// Loads the image at a manifest or index digest.
    pub fn image(&self, digest: &Digest, platform: &Platform) -> Result<Image> {
        Image::load(&self.blobs, digest, platform)
    }

    /// Writes a new image (config bytes + layers, each in the store or
    /// with an origin record) and returns it; tag it with
    /// [`Store::tag_image`]. A layer that is neither is refused: nothing
    /// could ever produce its bytes.
    pub fn write_image(
        &self,
        config_json: &[u8],
        layers: &[Descriptor],
        format: ManifestFormat,
    ) -> Result<Image> {
        write_image(
            &self.blobs,
            Some(&self.origins),
            config_json,
            layers,
            format,
        )
    }
}

/// Asks the filesystem to place each new subdirectory of `dir` as it
/// places top-level ones (ext4's `FS_TOPDIR_FL`, `chattr +T`): spread over
/// the block groups instead of packed beside `dir`. Layer directories are
/// made and deleted in bulk; without a journal, ext4 skips every inode
/// deleted in the last seconds when it allocates one, one by one, so
/// unpacking thousands of files right where a prune (or a reset of the
/// store) just freed thousands took 3–4 times as long as elsewhere. Best
/// effort: other filesystems have no such flag, and nothing depends on it.
pub fn spread_subdirs(dir: &Path) {
    use rustix::fs::IFlags;
    let Ok(f) = fs::File::open(dir) else {
        return;
    };
    if let Ok(flags) = rustix::fs::ioctl_getflags(&f)
        && !flags.contains(IFlags::TOPDIR)
    {
        let _ = rustix::fs::ioctl_setflags(&f, flags | IFlags::TOPDIR);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::media_type;
    use std::os::unix::fs::PermissionsExt;

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).expect("stat").permissions().mode() & 0o7777
    }

    /// Stores opened at once on one empty 0755 directory: one makes it
    /// private and fills it, the others must not mistake that for a store
    /// others can enter (seen in CI before the second look).
    #[test]
    fn simultaneous_first_opens_of_an_empty_directory_all_succeed() {
        for round in 0..100 {
            let t = tempfile::tempdir().expect("tempdir");
            fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
            let go = std::sync::Barrier::new(6);
            std::thread::scope(|s| {
                for _ in 0..6 {
                    s.spawn(|| {
                        go.wait();
                        Store::open(t.path()).unwrap_or_else(|e| panic!("round {round}: {e}"));
                    });
                }
            });
            assert_eq!(mode_of(t.path()), 0o700);
        }
    }

    #[test]
    fn the_root_is_private_and_a_shared_one_refused() {
        let t = tempfile::tempdir().expect("tempdir");
        let fresh = t.path().join("a/b/root");
        drop(Store::open(&fresh).expect("open"));
        assert_eq!(mode_of(&fresh), 0o700);
        // An empty directory someone made for us is taken over.
        let empty = t.path().join("empty");
        fs::create_dir(&empty).expect("mkdir");
        fs::set_permissions(&empty, fs::Permissions::from_mode(0o755)).expect("chmod");
        drop(Store::open(&empty).expect("open empty"));
        assert_eq!(mode_of(&empty), 0o700);
        // A store others can enter is refused, and left as it is.
        fs::set_permissions(&fresh, fs::Permissions::from_mode(0o755)).expect("chmod");
        let err = Store::open(&fresh).expect_err("a 0755 store must be refused");
        let msg = err.to_string();
        assert!(matches!(err, Error::Unsafe(_)), "{msg}");
        assert!(
            msg.contains(&format!("chmod 700 {}", fresh.display())) && msg.contains("0755"),
            "{msg}"
        );
        assert_eq!(mode_of(&fresh), 0o755);
        fs::set_permissions(&fresh, fs::Permissions::from_mode(0o710)).expect("chmod");
        assert!(Store::open(&fresh).is_err(), "group search is sharing too");
        fs::set_permissions(&fresh, fs::Permissions::from_mode(0o700)).expect("chmod");
        drop(Store::open(&fresh).expect("open after chmod 700"));
    }

    fn config_for(diff_ids: &[Digest]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Healthcheck": {"Test": ["CMD", "true"]}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .expect("json")
    }

    #[test]
    fn layout_is_created_and_images_resolve_by_tag_and_digest() {
        let t = tempfile::tempdir().expect("tempdir");
        let s = Store::open(t.path()).expect("open");
        for sub in ["blobs/sha256", "snapshots", "index", "tmp", "locks"] {
            assert!(t.path().join(sub).is_dir(), "{sub}");
        }
        let layer = b"pretend this is a tar";
        let ld = s.blobs().put_bytes(layer, None).expect("put");
        let desc = Descriptor::new(media_type::OCI_LAYER, ld.clone(), layer.len() as u64);
        let cfg = config_for(std::slice::from_ref(&ld));
        let img = s
            .write_image(&cfg, std::slice::from_ref(&desc), ManifestFormat::Docker)
            .expect("write");
        assert_eq!(img.id(), &Digest::of(&cfg));
        assert_eq!(img.manifest.layers[0].media_type, media_type::DOCKER_LAYER);
        // Same inputs, same manifest digest.
        let again = s
            .write_image(&cfg, std::slice::from_ref(&desc), ManifestFormat::Docker)
            .expect("write");
        assert_eq!(again.manifest_digest, img.manifest_digest);

        let r = Reference::parse("example.com/app:v1").expect("ref");
        assert!(s.resolve_image(&r).expect("resolve").is_none());
        s.tag_image(&r, &img.manifest_digest).expect("tag");
        let found = s.resolve_image(&r).expect("resolve").expect("present");
        assert_eq!(found.manifest_digest, img.manifest_digest);
        assert_eq!(found.config.raw(), &cfg[..]);
        let by_digest = r.with_digest(img.manifest_digest.clone());
        assert!(s.resolve_image(&by_digest).expect("resolve").is_some());

        // The config must match the layers.
        assert!(
            s.write_image(&config_for(&[]), &[desc], ManifestFormat::Oci)
                .is_err()
        );
        // Tagging something that is not there is refused.
        assert!(s.tag_image(&r, &Digest::of(b"absent")).is_err());
    }

    #[test]
    fn absent_layers_need_an_origin_record_of_the_same_size() {
        let t = tempfile::tempdir().expect("tempdir");
        let s = Store::open(t.path()).expect("open");
        let present = s.blobs().put_bytes(b"here", None).expect("put");
        let absent = Digest::of(b"not here");
        let descs = [
            Descriptor::new(media_type::OCI_LAYER, present.clone(), 4),
            Descriptor::new(media_type::OCI_LAYER, absent.clone(), 8),
        ];
        let cfg = config_for(&[present, absent.clone()]);
        let err = s
            .write_image(&cfg, &descs, ManifestFormat::Docker)
            .expect_err("no origin");
        assert!(err.to_string().contains("nothing records"), "{err}");

        let origin = Reference::parse("reg.example/base:1").expect("ref");
        s.record_origin(&descs[1], &origin).expect("origin");
        let img = s
            .write_image(&cfg, &descs, ManifestFormat::Docker)
            .expect("write");
        assert_eq!(
            img.size(),
            img.manifest_raw.len() as u64 + img.manifest.config.size + 4 + 8
        );
        assert!(!s.blobs().has(&absent));
        // A descriptor that disagrees with the record is refused.
        let wrong = [
            descs[0].clone(),
            Descriptor::new(media_type::OCI_LAYER, absent.clone(), 9),
        ];
        assert!(s.write_image(&cfg, &wrong, ManifestFormat::Docker).is_err());
        // A blob that is here gets no record.
        s.record_origin(&descs[0], &origin).expect("origin");
        assert_eq!(s.origins().list().expect("list"), [absent]);
    }

    #[test]
    fn exclusive_open_waits_for_nobody_and_reports_busy() {
        let t = tempfile::tempdir().expect("tempdir");
        let a = Store::open(t.path()).expect("open");
        let err = Store::open_exclusive(t.path()).unwrap_err();
        assert!(matches!(err, Error::Busy(_)), "{err}");
        drop(a);
        let ex = Store::open_exclusive(t.path()).expect("exclusive");
        drop(ex);
    }

    #[test]
    fn cache_refs_must_exist() {
        let t = tempfile::tempdir().expect("tempdir");
        let s = Store::open(t.path()).expect("open");
        let refs = CacheRefs {
            blobs: vec![Digest::of(b"missing")],
            snapshots: vec![],
        };
        assert!(s.cache_put_with_refs("k", b"v", &refs).is_err());
        s.cache_put("k", b"v").expect("put");
        assert_eq!(s.cache_get("k").expect("get"), Some(b"v".to_vec()));
    }
}
