//! The inode of every path of a freshly prepared native snapshot.
//!
//! The native diff compares metadata, which cannot see a path that a step
//! replaced by an object with identical metadata (`rm -rf d; mkdir d` keeps
//! mode, owner and often the mtime second; `cp -p` then `mv` keeps a file's).
//! Inode numbers can: a path whose inode is not the one prepare created was
//! replaced. The table is kept in a file beside the tree because prepare and
//! diff may run in different (forked, user-namespaced) processes.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::DiffError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseInodes {
    by_path: HashMap<PathBuf, u64>,
}

impl BaseInodes {
    /// Records every path below `root` (not `root` itself).
    pub fn record(root: &Path) -> Result<Self, DiffError> {
        let mut table = BaseInodes::default();
        table.walk(root, Path::new(""))?;
        Ok(table)
    }

    /// The inode `rel` had when recorded.
    pub fn get(&self, rel: &Path) -> Option<u64> {
        self.by_path.get(rel).copied()
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
            self.by_path.insert(child_rel.clone(), md.ino());
            if md.is_dir() {
                self.walk(&path, &child_rel)?;
            }
        }
        Ok(())
    }

    /// Writes the table to `file` (via a temporary file and a rename).
    /// Format: repeated `ino: u64 LE, len: u32 LE, path bytes`.
    pub fn save(&self, file: &Path) -> Result<(), DiffError> {
        let tmp = file.with_extension("tmp");
        let f = std::fs::File::create(&tmp).map_err(|e| DiffError::io("create", &tmp, e))?;
        let mut w = BufWriter::new(f);
        for (path, ino) in &self.by_path {
            let bytes = path.as_os_str().as_bytes();
            let len = u32::try_from(bytes.len()).map_err(|_| DiffError::Unsupported {
                path: path.clone(),
                what: "path longer than 4 GiB".into(),
            })?;
            w.write_all(&ino.to_le_bytes())
                .and_then(|()| w.write_all(&len.to_le_bytes()))
                .and_then(|()| w.write_all(bytes))
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
            let mut ino = [0u8; 8];
            match r.read_exact(&mut ino) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(DiffError::io("read", file, e)),
            }
            let mut len = [0u8; 4];
            r.read_exact(&mut len).map_err(|_| corrupt())?;
            let len = usize::try_from(u32::from_le_bytes(len)).map_err(|_| corrupt())?;
            let mut bytes = vec![0u8; len];
            r.read_exact(&mut bytes).map_err(|_| corrupt())?;
            table.by_path.insert(
                PathBuf::from(std::ffi::OsString::from_vec(bytes)),
                u64::from_le_bytes(ino),
            );
        }
        Ok(table)
    }
}
