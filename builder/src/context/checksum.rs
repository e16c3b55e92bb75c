//! Content checksums of selected context files, and the persistent metadata
//! index that lets a warm rebuild stat files instead of reading them.
//!
//! A file's digest is blake3 of its bytes. The index maps a context path to
//! the stat fields it had when hashed (device, inode, size, mtime, ctime,
//! mode) and that digest; when all of them still agree the stored digest is
//! used. ctime is in the key because a `touch -m` back to an old mtime still
//! moves ctime. The index lives at `<root>/index/context/<blake3 of the
//! context's absolute path>.json` and is replaced atomically (temp file +
//! rename), so a killed build leaves either the old or the new index.
//!
//! The checksum of a whole selection (what a COPY's cache key includes)
//! covers, per entry in destination order: destination path, kind, the mode
//! the image gets, the owner after `--chown`, xattrs, link target and
//! content digest — never mtime, and never the host's umask bits (see
//! [`super::select::Entry::key_mode`]).

use crate::lock;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::select::{EntryKind, ExtraMeta, Selection, StatKey};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    stat: StatKey,
    /// Empty for directories and symlinks.
    digest: String,
    /// The xattrs and recorded owner read when the entry had `stat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    meta: Option<ExtraMeta>,
}

type Records = BTreeMap<String, Record>;

/// The per-context index of file digests.
#[derive(Debug)]
pub struct ChecksumIndex {
    file: Option<PathBuf>,
    /// Filled by `loader` on first use.
    records: std::sync::OnceLock<Mutex<Records>>,
    /// The index file being read and parsed in the background (tens of
    /// milliseconds for a 20,000-file context), while the build walks the
    /// context, which does not need it.
    loader: Mutex<Option<std::thread::JoinHandle<Records>>>,
    dirty: Mutex<bool>,
    /// Files actually read (for tests and `-v`: a warm build reads none).
    reads: std::sync::atomic::AtomicUsize,
}

impl ChecksumIndex {
    /// An index that lives only in memory (no store yet, or tests).
    pub fn in_memory() -> ChecksumIndex {
        ChecksumIndex {
            file: None,
            records: std::sync::OnceLock::from(Mutex::new(BTreeMap::new())),
            loader: Mutex::new(None),
            dirty: Mutex::new(false),
            reads: Default::default(),
        }
    }

    /// Opens the index for `context` under the store `root`. A missing or
    /// unreadable index (for example one cut short by a crash before the
    /// rename, which cannot happen, or by a format change) is an empty index:
    /// it only costs re-reading the files.
    pub fn open(root: &Path, context: &Path) -> anyhow::Result<ChecksumIndex> {
        let abs = std::fs::canonicalize(context).with_context(|| {
            format!("cannot resolve the context directory {}", context.display())
        })?;
        let key = blake3::hash(abs.as_os_str().as_encoded_bytes()).to_hex();
        let file = root.join("index/context").join(format!("{key}.json"));
        let path = file.clone();
        let read = move || -> Records {
            std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default()
        };
        let (records, loader) = match std::thread::Builder::new()
            .name("context-index".into())
            .spawn(read.clone())
        {
            Ok(handle) => (std::sync::OnceLock::new(), Some(handle)),
            Err(_) => (std::sync::OnceLock::from(Mutex::new(read())), None),
        };
        Ok(ChecksumIndex {
            file: Some(file),
            records,
            loader: Mutex::new(loader),
            dirty: Mutex::new(false),
            reads: Default::default(),
        })
    }

    /// The records, waiting for the background read the first time.
    fn records(&self) -> std::sync::MutexGuard<'_, Records> {
        lock(self.records.get_or_init(|| {
            let handle = lock(&self.loader).take();
            Mutex::new(handle.and_then(|h| h.join().ok()).unwrap_or_default())
        }))
    }

    /// How many files were read (not served from the index) so far.
    pub fn files_read(&self) -> usize {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The blake3 digest of the regular file `rel` (context-relative) at
    /// `abs`, from the index when its stat is unchanged.
    pub fn file_digest(&self, rel: &str, abs: &Path, stat: &StatKey) -> anyhow::Result<String> {
        if let Some(r) = self.records().get(rel)
            && r.stat == *stat
        {
            return Ok(r.digest.clone());
        }
        // O_NOFOLLOW: `abs` was resolved inside the context; a link put
        // there since is refused rather than read on the host.
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(abs)
            .with_context(|| format!("cannot read {}", abs.display()))?;
        let mut h = blake3::Hasher::new();
        h.update_reader(&mut f)
            .with_context(|| format!("cannot read {}", abs.display()))?;
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let digest = h.finalize().to_hex().to_string();
        // Re-stat: a file that changed while being read must not be recorded
        // under the old stat.
        let after = std::fs::symlink_metadata(abs).map(|m| StatKey::of(&m)).ok();
        if after.as_ref() == Some(stat) {
            self.records().insert(
                rel.to_string(),
                Record {
                    stat: *stat,
                    digest: digest.clone(),
                    meta: None,
                },
            );
            *lock(&self.dirty) = true;
        }
        Ok(digest)
    }

    /// The xattrs and recorded owner of the context entry `rel` when it
    /// still has the stat they were read with.
    pub fn known_meta(&self, rel: &str, stat: &StatKey) -> Option<ExtraMeta> {
        let records = self.records();
        let r = records.get(rel)?;
        if r.stat == *stat {
            r.meta.clone()
        } else {
            None
        }
    }

    /// Remembers each entry's xattrs and recorded owner under its stat, for
    /// [`ChecksumIndex::known_meta`]: on the file's record (when its digest
    /// was recorded under the same stat), or on a record of its own for a
    /// directory or symlink.
    fn remember_meta(&self, sel: &Selection) {
        let mut records = self.records();
        let mut changed = false;
        for e in &sel.entries {
            let meta = ExtraMeta {
                xattrs: e.xattrs.clone(),
                recorded_owner: e.owner_recorded.then_some(e.owner),
            };
            match records.get_mut(&e.rel) {
                Some(r) if r.stat == e.stat => {
                    changed |= r.meta.as_ref() != Some(&meta);
                    r.meta = Some(meta);
                }
                _ if e.kind != EntryKind::File => {
                    records.insert(
                        e.rel.clone(),
                        Record {
                            stat: e.stat,
                            digest: String::new(),
                            meta: Some(meta),
                        },
                    );
                    changed = true;
                }
                // A file that changed while it was hashed: no record.
                _ => {}
            }
        }
        drop(records);
        if changed {
            *lock(&self.dirty) = true;
        }
    }

    /// Writes the index back if anything changed: temp file, fsync, rename.
    pub fn save(&self) -> anyhow::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if !*lock(&self.dirty) {
            return Ok(());
        }
        let dir = file.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        // Buffered: serde_json writes every token on its own, and an index
        // of 20,000 files would be as many write calls.
        let mut out = std::io::BufWriter::with_capacity(256 * 1024, &mut tmp);
        serde_json::to_writer(&mut out, &*self.records())?;
        out.flush()?;
        drop(out);
        tmp.as_file().sync_all()?;
        tmp.persist(file)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {}", file.display(), e.error))?;
        *lock(&self.dirty) = false;
        Ok(())
    }
}

/// How COPY/ADD rewrites ownership and mode, part of the checksum because it
/// is part of the resulting files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--chown` resolved to numbers (default 0:0, as Docker does for the
    /// context).
    pub uid: u32,
    pub gid: u32,
    /// `--chmod`, octal or symbolic.
    pub chmod: Option<super::chmod::Chmod>,
    /// Whether `--chown` was given (a stage copy otherwise keeps owners).
    pub explicit_owner: bool,
}

impl Overrides {
    /// The mode an entry gets in the image.
    pub fn mode_for(&self, kind: &EntryKind, image_mode: u32) -> u32 {
        match (kind, &self.chmod) {
            (EntryKind::Symlink(_), _) => 0o777,
            (_, Some(c)) => c.apply(image_mode, matches!(kind, EntryKind::Dir)),
            (_, None) => image_mode,
        }
    }
}

/// Per-entry digests of a selection plus the checksum over all of it.
#[derive(Debug, Clone)]
pub struct SelectionDigest {
    /// `sha256:`-free blake3 hex of the whole selection.
    pub checksum: String,
    /// Content digest per entry (empty for directories and symlinks), in
    /// selection order.
    pub contents: Vec<String>,
}

/// Checksums a selection. Files are hashed in parallel; unchanged files come
/// from `index`.
pub fn checksum_selection(
    context: &Path,
    sel: &Selection,
    ov: &Overrides,
    index: &ChecksumIndex,
) -> anyhow::Result<SelectionDigest> {
    let contents: Vec<String> = sel
        .entries
        .par_iter()
        .map(|e| match e.kind {
            EntryKind::File => index.file_digest(&e.rel, &context.join(&e.rel), &e.stat),
            _ => Ok(String::new()),
        })
        .collect::<anyhow::Result<_>>()?;
    index.remember_meta(sel);
    let mut h = blake3::Hasher::new();
    for (e, c) in sel.entries.iter().zip(&contents) {
        let (kind, extra) = match &e.kind {
            EntryKind::File => ("f", c.as_str()),
            EntryKind::Dir => ("d", ""),
            EntryKind::Symlink(t) => ("l", t.as_str()),
            EntryKind::Fifo => ("p", ""),
        };
        let mode = ov.mode_for(&e.kind, e.key_mode());
        // Length-prefixed fields: no two different entries hash alike.
        for field in [e.dest.as_str(), kind, extra] {
            h.update(&(field.len() as u64).to_le_bytes());
            h.update(field.as_bytes());
        }
        h.update(&mode.to_le_bytes());
        h.update(&ov.uid.to_le_bytes());
        h.update(&ov.gid.to_le_bytes());
        h.update(&(e.xattrs.len() as u64).to_le_bytes());
        for (k, v) in &e.xattrs {
            h.update(&(k.len() as u64).to_le_bytes());
            h.update(k.as_bytes());
            h.update(&(v.len() as u64).to_le_bytes());
            h.update(v);
        }
    }
    Ok(SelectionDigest {
        checksum: h.finalize().to_hex().to_string(),
        contents,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::context::dockerignore::Matcher;
    use crate::context::select::{CopySpec, select};

    fn sum(ctx: &Path, index: &ChecksumIndex, ov: &Overrides) -> String {
        let sel = select(
            ctx,
            &Matcher::default(),
            &CopySpec::new(vec![".".into()], "/app"),
        )
        .unwrap();
        checksum_selection(ctx, &sel, ov, index).unwrap().checksum
    }

    #[test]
    fn content_changes_the_checksum_mtime_does_not() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), "one").unwrap();
        let idx = ChecksumIndex::in_memory();
        let s1 = sum(d.path(), &idx, &Overrides::default());
        let f = std::fs::File::options()
            .write(true)
            .open(d.path().join("a"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        drop(f);
        assert_eq!(s1, sum(d.path(), &idx, &Overrides::default()));
        std::fs::write(d.path().join("a"), "two").unwrap();
        assert_ne!(s1, sum(d.path(), &idx, &Overrides::default()));
    }

    #[test]
    fn umask_bits_do_not_count_but_exec_and_chown_do() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        std::fs::write(&a, "x").unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o644)).unwrap();
        let idx = ChecksumIndex::in_memory();
        let base = sum(d.path(), &idx, &Overrides::default());
        std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o664)).unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o775)).unwrap();
        assert_eq!(base, sum(d.path(), &idx, &Overrides::default()));
        std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_ne!(base, sum(d.path(), &idx, &Overrides::default()));
        std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o644)).unwrap();
        let chowned = Overrides {
            uid: 1000,
            gid: 1000,
            chmod: None,
            explicit_owner: true,
        };
        assert_ne!(base, sum(d.path(), &idx, &chowned));
    }

    #[test]
    fn symlink_target_counts() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("x", d.path().join("l")).unwrap();
        let idx = ChecksumIndex::in_memory();
        let s1 = sum(d.path(), &idx, &Overrides::default());
        std::fs::remove_file(d.path().join("l")).unwrap();
        std::os::unix::fs::symlink("y", d.path().join("l")).unwrap();
        assert_ne!(s1, sum(d.path(), &idx, &Overrides::default()));
    }

    #[test]
    fn persistent_index_serves_a_warm_rebuild_without_reading() {
        let root = tempfile::tempdir().unwrap();
        let ctx = tempfile::tempdir().unwrap();
        for i in 0..20 {
            std::fs::write(ctx.path().join(format!("f{i}")), format!("{i}")).unwrap();
        }
        let idx = ChecksumIndex::open(root.path(), ctx.path()).unwrap();
        let cold = sum(ctx.path(), &idx, &Overrides::default());
        assert_eq!(idx.files_read(), 20);
        idx.save().unwrap();
        let warm_idx = ChecksumIndex::open(root.path(), ctx.path()).unwrap();
        assert_eq!(cold, sum(ctx.path(), &warm_idx, &Overrides::default()));
        assert_eq!(warm_idx.files_read(), 0);
        std::fs::write(ctx.path().join("f3"), "changed").unwrap();
        assert_ne!(cold, sum(ctx.path(), &warm_idx, &Overrides::default()));
        assert_eq!(warm_idx.files_read(), 1);
    }

    /// A rebuild takes xattrs from the index for every entry whose stat is
    /// unchanged (files, directories and symlinks alike) and reads them
    /// again where an xattr was set since (which moves ctime).
    #[test]
    fn xattrs_are_read_again_only_where_the_stat_changed() {
        use crate::context::select::select_known;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let root = tempfile::tempdir().unwrap();
        let ctx = tempfile::tempdir().unwrap();
        std::fs::create_dir(ctx.path().join("d")).unwrap();
        for i in 0..5 {
            std::fs::write(ctx.path().join(format!("d/f{i}")), format!("{i}")).unwrap();
        }
        std::os::unix::fs::symlink("f0", ctx.path().join("d/l")).unwrap();
        let f1 = ctx.path().join("d/f1");
        xattr::set(&f1, "user.a", b"1").unwrap();
        let spec = CopySpec::new(vec![".".into()], "/app");
        let pass = |known: &AtomicUsize| {
            let idx = ChecksumIndex::open(root.path(), ctx.path()).unwrap();
            let sel = select_known(ctx.path(), &Matcher::default(), &spec, &|r, st| {
                let m = idx.known_meta(r, st);
                if m.is_some() {
                    known.fetch_add(1, Ordering::Relaxed);
                }
                m
            })
            .unwrap();
            let sum = checksum_selection(ctx.path(), &sel, &Overrides::default(), &idx).unwrap();
            idx.save().unwrap();
            let x = sel
                .entries
                .iter()
                .find(|e| e.rel == "d/f1")
                .unwrap()
                .xattrs
                .clone();
            (sel.entries.len(), sum.checksum, x)
        };
        let cold = AtomicUsize::new(0);
        let (n, first, x) = pass(&cold);
        assert_eq!(cold.load(Ordering::Relaxed), 0);
        assert_eq!(x, [("user.a".to_string(), b"1".to_vec())]);
        let warm = AtomicUsize::new(0);
        let (_, again, x) = pass(&warm);
        assert_eq!(
            warm.load(Ordering::Relaxed),
            n,
            "every entry from the index"
        );
        assert_eq!((again.as_str(), x.len()), (first.as_str(), 1));
        xattr::set(&f1, "user.a", b"2").unwrap();
        let touched = AtomicUsize::new(0);
        let (_, changed, x) = pass(&touched);
        assert_eq!(touched.load(Ordering::Relaxed), n - 1);
        assert_eq!(x, [("user.a".to_string(), b"2".to_vec())]);
        assert_ne!(changed, first);
    }
}
