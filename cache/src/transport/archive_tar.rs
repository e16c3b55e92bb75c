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
            } else if size > SMALL {
                let (d, n) = blobs.put_stream(&mut entry, None)?;
                Member::Blob(d, n)
            } else {
                let mut buf = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut buf).map_err(bad)?;
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
}
