//! Reading an image tarball (docker-archive or OCI archive) in one pass.
//!
//! Tar members come in any order, and the file that says what the others are
//! (`manifest.json`, `index.json`) is often last. So every member is taken in
//! as it streams by: `blobs/sha256/<hex>` members go straight into the blob
//! store, verified against the name they carry; other large members go into
//! the blob store under the digest computed while copying (they are layers
//! of legacy archives); small members are kept in memory. Nothing is ever
//! written to a path taken from the archive, so a hostile archive cannot
//! write outside the store, and symlinks are resolved by name inside the
//! archive only.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::cas::BlobStore;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result, invalid};
use crate::layer::Decompressed;

/// Members up to this size are kept in memory; larger ones go to the store.
const SMALL: u64 = 1 << 20;
/// At most this many bytes of small members are kept in memory; the rest
/// go to the store too, so an archive of many small members (a few MB of
/// gzip can hold thousands of 1 MiB members) cannot fill the memory.
const HELD_IN_MEMORY: u64 = 16 << 20;
/// Members (files and links) an archive may have. An image archive has a
/// few per image and blob; the bound keeps the name maps small.
const MAX_MEMBERS: usize = 100_000;
/// Symlink hops followed before giving up.
const MAX_HOPS: usize = 16;

/// Where one archive member's bytes ended up.
#[derive(Clone, Debug)]
pub(crate) enum Member {
    Memory(Vec<u8>),
    Blob(Digest, u64),
}

/// The members of an image tarball, by normalized name.
#[derive(Debug, Default)]
pub(crate) struct ArchiveContents {
    files: HashMap<String, Member>,
    links: HashMap<String, String>,
    what: String,
    /// Bytes of the members kept in memory.
    held: u64,
}

/// Cleans a member name: no leading `/` or `./`, no `.` components, and no
/// `..` (which has no place in an image archive).
fn normalize(name: &str, what: &str) -> Result<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(invalid(format!(
                    "{what}: member {name:?} has a `..` component; the archive is malformed or hostile"
                )));
            }
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// Resolves a symlink `target` found at member `at`, within the archive.
fn resolve_link(at: &str, target: &str, what: &str) -> Result<String> {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        let mut p: Vec<&str> = at.split('/').collect();
        p.pop();
        p
    };
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(invalid(format!(
                        "{what}: symlink {at:?} -> {target:?} points outside the archive"
                    )));
                }
            }
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

impl ArchiveContents {
    /// Reads the tarball at `path`, storing blobs into `blobs`.
    pub(crate) fn scan(blobs: &BlobStore, path: &Path) -> Result<Self> {
        let file = File::open(path).ctx("open archive", path)?;
        let what = format!("archive {}", path.display());
        // `docker load` takes gzip/zstd-compressed archives too.
        let (input, _) = Decompressed::new(file).ctx("read archive", path)?;
        // The guard bounds what the tar crate reads into memory per member.
        let mut ar = tar::Archive::new(crate::layer::TarGuard::new(input));
        let mut out = ArchiveContents {
            what: what.clone(),
            ..Default::default()
        };
        let bad = |e: io::Error| invalid(format!("{what}: not a readable tar archive: {e}"));
        for entry in ar.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            if out.files.len() + out.links.len() >= MAX_MEMBERS {
                return Err(invalid(format!(
                    "{what}: more than {MAX_MEMBERS} files and links; an image archive (docker save, OCI layout) has a few per image and layer"
                )));
            }
            let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let name = normalize(&raw_name, &what)?;
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .ok_or_else(|| invalid(format!("{what}: link {raw_name:?} has no target")))?;
                let resolved = if kind.is_symlink() {
                    resolve_link(&name, &target, &what)?
                } else {
                    // Hard link targets are archive-root relative.
                    normalize(&target, &what)?
                };
                out.links.insert(name, resolved);
                continue;
            }
            if !kind.is_file() {
                continue; // directories and anything else carry no content
            }
            let size = entry.size();
            let blob_name = name
                .strip_prefix("blobs/sha256/")
                .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok());
            let member = if let Some(expected) = blob_name {
                let (d, n) = if blobs.has(&expected) {
                    // Already stored: still read it through so the tar
                    // stream advances, but do not rewrite it.
                    io::copy(&mut entry, &mut io::sink()).map_err(bad)?;
                    (expected.clone(), blobs.size(&expected)?)
                } else {
                    blobs
                        .put_stream(&mut entry, Some(&expected))
                        .map_err(|e| match e {
                            Error::DigestMismatch {
                                expected, actual, ..
                            } => Error::DigestMismatch {
                                what: format!("{what} member {raw_name}"),
                                expected,
                                actual,
                            },
                            other => other,
                        })?
                };
                Member::Blob(d, n)
            } else if size > SMALL || out.held + size > HELD_IN_MEMORY {
                let (d, n) = blobs.put_stream(&mut entry, None)?;
                Member::Blob(d, n)
            } else {
                let mut buf = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut buf).map_err(bad)?;
                out.held += size;
                Member::Memory(buf)
            };
            out.files.insert(name, member);
        }
        Ok(out)
    }

    /// The member called `name` (symlinks followed).
    pub(crate) fn get(&self, name: &str) -> Result<&Member> {
        let mut cur = normalize(name, &self.what)?;
        for _ in 0..MAX_HOPS {
            if let Some(m) = self.files.get(&cur) {
                return Ok(m);
            }
            match self.links.get(&cur) {
                Some(next) => cur = next.clone(),
                None => {
                    return Err(Error::NotFound(format!(
                        "{}: has no member {name:?}",
                        self.what
                    )));
                }
            }
        }
        Err(invalid(format!(
            "{}: too many symlinks resolving {name:?}",
            self.what
        )))
    }

    /// Whether a member exists.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.get(name).is_ok()
    }

    /// A member's bytes (small members only: up to `max`).
    pub(crate) fn read(&self, blobs: &BlobStore, name: &str, max: u64) -> Result<Vec<u8>> {
        match self.get(name)? {
            Member::Memory(b) => Ok(b.clone()),
            Member::Blob(d, _) => blobs.read_verified(d, max),
        }
    }

    /// A member as a blob in the store (small members are stored now).
    pub(crate) fn to_blob(&self, blobs: &BlobStore, name: &str) -> Result<(Digest, u64)> {
        match self.get(name)? {
            Member::Memory(b) => {
                let d = blobs.put_bytes(b, None)?;
                Ok((d, b.len() as u64))
            }
            Member::Blob(d, n) => Ok((d.clone(), *n)),
        }
    }

    /// Names the archive to the user.
    pub(crate) fn what(&self) -> &str {
        &self.what
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_links_stay_inside_the_archive() {
        assert_eq!(normalize("./a//b/./c", "t").expect("ok"), "a/b/c");
        assert!(normalize("a/../../etc/passwd", "t").is_err());
        assert_eq!(
            resolve_link("x/layer.tar", "../abc.tar", "t").expect("ok"),
            "abc.tar"
        );
        assert!(resolve_link("layer.tar", "../../etc/shadow", "t").is_err());
    }

    /// A tar of `n` members of `size` zero bytes each, in `dir`.
    fn archive_of(dir: &Path, n: usize, size: usize) -> std::path::PathBuf {
        let path = dir.join(format!("{n}x{size}.tar"));
        let mut b = tar::Builder::new(File::create(&path).expect("create"));
        let zeros = vec![0u8; size];
        for i in 0..n {
            let mut h = tar::Header::new_gnu();
            h.set_size(size as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, format!("m{i}"), &zeros[..])
                .expect("append");
        }
        b.finish().expect("finish");
        path
    }

    #[test]
    fn many_small_members_go_to_the_store_past_the_memory_budget() {
        let t = tempfile::tempdir().expect("tempdir");
        let store = crate::store::Store::open(t.path().join("root")).expect("store");
        let path = archive_of(t.path(), 40, 1 << 20);
        let c = ArchiveContents::scan(store.blobs(), &path).expect("scan");
        assert!(c.held <= HELD_IN_MEMORY, "{} bytes held", c.held);
        let (in_memory, stored) = c.files.values().fold((0, 0), |(m, s), f| match f {
            Member::Memory(_) => (m + 1, s),
            Member::Blob(..) => (m, s + 1),
        });
        assert_eq!((in_memory, stored), (16, 24));
        // Every member reads back whole, wherever it was kept.
        for name in ["m0", "m39"] {
            assert_eq!(
                c.read(store.blobs(), name, 1 << 20).expect("read"),
                vec![0u8; 1 << 20]
            );
        }
    }

    #[test]
    fn an_archive_of_too_many_members_is_refused() {
        let t = tempfile::tempdir().expect("tempdir");
        let store = crate::store::Store::open(t.path().join("root")).expect("store");
        let path = archive_of(t.path(), MAX_MEMBERS + 1, 0);
        let e = ArchiveContents::scan(store.blobs(), &path).expect_err("refused");
        assert!(
            e.to_string().contains("more than 100000 files and links"),
            "{e}"
        );
    }
}
