//! The inode of every path of a freshly prepared native snapshot.
//!
//! The native diff compares metadata, which cannot see a path that a step
//! replaced by an object with identical metadata (`rm -rf d; mkdir d` keeps
//! mode, owner and often the mtime second; `cp -p` then `mv` keeps a file's).
//! Inode numbers can: a path whose inode is not the one prepare created was
//! replaced. Not alone, though: file systems reuse a freed inode number at
//! once, and `rm -rf d; mkdir d` very often gives the new `d` the old number.
//! A directory's identity therefore also includes its inode generation
//! (`FS_IOC_GETVERSION`: ext4, xfs and tmpfs draw a new random one for every
//! inode they allocate) and its birth time, where the file system has them.
//! The table is kept in a file beside the tree because prepare and diff may
//! run in different (forked, user-namespaced) processes.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::DiffError;

/// Bytes of a saved record before its path.
const RECORD_HEAD: usize = 8 + 4 + 8 + 4 + 8 + 4 + 4;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseInodes {
    by_path: HashMap<PathBuf, Identity>,
}

/// What tells one file system object from a later one at the same path.
/// Generation and birth time are 0 where unknown (and for non-directories,
/// where reading them would cost an open per file for a rare case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    ino: u64,
    generation: u32,
    birth_secs: i64,
    birth_nanos: u32,
    /// Not part of the identity: a change of it says the object was
    /// written or its metadata touched (see [`BaseInodes::touched`]).
    ctime_secs: i64,
    ctime_nanos: u32,
}

impl Identity {
    fn same_object(&self, other: &Identity) -> bool {
        (self.ino, self.generation, self.birth_secs, self.birth_nanos)
            == (
                other.ino,
                other.generation,
                other.birth_secs,
                other.birth_nanos,
            )
    }

    fn of(path: &Path, md: &std::fs::Metadata) -> Identity {
        let mut id = Identity {
            ino: md.ino(),
            generation: 0,
            birth_secs: 0,
            birth_nanos: 0,
            ctime_secs: md.ctime(),
            ctime_nanos: u32::try_from(md.ctime_nsec()).unwrap_or(0),
        };
        if md.is_dir() {
            id.generation = generation(path).unwrap_or(0);
            if let Ok(birth) = md.created()
                && let Ok(d) = birth.duration_since(std::time::UNIX_EPOCH)
            {
                id.birth_secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                id.birth_nanos = d.subsec_nanos();
            }
        }
        id
    }
}

/// The inode generation of the directory at `path`, if the file system
/// reports one.
fn generation(path: &Path) -> Option<u32> {
    use std::os::fd::AsFd;
    let dir = std::fs::File::open(path).ok()?;
    crate::sandbox::sys::inode_generation(dir.as_fd())
}

impl BaseInodes {
    /// Records every path below `root` (not `root` itself).
    pub fn record(root: &Path) -> Result<Self, DiffError> {
        let mut table = BaseInodes::default();
        table.walk(root, Path::new(""))?;
        Ok(table)
    }

    /// Whether the object at `rel` (host path `abs`, metadata `md`) is the
    /// very one recorded for `rel`, not a replacement.
    pub fn is_original(&self, rel: &Path, abs: &Path, md: &std::fs::Metadata) -> bool {
        self.by_path
            .get(rel)
            .is_some_and(|recorded| recorded.same_object(&Identity::of(abs, md)))
    }

    /// Whether the object at `rel` (a non-directory, metadata `md`) was
    /// written to or had its metadata set since it was recorded, even if
    /// everything a diff compares came out the same: its ctime moved. A
    /// file rewritten in place with its size and mtime restored is found
    /// this way, and then told apart by its content.
    pub fn touched(&self, rel: &Path, md: &std::fs::Metadata) -> bool {
        self.by_path.get(rel).is_some_and(|r| {
            (r.ctime_secs, i64::from(r.ctime_nanos)) != (md.ctime(), md.ctime_nsec())
        })
    }

    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    fn walk(&mut self, abs: &Path, rel: &Path) -> Result<(), DiffError> {
        let rd = std::fs::read_dir(abs).map_err(|e| DiffError::io("list", abs, e))?;
        for item in rd {
            let item = item.map_err(|e| DiffError::io("list", abs, e))?;
            let child_rel = rel.join(item.file_name());
            let path = item.path();
            let md =
                std::fs::symlink_metadata(&path).map_err(|e| DiffError::io("stat", &path, e))?;
            self.by_path
                .insert(child_rel.clone(), Identity::of(&path, &md));
            if md.is_dir() {
                self.walk(&path, &child_rel)?;
            }
        }
        Ok(())
    }

    /// Writes the table to `file` (via a temporary file and a rename).
    /// Format: repeated `ino: u64, generation: u32, birth secs: i64, birth
    /// nanos: u32, ctime secs: i64, ctime nanos: u32, path len: u32` (all
    /// little-endian), then the path bytes.
    pub fn save(&self, file: &Path) -> Result<(), DiffError> {
        let tmp = file.with_extension("tmp");
        let f = std::fs::File::create(&tmp).map_err(|e| DiffError::io("create", &tmp, e))?;
        let mut w = BufWriter::new(f);
        for (path, id) in &self.by_path {
            let bytes = path.as_os_str().as_bytes();
            let len = u32::try_from(bytes.len()).map_err(|_| DiffError::Unsupported {
                path: path.clone(),
                what: "path longer than 4 GiB".into(),
            })?;
            let mut record = Vec::with_capacity(RECORD_HEAD + bytes.len());
            record.extend_from_slice(&id.ino.to_le_bytes());
            record.extend_from_slice(&id.generation.to_le_bytes());
            record.extend_from_slice(&id.birth_secs.to_le_bytes());
            record.extend_from_slice(&id.birth_nanos.to_le_bytes());
            record.extend_from_slice(&id.ctime_secs.to_le_bytes());
            record.extend_from_slice(&id.ctime_nanos.to_le_bytes());
            record.extend_from_slice(&len.to_le_bytes());
            record.extend_from_slice(bytes);
            w.write_all(&record)
                .map_err(|e| DiffError::io("write", &tmp, e))?;
        }
        let f = w
            .into_inner()
            .map_err(|e| DiffError::io("write", &tmp, e.into_error()))?;
        f.sync_all().map_err(|e| DiffError::io("sync", &tmp, e))?;
        std::fs::rename(&tmp, file).map_err(|e| DiffError::io("rename into place", file, e))
    }

    pub fn load(file: &Path) -> Result<Self, DiffError> {
        let f = std::fs::File::open(file).map_err(|e| DiffError::io("open", file, e))?;
        let mut r = BufReader::new(f);
        let mut table = BaseInodes::default();
        let corrupt = || DiffError::Unsupported {
            path: file.to_path_buf(),
            what: "the inode table is truncated or corrupt; remove the snapshot and prepare it \
                   again"
                .into(),
        };
        loop {
            let mut head = [0u8; RECORD_HEAD];
            match r.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(DiffError::io("read", file, e)),
            }
            let field = |from: usize, to: usize| -> &[u8] { &head[from..to] };
            let id = Identity {
                ino: u64::from_le_bytes(field(0, 8).try_into().map_err(|_| corrupt())?),
                generation: u32::from_le_bytes(field(8, 12).try_into().map_err(|_| corrupt())?),
                birth_secs: i64::from_le_bytes(field(12, 20).try_into().map_err(|_| corrupt())?),
                birth_nanos: u32::from_le_bytes(field(20, 24).try_into().map_err(|_| corrupt())?),
                ctime_secs: i64::from_le_bytes(field(24, 32).try_into().map_err(|_| corrupt())?),
                ctime_nanos: u32::from_le_bytes(field(32, 36).try_into().map_err(|_| corrupt())?),
            };
            let len = u32::from_le_bytes(field(36, 40).try_into().map_err(|_| corrupt())?);
            let mut bytes = vec![0u8; usize::try_from(len).map_err(|_| corrupt())?];
            r.read_exact(&mut bytes).map_err(|_| corrupt())?;
            table
                .by_path
                .insert(PathBuf::from(std::ffi::OsString::from_vec(bytes)), id);
        }
        Ok(table)
    }
}
