//! Origin records: where a blob the store does not hold can be fetched from.
//!
//! A build whose steps all hit the cache never needs the bytes of its base
//! image's layers, yet the image it records names them. Rather than
//! downloading them just to write the manifest, the store remembers, per
//! absent blob, its size and the image references (registry repositories)
//! that serve it. Whatever needs the bytes later (save, export, push, a
//! `FROM` of the new image) fetches them on demand through
//! [`crate::transport::registry::ensure_blob`].
//!
//! A layer built here is absent too, by design: its canonical form is its
//! directory `snapshots/layer-<diff_id hex>`, and its blob — the
//! uncompressed tar, whose digest is the diff_id — is produced from that
//! directory whenever an output needs it. Its record names the directory
//! ([`OriginRecord::snapshot`]) instead of a registry; marking keeps the
//! directory alive for as long as an image names the layer.
//!
//! Records live in `index/origins/<blob hex>.json`, one file per blob,
//! replaced atomically like tags and cache entries. A record is a hint, not
//! a promise: the registry may have lost the blob, which is reported when the
//! bytes are needed. Garbage collection drops records no live manifest needs
//! and records whose blob has since arrived.

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::digest::Digest;
use crate::error::{IoContext, Result, invalid};
use crate::image::Descriptor;
use crate::index::{list_json, read_optional, remove_optional};
use crate::reference::Reference;

/// How many references one record keeps: enough to survive one registry
/// losing the blob, few enough that a popular base layer's record stays
/// small. The newest come first.
const MAX_REFERENCES: usize = 4;

/// One absent blob and where it can be fetched from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginRecord {
    pub digest: Digest,
    /// The size its descriptors state, so an image can be written (and its
    /// size shown) without the bytes.
    pub size: u64,
    /// Normalized image references whose repository holds the blob, newest
    /// first.
    pub references: Vec<String>,
    /// For a layer built here: the directory under `snapshots/` whose tar
    /// is the blob (made on demand, never stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

impl OriginRecord {
    /// The references that parse (a damaged entry is skipped, not fatal:
    /// another may still work).
    pub fn parsed_references(&self) -> Vec<Reference> {
        self.references
            .iter()
            .filter_map(|r| Reference::parse(r).ok())
            .collect()
    }
}

/// Origin records: `index/origins/<blob hex>.json`.
#[derive(Debug, Clone)]
pub struct OriginIndex {
    dir: PathBuf,
    scratch: PathBuf,
}

impl OriginIndex {
    pub(crate) fn new(dir: PathBuf, scratch: PathBuf) -> Result<Self> {
        fs::create_dir_all(&dir).ctx("create directory", &dir)?;
        Ok(OriginIndex { dir, scratch })
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}.json", digest.hex()))
    }

    /// Records that `reference`'s repository serves the blob `desc`, in
    /// front of the references already recorded for it. Two processes
    /// adding at once may lose one of the two references (the last write
    /// wins); either is enough to fetch the blob.
    pub fn add(&self, desc: &Descriptor, reference: &Reference) -> Result<()> {
        let name = reference.to_string();
        let mut rec = match self.get(&desc.digest)? {
            Some(r) if r.size == desc.size => r,
            Some(r) => {
                return Err(invalid(format!(
                    "blob {} is recorded as {} bytes but {name} describes it as {}",
                    desc.digest, r.size, desc.size
                )));
            }
            None => OriginRecord {
                digest: desc.digest.clone(),
                size: desc.size,
                references: Vec::new(),
                snapshot: None,
            },
        };
        if rec.references.first() == Some(&name) {
            return Ok(());
        }
        rec.references.retain(|r| r != &name);
        rec.references.insert(0, name);
        rec.references.truncate(MAX_REFERENCES);
        let bytes = serde_json::to_vec(&rec).map_err(|e| invalid(e.to_string()))?;
        write_atomic(&self.scratch, &self.path(&desc.digest), &bytes)
    }

    /// Records that the uncompressed layer blob `desc` is the tar of the
    /// directory `snapshots/<snapshot>` (a layer built here). Idempotent;
    /// a record with another size is refused as for [`OriginIndex::add`].
    pub fn add_snapshot(&self, desc: &Descriptor, snapshot: &str) -> Result<()> {
        let mut rec = match self.get(&desc.digest)? {
            Some(r) if r.size != desc.size => {
                return Err(invalid(format!(
                    "blob {} is recorded as {} bytes but the layer directory {snapshot} makes {}",
                    desc.digest, r.size, desc.size
                )));
            }
            Some(r) if r.snapshot.as_deref() == Some(snapshot) => return Ok(()),
            Some(r) => r,
            None => OriginRecord {
                digest: desc.digest.clone(),
                size: desc.size,
                references: Vec::new(),
                snapshot: None,
            },
        };
        rec.snapshot = Some(snapshot.to_string());
        let bytes = serde_json::to_vec(&rec).map_err(|e| invalid(e.to_string()))?;
        write_atomic(&self.scratch, &self.path(&desc.digest), &bytes)
    }

    /// The record for `digest`, if any.
    pub fn get(&self, digest: &Digest) -> Result<Option<OriginRecord>> {
        let path = self.path(digest);
        let Some(bytes) = read_optional(&path)? else {
            return Ok(None);
        };
        let rec: OriginRecord = serde_json::from_slice(&bytes).map_err(|e| {
            invalid(format!(
                "origin record {} is damaged ({e}); delete the file",
                path.display()
            ))
        })?;
        if &rec.digest != digest {
            return Err(invalid(format!(
                "origin record {} is about {}, not {digest}; delete the file",
                path.display(),
                rec.digest
            )));
        }
        Ok(Some(rec))
    }

    /// Removes the record for `digest`; returns whether it existed.
    pub fn remove(&self, digest: &Digest) -> Result<bool> {
        remove_optional(&self.path(digest), "remove origin record")
    }

    /// The digests that have a record, sorted. Names that are not a blob
    /// digest are skipped (they are nobody's record).
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for p in list_json(&self.dir)? {
            let Some(stem) = p.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if let Ok(d) = format!("sha256:{stem}").parse::<Digest>() {
                out.push(d);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::media_type;

    fn index(t: &std::path::Path) -> OriginIndex {
        let scratch = t.join("scratch");
        fs::create_dir_all(&scratch).expect("mkdir");
        OriginIndex::new(t.join("origins"), scratch).expect("origins")
    }

    #[test]
    fn records_add_newest_first_dedup_and_remove() {
        let t = tempfile::tempdir().expect("tempdir");
        let o = index(t.path());
        let d = Digest::of(b"layer");
        let desc = Descriptor::new(media_type::OCI_LAYER, d.clone(), 5);
        assert_eq!(o.get(&d).expect("get"), None);
        let a = Reference::parse("reg.example/a:1").expect("ref");
        let b = Reference::parse("reg.example/b:2").expect("ref");
        o.add(&desc, &a).expect("add");
        o.add(&desc, &b).expect("add");
        o.add(&desc, &a).expect("add");
        let rec = o.get(&d).expect("get").expect("record");
        assert_eq!(rec.size, 5);
        assert_eq!(rec.references, ["reg.example/a:1", "reg.example/b:2"]);
        assert_eq!(rec.parsed_references(), [a.clone(), b]);
        for i in 0..10 {
            let r = Reference::parse(&format!("reg.example/n{i}:x")).expect("ref");
            o.add(&desc, &r).expect("add");
        }
        let rec = o.get(&d).expect("get").expect("record");
        assert_eq!(rec.references.len(), MAX_REFERENCES);
        assert_eq!(rec.references[0], "reg.example/n9:x");
        assert_eq!(o.list().expect("list"), std::slice::from_ref(&d));
        // A size that contradicts the record is refused.
        let wrong = Descriptor::new(media_type::OCI_LAYER, d.clone(), 6);
        assert!(o.add(&wrong, &a).is_err());
        assert!(o.remove(&d).expect("rm"));
        assert!(!o.remove(&d).expect("rm"));
        assert!(o.list().expect("list").is_empty());
    }

    #[test]
    fn a_record_under_the_wrong_name_is_damage() {
        let t = tempfile::tempdir().expect("tempdir");
        let o = index(t.path());
        let d = Digest::of(b"one");
        let other = Digest::of(b"two");
        let desc = Descriptor::new(media_type::OCI_LAYER, other.clone(), 3);
        o.add(&desc, &Reference::parse("r.example/x:1").expect("ref"))
            .expect("add");
        fs::rename(o.path(&other), o.path(&d)).expect("rename");
        assert!(o.get(&d).is_err());
    }
}
