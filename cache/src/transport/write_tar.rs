//! Writing an image tarball: entries in sorted order with fixed metadata (so
//! the same images give the same bytes), blobs re-verified as they are
//! copied out of the store, and the file written under a temp name next to
//! the destination and renamed over it only when complete, so a kill never
//! leaves a half-written archive at the destination path.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use tempfile::NamedTempFile;

use crate::cas::{BlobStore, sync_dir};
use crate::digest::{Digest, Sha256};
use crate::error::{Error, IoContext, Result};

enum Source {
    Dir,
    Bytes(Vec<u8>),
    Blob(Digest, u64),
}

/// An archive being assembled; nothing is written until [`TarOut::write_to`].
#[derive(Default)]
pub(crate) struct TarOut {
    entries: BTreeMap<String, Source>,
}

impl TarOut {
    /// Adds a small file.
    pub(crate) fn bytes(&mut self, name: &str, data: Vec<u8>) {
        self.add_parents(name);
        self.entries.insert(name.to_string(), Source::Bytes(data));
    }

    /// Adds a store blob as `blobs/sha256/<hex>`.
    pub(crate) fn blob(&mut self, digest: &Digest, size: u64) {
        let name = format!("blobs/sha256/{}", digest.hex());
        self.add_parents(&name);
        self.entries
            .insert(name, Source::Blob(digest.clone(), size));
    }

    fn add_parents(&mut self, name: &str) {
        let mut acc = String::new();
        let parts: Vec<&str> = name.split('/').collect();
        for p in &parts[..parts.len().saturating_sub(1)] {
            acc.push_str(p);
            acc.push('/');
            self.entries.entry(acc.clone()).or_insert(Source::Dir);
        }
    }

    /// Writes the archive to a file in memory order, atomically.
    /// Blobs the store lacks come from `made` (layers kept as directories).
    pub(crate) fn write_to(
        self,
        blobs: &BlobStore,
        made: &dyn super::LayerSource,
        dest: &Path,
    ) -> Result<()> {
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // Errors name `dest`, not the temp file's internal name: that is
        // the file the user asked for.
        let tmp = partial_file(dir)?;
        let tmp = self.write_into(blobs, made, tmp, dest)?;
        tmp.as_file().sync_all().ctx("write archive", dest)?;
        let mut perm = fs::metadata(tmp.path())
            .ctx("write archive", dest)?
            .permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o644);
        fs::set_permissions(tmp.path(), perm).ctx("write archive", dest)?;
        tmp.persist(dest)
            .map_err(|e| e.error)
            .ctx("move the archive into place at", dest)?;
        sync_dir(dir)
    }

    fn write_into(
        self,
        blobs: &BlobStore,
        made: &dyn super::LayerSource,
        tmp: NamedTempFile,
        dest: &Path,
    ) -> Result<NamedTempFile> {
        let path = dest.to_path_buf();
        let out = BufWriter::with_capacity(1 << 20, tmp);
        let mut b = tar::Builder::new(out);
        b.mode(tar::HeaderMode::Deterministic);
        for (name, src) in self.entries {
            let mut h = tar::Header::new_ustar();
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            match src {
                Source::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    b.append_data(&mut h, &name, io::empty())
                        .ctx("write archive", &path)?;
                }
                Source::Bytes(data) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, &name, &data[..])
                        .ctx("write archive", &path)?;
                }
                Source::Blob(digest, size) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_size(size);
                    let inner: Box<dyn Read + '_> = if !blobs.has(&digest) && made.makes(&digest) {
                        made.open(&digest).ctx("make layer", &blobs.path(&digest))?
                    } else {
                        Box::new(blobs.open(&digest)?)
                    };
                    let mut r = Verifying {
                        inner: inner.take(size),
                        hasher: Sha256::new(),
                    };
                    b.append_data(&mut h, &name, &mut r)
                        .map_err(|e| Error::Io {
                            op: "copy blob into archive",
                            path: blobs.path(&digest),
                            cause: e,
                        })?;
                    let actual = r.hasher.finalize();
                    if actual != digest {
                        return Err(Error::DigestMismatch {
                            what: format!(
                                "store blob {} (run `strata store verify`; pull or build the image again)",
                                blobs.path(&digest).display()
                            ),
                            expected: digest,
                            actual,
                        });
                    }
                }
            }
        }
        let mut out = b.into_inner().ctx("write archive", &path)?;
        out.flush().ctx("write archive", &path)?;
        out.into_inner()
            .map_err(|e| e.into_error())
            .ctx("write archive", &path)
    }
}

const PARTIAL_PREFIX: &str = ".strata-partial-";

/// A temp file in `dir` for output that is renamed into place when done,
/// after removing leftovers of killed processes there (see
/// [`clean_partials`]).
pub(crate) fn partial_file(dir: &Path) -> Result<NamedTempFile> {
    clean_partials(dir);
    new_partial(dir)
}

/// A temp file in `dir`, flock'ed while this process lives so that a
/// leftover of a killed process can be told apart from a live one.
pub(crate) fn new_partial(dir: &Path) -> Result<NamedTempFile> {
    let tmp = tempfile::Builder::new()
        .prefix(PARTIAL_PREFIX)
        .tempfile_in(dir)
        .ctx("write into", dir)?;
    rustix::fs::flock(
        tmp.as_file(),
        rustix::fs::FlockOperation::NonBlockingLockExclusive,
    )
    .map_err(io::Error::from)
    .ctx("lock a temp file in", dir)?;
    Ok(tmp)
}

/// Removes `.strata-partial-*` files in `dir` that nobody holds a lock on
/// and that have not changed for a minute (the age check closes the short
/// window between a file's creation and its lock). Best effort.
pub(crate) fn clean_partials(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with(PARTIAL_PREFIX) {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() >= 60);
        if !old {
            continue;
        }
        let Ok(f) = fs::File::open(e.path()) else {
            continue;
        };
        if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok() {
            let _ = fs::remove_file(e.path());
        }
    }
}

struct Verifying<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Verifying<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn age(p: &Path) {
        fs::File::options()
            .append(true)
            .open(p)
            .and_then(|f| f.set_modified(SystemTime::UNIX_EPOCH))
            .expect("age file");
    }

    #[test]
    fn only_dead_old_partials_are_cleaned() {
        let t = tempfile::tempdir().expect("tempdir");
        let dead = t.path().join(".strata-partial-dead");
        fs::write(&dead, b"half an archive").expect("write");
        age(&dead);
        let fresh = t.path().join(".strata-partial-fresh");
        fs::write(&fresh, b"just created").expect("write");
        let live = new_partial(t.path()).expect("live");
        age(live.path());
        let other = t.path().join("keep.tar");
        fs::write(&other, b"x").expect("write");
        age(&other);
        clean_partials(t.path());
        assert!(!dead.exists());
        assert!(fresh.exists());
        assert!(live.path().exists());
        assert!(other.exists());
    }
}
