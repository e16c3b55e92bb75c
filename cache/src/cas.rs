//! The content-addressed blob store: `<root>/blobs/sha256/<hex>`.
//!
//! A blob is written to a temp file in this process's scratch directory,
//! hashed while it is written, fsynced, checked against the digest the caller
//! expects, and only then renamed into place. So a blob path either does not
//! exist or holds exactly the bytes its name says, whatever happens to the
//! process; a wrong digest leaves nothing behind. Two processes writing the
//! same blob at once both rename identical content over the same name, which
//! is harmless, so writes need no lock.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tempfile::NamedTempFile;

use crate::digest::{Digest, Sha256};
use crate::error::{Error, IoContext, Result};
use crate::lock::ScratchDir;

/// Handle to the blob directory of a store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
    scratch: Arc<ScratchDir>,
}

impl BlobStore {
    /// The blob store in `dir` (`<root>/blobs/sha256`), writing its temp
    /// files into `scratch`.
    pub(crate) fn new(dir: PathBuf, scratch: Arc<ScratchDir>) -> Result<Self> {
        fs::create_dir_all(&dir).ctx("create blob directory", &dir)?;
        Ok(BlobStore { dir, scratch })
    }

    /// Where the blob with `digest` lives (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    /// Whether the blob is in the store.
    pub fn has(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// The size of a blob in bytes.
    pub fn size(&self, digest: &Digest) -> Result<u64> {
        let p = self.path(digest);
        match fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(self.not_found(digest)),
            Err(e) => Err(e).ctx("stat blob", &p),
        }
    }

    /// Opens a blob for reading.
    pub fn open(&self, digest: &Digest) -> Result<File> {
        let p = self.path(digest);
        match File::open(&p) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(self.not_found(digest)),
            Err(e) => Err(e).ctx("open blob", &p),
        }
    }

    /// Reads a whole blob into memory and checks its digest (for manifests
    /// and configs, which the caller is about to trust). Refuses blobs larger
    /// than `max` bytes.
    pub fn read_verified(&self, digest: &Digest, max: u64) -> Result<Vec<u8>> {
        let size = self.size(digest)?;
        if size > max {
            return Err(Error::Invalid(format!(
                "blob {digest} is {size} bytes, more than the {max} expected for it"
            )));
        }
        let mut buf = Vec::with_capacity(size as usize);
        self.open(digest)?
            .read_to_end(&mut buf)
            .ctx("read blob", &self.path(digest))?;
        let actual = Digest::of(&buf);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                what: format!(
                    "blob {} (the store is damaged; run `strata store verify`)",
                    self.path(digest).display()
                ),
                expected: digest.clone(),
                actual,
            });
        }
        Ok(buf)
    }

    /// Starts writing a blob whose digest is known only at the end.
    pub fn writer(&self) -> Result<BlobWriter> {
        let tmp = NamedTempFile::new_in(self.scratch.path())
            .ctx("create temp file in", self.scratch.path())?;
        let file = tmp.reopen().ctx("open temp file", tmp.path())?;
        Ok(BlobWriter {
            store: self.clone(),
            tmp,
            out: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            len: 0,
        })
    }

    /// Copies `reader` into the store. With `expected`, the content must hash
    /// to it or nothing is stored. Returns the digest and size.
    pub fn put_stream(
        &self,
        mut reader: impl Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64)> {
        let mut w = self.writer()?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::Io {
                        op: "read the source of a blob",
                        path: PathBuf::from(
                            expected.map_or("<stream>".to_string(), |d| d.to_string()),
                        ),
                        cause: e,
                    });
                }
            };
            w.write_all(&buf[..n])
                .ctx("write temp file", w.tmp.path())?;
        }
        w.commit(expected)
    }

    /// Stores `data`, which must hash to `expected` if given.
    pub fn put_bytes(&self, data: &[u8], expected: Option<&Digest>) -> Result<Digest> {
        let actual = Digest::of(data);
        if let Some(e) = expected
            && e != &actual
        {
            return Err(Error::DigestMismatch {
                what: "blob".into(),
                expected: e.clone(),
                actual,
            });
        }
        if self.has(&actual) {
            return Ok(actual);
        }
        let (d, _) = self.put_stream(data, Some(&actual))?;
        Ok(d)
    }

    /// Removes a blob. Removing a missing blob is not an error.
    pub fn delete(&self, digest: &Digest) -> Result<()> {
        let p = self.path(digest);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx("remove blob", &p),
        }
    }

    /// Every blob with its size. Files whose names are not digests (which
    /// strata never writes) are skipped.
    pub fn list(&self) -> Result<Vec<(Digest, u64)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).ctx("read", &self.dir)? {
            let entry = entry.ctx("read", &self.dir)?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(d) = format!("sha256:{name}").parse::<Digest>() else {
                continue;
            };
            let len = entry.metadata().ctx("stat", &entry.path())?.len();
            out.push((d, len));
        }
        out.sort();
        Ok(out)
    }

    /// Re-hashes a stored blob; `Ok(None)` when it is intact, `Ok(Some(actual))`
    /// when its content no longer matches its name.
    pub fn verify(&self, digest: &Digest) -> Result<Option<Digest>> {
        let p = self.path(digest);
        let mut f = self.open(digest)?;
        let mut hasher = Sha256::new();
        hasher.update_from(&mut f).ctx("read blob", &p)?;
        let actual = hasher.finalize();
        Ok((&actual != digest).then_some(actual))
    }

    fn not_found(&self, digest: &Digest) -> Error {
        Error::BlobNotFound {
            digest: digest.clone(),
            root: self.dir.clone(),
        }
    }
}

/// A blob being written. Write to it, then [`BlobWriter::commit`]; dropping
/// it without committing leaves nothing behind.
pub struct BlobWriter {
    store: BlobStore,
    tmp: NamedTempFile,
    out: BufWriter<File>,
    hasher: Sha256,
    len: u64,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Finishes the blob: flush, fsync, check against `expected` if given,
    /// rename into place, fsync the directory. Returns digest and size.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        self.out.flush().ctx("write temp file", self.tmp.path())?;
        let actual = self.hasher.clone().finalize();
        if let Some(e) = expected
            && e != &actual
        {
            return Err(Error::DigestMismatch {
                what: "blob".into(),
                expected: e.clone(),
                actual,
            });
        }
        let dest = self.store.path(&actual);
        if dest.is_file() {
            // Already there (content-addressed: same name, same bytes).
            return Ok((actual, self.len));
        }
        self.out
            .get_ref()
            .sync_all()
            .ctx("fsync temp file", self.tmp.path())?;
        set_read_only(self.tmp.path())?;
        let len = self.len;
        self.tmp
            .persist(&dest)
            .map_err(|e| e.error)
            .ctx("move blob into place at", &dest)?;
        sync_dir(&self.store.dir)?;
        Ok((actual, len))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn set_read_only(path: &Path) -> Result<()> {
    let mut perm = fs::metadata(path).ctx("stat", path)?.permissions();
    perm.set_readonly(true);
    fs::set_permissions(path, perm).ctx("make read-only", path)
}

/// fsync a directory so a rename in it survives a power cut.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx("fsync directory", dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(t: &Path) -> BlobStore {
        let scratch =
            Arc::new(ScratchDir::create(&t.join("tmp"), &t.join("locks")).expect("scratch"));
        BlobStore::new(t.join("blobs/sha256"), scratch).expect("blobs")
    }

    #[test]
    fn put_has_open_delete() {
        let t = tempfile::tempdir().expect("tempdir");
        let b = store(t.path());
        let d = b.put_bytes(b"hello", None).expect("put");
        assert_eq!(d, Digest::of(b"hello"));
        assert!(b.has(&d));
        assert_eq!(b.size(&d).expect("size"), 5);
        assert_eq!(b.read_verified(&d, 10).expect("read"), b"hello");
        assert!(b.read_verified(&d, 4).is_err());
        assert_eq!(b.list().expect("list"), vec![(d.clone(), 5)]);
        assert_eq!(b.verify(&d).expect("verify"), None);
        b.delete(&d).expect("delete");
        assert!(!b.has(&d));
        assert!(matches!(b.open(&d), Err(Error::BlobNotFound { .. })));
    }

    #[test]
    fn wrong_digest_leaves_nothing_behind() {
        let t = tempfile::tempdir().expect("tempdir");
        let b = store(t.path());
        let wrong = Digest::of(b"something else");
        let err = b.put_stream(&b"payload"[..], Some(&wrong)).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert!(!b.has(&wrong));
        assert!(!b.has(&Digest::of(b"payload")));
        assert!(b.list().expect("list").is_empty());
        // No temp file survives either.
        let left: Vec<_> = fs::read_dir(b.scratch.path()).expect("read").collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn corrupted_blob_is_detected() {
        let t = tempfile::tempdir().expect("tempdir");
        let b = store(t.path());
        let d = b.put_bytes(b"good", None).expect("put");
        let p = b.path(&d);
        let mut perm = fs::metadata(&p).expect("stat").permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        fs::set_permissions(&p, perm).expect("chmod");
        fs::write(&p, b"evil").expect("write");
        assert_eq!(b.verify(&d).expect("verify"), Some(Digest::of(b"evil")));
        assert!(matches!(
            b.read_verified(&d, 100),
            Err(Error::DigestMismatch { .. })
        ));
    }

    #[test]
    fn concurrent_writers_of_one_blob() {
        let t = tempfile::tempdir().expect("tempdir");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = Digest::of(&data);
        std::thread::scope(|s| {
            for _ in 0..4 {
                // Each thread is its own "process": its own scratch dir.
                let b = store(t.path());
                let (data, expected) = (&data, &expected);
                s.spawn(move || {
                    for _ in 0..5 {
                        let (d, n) = b.put_stream(&data[..], Some(expected)).expect("put");
                        assert_eq!((&d, n), (expected, data.len() as u64));
                        // Whoever wins, the blob in place is always complete.
                        assert_eq!(b.verify(&d).expect("verify"), None);
                    }
                });
            }
        });
        let b = store(t.path());
        assert_eq!(b.list().expect("list"), vec![(expected, data.len() as u64)]);
    }
}
