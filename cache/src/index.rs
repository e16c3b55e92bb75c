//! The small named records of the store: tags (image name → manifest digest)
//! under `index/tags/`, and cache entries (cache key → value bytes + the blobs
//! and snapshots the value needs) under `index/cache/`. Origin records
//! (absent blob → where to fetch it) follow the same rules in
//! [`crate::origin`].
//!
//! Each record is one JSON file named by the sha256 of its name, replaced
//! atomically, so concurrent writers never corrupt each other (the last one
//! wins) and a kill leaves either the old record or the new one. One file per
//! record also means readers never need a lock.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result, invalid};
use crate::reference::Reference;

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(crate) fn record_name(name: &str) -> String {
    format!("{}.json", Digest::of(name.as_bytes()).hex())
}

pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).ctx("read", path),
    }
}

/// Removes a record file; `false` if there was none. `what` names it in
/// the error.
pub(crate) fn remove_optional(path: &Path, what: &'static str) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).ctx(what, path),
    }
}

pub(crate) fn list_json(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).ctx("read", dir),
    };
    for entry in entries {
        let p = entry.ctx("read", dir)?.path();
        if p.extension().is_some_and(|e| e == "json") {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// One tag: a full image name and the manifest (or index) it points to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecord {
    /// The normalized reference, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    pub manifest: Digest,
    /// When the tag was last set (seconds since the epoch).
    pub updated: i64,
}

impl TagRecord {
    /// The name as a reference.
    pub fn reference(&self) -> Result<Reference> {
        Ok(Reference::parse(&self.name)?)
    }
}

/// Tags: `index/tags/<sha256(name)>.json`.
#[derive(Debug, Clone)]
pub struct TagIndex {
    dir: PathBuf,
    scratch: PathBuf,
}

impl TagIndex {
    pub(crate) fn new(dir: PathBuf, scratch: PathBuf) -> Result<Self> {
        fs::create_dir_all(&dir).ctx("create directory", &dir)?;
        Ok(TagIndex { dir, scratch })
    }

    fn key(reference: &Reference) -> Result<String> {
        if reference.tag().is_none() {
            return Err(invalid(format!(
                "{reference} has no tag; a name in the store needs one (for example {}:latest)",
                reference.name()
            )));
        }
        Ok(reference.without_digest().to_string())
    }

    /// Points `reference`'s name:tag at `manifest` (replacing any old value).
    pub fn set(&self, reference: &Reference, manifest: &Digest) -> Result<()> {
        let name = Self::key(reference)?;
        let rec = TagRecord {
            name: name.clone(),
            manifest: manifest.clone(),
            updated: now_unix(),
        };
        let bytes = serde_json::to_vec(&rec).map_err(|e| invalid(e.to_string()))?;
        write_atomic(&self.scratch, &self.dir.join(record_name(&name)), &bytes)
    }

    /// The manifest digest `reference`'s name:tag points to.
    pub fn get(&self, reference: &Reference) -> Result<Option<Digest>> {
        let name = Self::key(reference)?;
        let path = self.dir.join(record_name(&name));
        let Some(bytes) = read_optional(&path)? else {
            return Ok(None);
        };
        let rec: TagRecord = serde_json::from_slice(&bytes).map_err(|e| {
            invalid(format!(
                "tag record {} is damaged ({e}); remove it with `strata rmi {name}`",
                path.display()
            ))
        })?;
        Ok(Some(rec.manifest))
    }

    /// Removes a tag; returns whether it existed.
    pub fn remove(&self, reference: &Reference) -> Result<bool> {
        let name = Self::key(reference)?;
        remove_optional(&self.dir.join(record_name(&name)), "remove tag")
    }

    /// Every tag, sorted by name. Unreadable records are reported as errors
    /// rather than skipped, so a damaged store is noticed.
    pub fn list(&self) -> Result<Vec<TagRecord>> {
        let mut out = Vec::new();
        for p in list_json(&self.dir)? {
            let Some(bytes) = read_optional(&p)? else {
                continue;
            };
            let rec: TagRecord = serde_json::from_slice(&bytes).map_err(|e| {
                invalid(format!(
                    "tag record {} is damaged: {e}; delete the file",
                    p.display()
                ))
            })?;
            out.push(rec);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// What a cache entry keeps alive in the store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRefs {
    /// Blobs (layers, configs, manifests: a manifest keeps its config and
    /// layers alive too).
    #[serde(default)]
    pub blobs: Vec<Digest>,
    /// Snapshot directory names under `<root>/snapshots/`.
    #[serde(default)]
    pub snapshots: Vec<String>,
}

/// A stored cache entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheEntry {
    pub key: String,
    pub value: Vec<u8>,
    pub refs: CacheRefs,
    /// Last written or read (seconds since the epoch); `prune
    /// --keep-storage` drops the least recently used first.
    pub last_used: i64,
    /// Size of the record file.
    pub record_size: u64,
    path: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct CacheRecord {
    key: String,
    value: String,
    #[serde(default)]
    refs: CacheRefs,
}

/// Cache entries: `index/cache/<sha256(key)>.json`.
#[derive(Debug, Clone)]
pub struct CacheIndex {
    dir: PathBuf,
    scratch: PathBuf,
}

impl CacheIndex {
    pub(crate) fn new(dir: PathBuf, scratch: PathBuf) -> Result<Self> {
        fs::create_dir_all(&dir).ctx("create directory", &dir)?;
        Ok(CacheIndex { dir, scratch })
    }

    /// Stores `value` under `key` atomically, with the store objects it needs.
    pub fn put(&self, key: &str, value: &[u8], refs: &CacheRefs) -> Result<()> {
        for s in &refs.snapshots {
            if s.is_empty() || s.contains('/') || s == "." || s == ".." {
                return Err(invalid(format!(
                    "cache entry {key:?}: snapshot reference {s:?} is not a plain directory name"
                )));
            }
        }
        let rec = CacheRecord {
            key: key.to_string(),
            value: base64::engine::general_purpose::STANDARD.encode(value),
            refs: refs.clone(),
        };
        let bytes = serde_json::to_vec(&rec).map_err(|e| invalid(e.to_string()))?;
        write_atomic(&self.scratch, &self.dir.join(record_name(key)), &bytes)
    }

    /// The value stored under `key`. Marks the entry as recently used.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.dir.join(record_name(key));
        let Some(entry) = self.read(&path)? else {
            return Ok(None);
        };
        if entry.key != key {
            return Ok(None);
        }
        // Best effort: the LRU order is a hint, a read-only store still works.
        if let Ok(f) = fs::File::options().append(true).open(&path) {
            let _ = f.set_modified(SystemTime::now());
        }
        Ok(Some(entry.value))
    }

    /// Removes the entry under `key`; returns whether it existed.
    pub fn remove(&self, key: &str) -> Result<bool> {
        remove_optional(&self.dir.join(record_name(key)), "remove cache entry")
    }

    /// Every entry, least recently used first.
    pub fn list(&self) -> Result<Vec<CacheEntry>> {
        let mut out = Vec::new();
        for p in list_json(&self.dir)? {
            if let Some(e) = self.read(&p)? {
                out.push(e);
            }
        }
        out.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.key.cmp(&b.key)));
        Ok(out)
    }

    /// Removes an entry returned by [`CacheIndex::list`].
    pub fn remove_entry(&self, entry: &CacheEntry) -> Result<()> {
        match fs::remove_file(&entry.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx("remove cache entry", &entry.path),
        }
    }

    fn read(&self, path: &Path) -> Result<Option<CacheEntry>> {
        let Some(bytes) = read_optional(path)? else {
            return Ok(None);
        };
        let damaged = |why: String| {
            Error::Invalid(format!(
                "cache entry {} is damaged ({why}); `strata prune --all` removes it",
                path.display()
            ))
        };
        let rec: CacheRecord =
            serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
        let value = base64::engine::general_purpose::STANDARD
            .decode(rec.value.as_bytes())
            .map_err(|e| damaged(e.to_string()))?;
        let meta = fs::metadata(path).ctx("stat", path)?;
        let last_used = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        Ok(Some(CacheEntry {
            key: rec.key,
            value,
            refs: rec.refs,
            last_used,
            record_size: meta.len(),
            path: path.to_path_buf(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(t: &Path) -> (PathBuf, PathBuf) {
        let s = t.join("scratch");
        fs::create_dir_all(&s).expect("mkdir");
        (t.join("index"), s)
    }

    #[test]
    fn tags_set_get_list_remove() {
        let t = tempfile::tempdir().expect("tempdir");
        let (dir, scratch) = dirs(t.path());
        let tags = TagIndex::new(dir.join("tags"), scratch).expect("tags");
        let r = Reference::parse("busybox").expect("ref");
        let d1 = Digest::of(b"1");
        let d2 = Digest::of(b"2");
        assert_eq!(tags.get(&r).expect("get"), None);
        tags.set(&r, &d1).expect("set");
        // The same name spelled differently is the same tag.
        let same = Reference::parse("docker.io/library/busybox:latest").expect("ref");
        assert_eq!(tags.get(&same).expect("get"), Some(d1));
        tags.set(&same, &d2).expect("set");
        assert_eq!(tags.get(&r).expect("get"), Some(d2.clone()));
        tags.set(&Reference::parse("a/b:c").expect("ref"), &d2)
            .expect("set");
        let names: Vec<String> = tags
            .list()
            .expect("list")
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(
            names,
            ["docker.io/a/b:c", "docker.io/library/busybox:latest"]
        );
        assert!(tags.remove(&r).expect("rm"));
        assert!(!tags.remove(&r).expect("rm"));
        assert_eq!(tags.get(&r).expect("get"), None);
        let by_digest = Reference::parse(&format!("x@{}", Digest::of(b"x"))).expect("ref");
        assert!(tags.set(&by_digest, &Digest::of(b"x")).is_err());
    }

    #[test]
    fn cache_entries_round_trip_with_refs() {
        let t = tempfile::tempdir().expect("tempdir");
        let (dir, scratch) = dirs(t.path());
        let c = CacheIndex::new(dir.join("cache"), scratch).expect("cache");
        assert_eq!(c.get("k").expect("get"), None);
        let refs = CacheRefs {
            blobs: vec![Digest::of(b"layer")],
            snapshots: vec!["snap1".into()],
        };
        c.put("k", b"\x00binary\xff", &refs).expect("put");
        assert_eq!(c.get("k").expect("get"), Some(b"\x00binary\xff".to_vec()));
        c.put("k", b"v2", &CacheRefs::default()).expect("put");
        assert_eq!(c.get("k").expect("get"), Some(b"v2".to_vec()));
        c.put("other", b"o", &refs).expect("put");
        let all = c.list().expect("list");
        assert_eq!(all.len(), 2);
        let other = all.iter().find(|e| e.key == "other").expect("entry");
        assert_eq!(other.refs, refs);
        assert!(c.remove("k").expect("rm"));
        assert_eq!(c.get("k").expect("get"), None);
        let bad = CacheRefs {
            blobs: vec![],
            snapshots: vec!["../x".into()],
        };
        assert!(c.put("k", b"v", &bad).is_err());
    }
}
