//! Garbage collection, disk usage and integrity checks for a store.
//!
//! Liveness is computed by marking: every tag's manifest (or index) and what
//! it points to, and every cache entry's blobs and snapshots, are live;
//! anything else in `blobs/` and `snapshots/` is garbage, and so is an
//! origin record whose blob nothing live names (or that is no longer absent).
//! A live layer that is absent but has an origin record is not damage: it is
//! fetched when needed. Marking reads
//! manifests from the store itself, so a blob is kept exactly as long as
//! something that would be used again needs it.
//!
//! Prune deletes, so it runs on a store opened with
//! [`Store::open_exclusive`]: no other process can be between writing a blob
//! and tagging it while the sweep runs.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::digest::Digest;
use crate::error::{IoContext, Result};
use crate::image::{MAX_MANIFEST_SIZE, ParsedManifest};
use crate::store::Store;

/// What a live blob is used as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum BlobKind {
    /// An image index or manifest list.
    Index,
    /// A single-image manifest.
    Manifest,
    /// An image config.
    Config,
    /// A layer (or any other blob a cache entry keeps).
    Layer,
}

/// The live set of a store.
#[derive(Debug, Default)]
pub struct LiveSet {
    pub blobs: BTreeMap<Digest, BlobKind>,
    pub snapshots: BTreeSet<String>,
    /// Things referenced but missing or unreadable (not fatal for marking).
    pub problems: Vec<String>,
}

/// Marks everything tags and cache entries keep alive.
pub fn mark(store: &Store) -> Result<LiveSet> {
    let mut live = LiveSet::default();
    for tag in store.tags().list()? {
        mark_root(
            store,
            &tag.manifest,
            true,
            &format!("tag {}", tag.name),
            &mut live,
        );
    }
    for entry in store.cache().list()? {
        for d in &entry.refs.blobs {
            mark_root(
                store,
                d,
                false,
                &format!("cache entry {:?}", entry.key),
                &mut live,
            );
        }
        live.snapshots.extend(entry.refs.snapshots.iter().cloned());
    }
    Ok(live)
}

/// Marks `digest` and, if it is a manifest or index, what it points to.
/// `must_be_manifest` is set for tag targets; cache entries may reference
/// any blob, which is only parsed when it looks like JSON.
fn mark_root(
    store: &Store,
    digest: &Digest,
    must_be_manifest: bool,
    who: &str,
    live: &mut LiveSet,
) {
    let blobs = store.blobs();
    if live.blobs.contains_key(digest) {
        return;
    }
    let Ok(size) = blobs.size(digest) else {
        live.problems.push(format!(
            "{who} references {digest}, which is not in the store"
        ));
        return;
    };
    let looks_like_json = size <= MAX_MANIFEST_SIZE && {
        let mut head = [0u8; 1];
        blobs
            .open(digest)
            .and_then(|mut f| {
                io::Read::read(&mut f, &mut head).ctx("read blob", &blobs.path(digest))
            })
            .is_ok_and(|n| n == 1 && head[0] == b'{')
    };
    if !must_be_manifest && !looks_like_json {
        live.blobs.insert(digest.clone(), BlobKind::Layer);
        return;
    }
    let parsed = blobs
        .read_verified(digest, MAX_MANIFEST_SIZE)
        .and_then(|raw| ParsedManifest::parse(&raw, None, &format!("manifest {digest}")));
    match parsed {
        Err(e) => {
            // Keep it (it is referenced) and tell the user.
            live.blobs.insert(digest.clone(), BlobKind::Layer);
            if must_be_manifest {
                live.problems.push(format!("{who}: {e}"));
            }
        }
        Ok(ParsedManifest::Index(idx)) => {
            live.blobs.insert(digest.clone(), BlobKind::Index);
            for m in &idx.manifests {
                // A pull keeps only the platforms it needed: missing children
                // of an index are normal.
                if blobs.has(&m.digest) {
                    mark_root(store, &m.digest, true, who, live);
                }
            }
        }
        Ok(ParsedManifest::Image(m)) => {
            live.blobs.insert(digest.clone(), BlobKind::Manifest);
            let cfg = &m.config.digest;
            if !blobs.has(cfg) {
                live.problems.push(format!(
                    "{who}: config {cfg} of manifest {digest} is missing"
                ));
            }
            live.blobs.entry(cfg.clone()).or_insert(BlobKind::Config);
            for l in &m.layers {
                // An absent layer with an origin record is fetched on
                // demand: not damage.
                if !blobs.has(&l.digest) && l.urls.is_none() {
                    match store.origins().get(&l.digest) {
                        // A layer built here: its directory is the layer.
                        Ok(Some(rec)) if rec.snapshot.is_some() => {
                            let name = rec.snapshot.unwrap_or_default();
                            if !store.snapshots_dir().join(&name).is_dir() {
                                live.problems.push(format!(
                                    "{who}: layer {} of manifest {digest} is missing: its directory snapshots/{name} is gone; build the image again",
                                    l.digest
                                ));
                            }
                            live.snapshots.insert(name);
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => live.problems.push(format!(
                            "{who}: layer {} of manifest {digest} is missing and nothing records where to fetch it from",
                            l.digest
                        )),
                        Err(e) => live.problems.push(format!("{who}: {e}")),
                    }
                }
                live.blobs
                    .entry(l.digest.clone())
                    .or_insert(BlobKind::Layer);
            }
        }
    }
}

/// What to prune.
#[derive(Clone, Debug, Default)]
pub struct PruneOptions {
    /// Also drop every cache entry (tags stay).
    pub all: bool,
    /// Drop least-recently-used cache entries until the store holds at most
    /// this many bytes (or no cache entries are left).
    pub keep_storage: Option<u64>,
}

/// What a prune did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub cache_entries_removed: usize,
    pub blobs_removed: usize,
    pub snapshots_removed: usize,
    /// Origin records dropped: their blob is no longer named by anything
    /// live, or has since been downloaded.
    pub origins_removed: usize,
    pub bytes_freed: u64,
    /// Things that could not be removed, or referenced things that are
    /// missing. Not fatal.
    pub warnings: Vec<String>,
    /// Snapshots moved out of the way but not deleted.
    pub leftovers: Vec<Leftover>,
}

/// A snapshot prune renamed out of the way (a `.pruned-` name, never live)
/// but could not delete as the invoking user: typically files of
/// subordinate ids. The caller may remove it with more rights (the builder
/// does, inside its user namespace); left alone it is only wasted space,
/// which the next prune tries again to free.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftover {
    pub path: std::path::PathBuf,
    /// What it held, as far as the invoking user could see.
    pub bytes: u64,
    pub error: String,
}

/// Removes what nothing references. See [`PruneOptions`].
pub fn prune(store: &Store, opts: &PruneOptions) -> Result<PruneReport> {
    let mut report = PruneReport::default();
    if opts.all {
        for e in store.cache().list()? {
            store.cache().remove_entry(&e)?;
            report.cache_entries_removed += 1;
        }
    }
    sweep(store, &mut report)?;
    if let Some(limit) = opts.keep_storage {
        // Oldest first; re-sweep after each so the size reflects what is
        // really freed (entries often share layers).
        let entries = store.cache().list()?;
        for e in entries {
            if usage_bytes(store)? <= limit {
                break;
            }
            store.cache().remove_entry(&e)?;
            report.cache_entries_removed += 1;
            sweep(store, &mut report)?;
        }
    }
    report.warnings.sort();
    report.warnings.dedup();
    // --keep-storage sweeps again and meets the same leftovers.
    report.leftovers.sort_by(|a, b| a.path.cmp(&b.path));
    report.leftovers.dedup_by(|a, b| a.path == b.path);
    Ok(report)
}

fn sweep(store: &Store, report: &mut PruneReport) -> Result<()> {
    let live = mark(store)?;
    report.warnings.extend(live.problems.iter().cloned());
    for (d, size) in store.blobs().list()? {
        if !live.blobs.contains_key(&d) {
            store.blobs().delete(&d)?;
            report.blobs_removed += 1;
            report.bytes_freed += size;
        }
    }
    for d in store.origins().list()? {
        if !live.blobs.contains_key(&d) || store.blobs().has(&d) {
            store.origins().remove(&d)?;
            report.origins_removed += 1;
        }
    }
    let snaps = store.snapshots_dir();
    let mut names = Vec::new();
    for entry in fs::read_dir(&snaps).ctx("read", &snaps)? {
        let entry = entry.ctx("read", &snaps)?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    for name in names {
        if live.snapshots.contains(&name) {
            continue;
        }
        let size = tree_size(&snaps.join(&name));
        // Out of its name first: a tree that cannot be removed completely
        // (files of subordinate ids the invoking user cannot delete) must
        // not stay under the name a build would take for a complete one.
        let path = match doom(&snaps, &name) {
            Ok(p) => p,
            Err(e) => {
                report.warnings.push(format!(
                    "could not remove snapshot {}: {e}",
                    snaps.join(&name).display()
                ));
                continue;
            }
        };
        match remove_tree(&path) {
            Ok(()) => {
                report.snapshots_removed += 1;
                report.bytes_freed += size;
            }
            Err(e) => report.leftovers.push(Leftover {
                path,
                bytes: size,
                error: e.to_string(),
            }),
        }
    }
    Ok(())
}

/// Where a snapshot being removed is renamed to; such names are never
/// live, so a later prune retries what this one could not remove.
const DOOMED_PREFIX: &str = ".pruned-";

/// Renames `<snaps>/<name>` to a doomed name (unless it has one already)
/// and returns the new path.
fn doom(snaps: &Path, name: &str) -> io::Result<std::path::PathBuf> {
    let path = snaps.join(name);
    if name.starts_with(DOOMED_PREFIX) {
        return Ok(path);
    }
    let mut n = 0u32;
    loop {
        let to = snaps.join(format!("{DOOMED_PREFIX}{n}-{name}"));
        match fs::symlink_metadata(&to) {
            Ok(_) => n += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::rename(&path, &to)?;
                return Ok(to);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Removes a directory tree, first making directories writable (overlay
/// work dirs are mode 000).
fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return fs::remove_file(path);
    }
    for entry in walkdir::WalkDir::new(path).into_iter().flatten() {
        if entry.file_type().is_dir() {
            let _ = fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o700));
        }
    }
    fs::remove_dir_all(path)
}

/// Bytes of regular files under `path` (0 if unreadable).
fn tree_size(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn usage_bytes(store: &Store) -> Result<u64> {
    let blobs: u64 = store.blobs().list()?.iter().map(|(_, s)| s).sum();
    Ok(blobs + tree_size(&store.snapshots_dir()))
}

/// Count and bytes of one kind of thing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub count: u64,
    pub bytes: u64,
}

impl Usage {
    fn add(&mut self, bytes: u64) {
        self.count += 1;
        self.bytes += bytes;
    }
}

/// Store usage by kind, as `strata du` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskUsage {
    pub indexes: Usage,
    pub manifests: Usage,
    pub configs: Usage,
    pub layers: Usage,
    /// Blobs nothing references: what `prune` frees.
    pub unreferenced: Usage,
    pub snapshots: Usage,
    pub reclaimable_snapshots: Usage,
    pub cache_entries: Usage,
    pub tags: u64,
}

/// Measures the store.
pub fn disk_usage(store: &Store) -> Result<DiskUsage> {
    let live = mark(store)?;
    let mut du = DiskUsage::default();
    for (d, size) in store.blobs().list()? {
        let slot = match live.blobs.get(&d) {
            Some(BlobKind::Index) => &mut du.indexes,
            Some(BlobKind::Manifest) => &mut du.manifests,
            Some(BlobKind::Config) => &mut du.configs,
            Some(BlobKind::Layer) => &mut du.layers,
            None => &mut du.unreferenced,
        };
        slot.add(size);
    }
    let snaps = store.snapshots_dir();
    for entry in fs::read_dir(&snaps).ctx("read", &snaps)? {
        let entry = entry.ctx("read", &snaps)?;
        let size = tree_size(&entry.path());
        du.snapshots.add(size);
        if !live
            .snapshots
            .contains(&*entry.file_name().to_string_lossy())
        {
            du.reclaimable_snapshots.add(size);
        }
    }
    for e in store.cache().list()? {
        du.cache_entries.add(e.record_size);
    }
    du.tags = store.tags().list()?.len() as u64;
    Ok(du)
}

/// What `strata store verify` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub blobs_checked: u64,
    pub bytes_checked: u64,
    /// Each problem, one line each, naming the blob, tag or entry.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Whether the store is intact.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Re-hashes every blob (in parallel) and checks that every tag and cache
/// entry points to things that are present and readable.
pub fn verify(store: &Store) -> Result<VerifyReport> {
    use rayon::prelude::*;
    let blobs = store.blobs().list()?;
    let mut problems: Vec<String> = blobs
        .par_iter()
        .filter_map(|(d, _)| match store.blobs().verify(d) {
            Ok(None) => None,
            Ok(Some(actual)) => Some(format!(
                "blob {d} is corrupt: its content hashes to {actual} ({}); remove it and pull or build the image again",
                store.blobs().path(d).display()
            )),
            Err(e) => Some(format!("blob {d}: {e}")),
        })
        .collect();
    match mark(store) {
        Ok(live) => problems.extend(live.problems),
        Err(e) => problems.push(e.to_string()),
    }
    problems.sort();
    problems.dedup();
    Ok(VerifyReport {
        blobs_checked: blobs.len() as u64,
        bytes_checked: blobs.iter().map(|(_, s)| s).sum(),
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{Descriptor, ManifestFormat, media_type};
    use crate::index::CacheRefs;
    use crate::reference::Reference;

    fn image(store: &Store, layer: &[u8]) -> crate::image::Image {
        let ld = store.blobs().put_bytes(layer, None).expect("put");
        let cfg = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [ld]},
        }))
        .expect("json");
        let desc = Descriptor::new(media_type::OCI_LAYER, ld, layer.len() as u64);
        store
            .write_image(&cfg, &[desc], ManifestFormat::Oci)
            .expect("write")
    }

    #[test]
    fn prune_keeps_tagged_and_cached_removes_the_rest() {
        let t = tempfile::tempdir().expect("tempdir");
        let s = Store::open(t.path()).expect("open");
        let tagged = image(&s, b"tagged layer");
        s.tag_image(
            &Reference::parse("a:1").expect("ref"),
            &tagged.manifest_digest,
        )
        .expect("tag");
        let cached = image(&s, b"cached layer");
        s.cache_put_with_refs(
            "k",
            b"v",
            &CacheRefs {
                blobs: vec![cached.manifest_digest.clone()],
                snapshots: vec!["snap-live".into()],
            },
        )
        .expect("cache");
        let orphan = image(&s, b"orphan layer");
        fs::create_dir_all(s.snapshots_dir().join("snap-live/x")).expect("mkdir");
        fs::create_dir_all(s.snapshots_dir().join("snap-dead/work/work")).expect("mkdir");
        fs::write(s.snapshots_dir().join("snap-dead/f"), b"12345").expect("write");
        // Overlay leaves mode-000 work dirs behind.
        fs::set_permissions(
            s.snapshots_dir().join("snap-dead/work/work"),
            fs::Permissions::from_mode(0o000),
        )
        .expect("chmod");

        let du = disk_usage(&s).expect("du");
        assert_eq!(du.manifests.count, 2);
        assert_eq!(du.configs.count, 2);
        assert_eq!(du.layers.count, 2);
        assert_eq!(du.unreferenced.count, 3);
        assert_eq!(du.snapshots.count, 2);
        assert_eq!(du.reclaimable_snapshots.count, 1);
        drop(s);

        let s = Store::open_exclusive(t.path()).expect("exclusive");
        let r = prune(&s, &PruneOptions::default()).expect("prune");
        assert_eq!(r.blobs_removed, 3);
        assert_eq!(r.snapshots_removed, 1);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        for d in orphan.blob_digests() {
            assert!(!s.blobs().has(&d));
        }
        for d in tagged
            .blob_digests()
            .into_iter()
            .chain(cached.blob_digests())
        {
            assert!(s.blobs().has(&d), "{d} was removed");
        }
        assert!(s.snapshots_dir().join("snap-live").exists());

        // --all drops the cache entry and what only it kept.
        let r = prune(
            &s,
            &PruneOptions {
                all: true,
                keep_storage: None,
            },
        )
        .expect("prune");
        assert_eq!(
            (
                r.cache_entries_removed,
                r.blobs_removed,
                r.snapshots_removed
            ),
            (1, 3, 1)
        );
        assert!(s.blobs().has(&tagged.manifest_digest));
        assert!(verify(&s).expect("verify").is_clean());
    }

    #[test]
    fn dead_snapshots_leave_their_name_before_removal_and_leftovers_are_retried() {
        let t = tempfile::tempdir().expect("tempdir");
        let s = Store::open_exclusive(t.path()).expect("open");
        let snaps = s.snapshots_dir();
        // What an earlier prune renamed but could not finish removing.
        fs::create_dir_all(snaps.join(".pruned-0-layer-a/etc")).expect("mkdir");
        fs::create_dir_all(snaps.join("layer-b/usr")).expect("mkdir");
        // The doomed name is taken: the next free one is used.
        fs::create_dir_all(snaps.join("layer-c")).expect("mkdir");
        fs::create_dir_all(snaps.join(".pruned-0-layer-c")).expect("mkdir");
        let moved = doom(&snaps, "layer-c").expect("doom");
        assert_eq!(moved, snaps.join(".pruned-1-layer-c"));
        assert!(!snaps.join("layer-c").exists());
        let r = prune(&s, &PruneOptions::default()).expect("prune");
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert_eq!(r.snapshots_removed, 4);
        assert_eq!(fs::read_dir(&snaps).expect("list").count(), 0);
    }

    #[test]
    fn keep_storage_drops_oldest_cache_entries_first() {
        let t = tempfile::tempdir().expect("tempdir");
        let s = Store::open_exclusive(t.path()).expect("open");
        let big = vec![7u8; 100_000];
        let a = s.blobs().put_bytes(&big, None).expect("put");
        let b = s.blobs().put_bytes(&big[..50_000], None).expect("put");
        for (k, d) in [("old", &a), ("new", &b)] {
            s.cache_put_with_refs(
                k,
                b"",
                &CacheRefs {
                    blobs: vec![d.clone()],
                    snapshots: vec![],
                },
            )
            .expect("cache");
        }
        let old = t
            .path()
            .join("index/cache")
            .join(format!("{}.json", Digest::of(b"old").hex()));
        fs::File::options()
            .append(true)
            .open(&old)
            .and_then(|f| f.set_modified(std::time::SystemTime::UNIX_EPOCH))
            .expect("age the entry");
        let r = prune(
            &s,
            &PruneOptions {
                all: false,
                keep_storage: Some(60_000),
            },
        )
        .expect("prune");
        assert_eq!(r.cache_entries_removed, 1);
        assert!(!s.blobs().has(&a));
        assert!(s.blobs().has(&b));
        assert_eq!(s.cache_get("new").expect("get"), Some(vec![]));
    }

    #[test]
    fn absent_layers_with_origins_are_kept_and_stale_origins_dropped() {
        let t = tempfile::tempdir().expect("tempdir");
        let s = Store::open_exclusive(t.path()).expect("open");
        let layer = b"a base layer never downloaded";
        let ld = Digest::of(layer);
        let desc = Descriptor::new(media_type::OCI_LAYER, ld.clone(), layer.len() as u64);
        let origin = Reference::parse("reg.example/base:1").expect("ref");
        s.record_origin(&desc, &origin).expect("origin");
        let cfg = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [ld]},
        }))
        .expect("json");
        let img = s
            .write_image(&cfg, std::slice::from_ref(&desc), ManifestFormat::Oci)
            .expect("write with an absent layer");
        s.tag_image(
            &Reference::parse("lazy:1").expect("ref"),
            &img.manifest_digest,
        )
        .expect("tag");
        // Records nothing live names, or of blobs that are here, are stale.
        let orphan = Descriptor::new(media_type::OCI_LAYER, Digest::of(b"orphan"), 6);
        s.record_origin(&orphan, &origin).expect("origin");
        let here = image(&s, b"present layer");
        let here_layer = here.manifest.layers[0].clone();
        s.origins().add(&here_layer, &origin).expect("origin");
        s.tag_image(
            &Reference::parse("here:1").expect("ref"),
            &here.manifest_digest,
        )
        .expect("tag");
        assert!(verify(&s).expect("verify").is_clean());

        let r = prune(&s, &PruneOptions::default()).expect("prune");
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert_eq!(r.origins_removed, 2);
        assert_eq!(s.origins().list().expect("list"), std::slice::from_ref(&ld));
        assert!(s.blobs().has(&img.manifest_digest));
        assert!(verify(&s).expect("verify").is_clean());

        // Without its record the absent layer is damage again.
        s.origins().remove(&ld).expect("rm");
        let v = verify(&s).expect("verify");
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains(&ld.to_string()) && p.contains("missing")),
            "{:?}",
            v.problems
        );
        // And once the tag is gone, so is any record of it.
        s.record_origin(&desc, &origin).expect("origin");
        s.tags()
            .remove(&Reference::parse("lazy:1").expect("ref"))
            .expect("rmi");
        let r = prune(&s, &PruneOptions::default()).expect("prune");
        assert_eq!(r.origins_removed, 1);
        assert!(s.origins().list().expect("list").is_empty());
    }

    #[test]
    fn verify_reports_corruption_and_dangling_tags() {
        let t = tempfile::tempdir().expect("tempdir");
        let s = Store::open(t.path()).expect("open");
        let img = image(&s, b"layer");
        s.tag_image(&Reference::parse("a:1").expect("ref"), &img.manifest_digest)
            .expect("tag");
        assert!(verify(&s).expect("verify").is_clean());
        let layer = &img.manifest.layers[0].digest;
        let p = s.blobs().path(layer);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod");
        fs::write(&p, b"tampered").expect("write");
        let r = verify(&s).expect("verify");
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(r.problems[0].contains(&layer.to_string()) && r.problems[0].contains("corrupt"));
        fs::remove_file(&p).expect("rm");
        let r = verify(&s).expect("verify");
        assert!(
            r.problems.iter().any(|p| p.contains("missing")),
            "{:?}",
            r.problems
        );
    }
}
