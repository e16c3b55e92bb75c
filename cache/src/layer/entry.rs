//! The entry model: what a layer is made of, independent of tar.
//!
//! The runtime turns an overlay upper directory into a list of changes and
//! the builder turns those into [`Entry`] values, so the type is plain data
//! with short constructors and chainable setters:
//!
//! ```
//! use cache::layer::{Entry, Content};
//! let e = Entry::file("usr/bin/tool", Content::Bytes(b"#!/bin/sh\n".to_vec()))
//!     .mode(0o4755)
//!     .owner(0, 0)
//!     .mtime(1_700_000_000)
//!     .xattr("user.note", b"x".to_vec());
//! assert_eq!(e.meta.mode, 0o4755);
//! ```

use std::path::{Path, PathBuf};

/// Where a regular file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Read from this file on disk when the layer is written. Its size is
    /// taken when the entry is written; if it changes while being read the
    /// write fails rather than produce a corrupt tar.
    Path(PathBuf),
    /// These bytes.
    Bytes(Vec<u8>),
}

/// The kind of an entry and what only that kind carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File(Content),
    /// A directory.
    Dir,
    /// A symbolic link with this target (stored verbatim, never resolved).
    Symlink(PathBuf),
    /// A hard link to another path of the same layer. The writer makes sure
    /// the target is written first (swapping roles if the target sorts
    /// later), because tar readers need the target before the link.
    Hardlink(PathBuf),
    /// A character device.
    CharDevice { major: u32, minor: u32 },
    /// A block device.
    BlockDevice { major: u32, minor: u32 },
    /// A named pipe.
    Fifo,
    /// Deletes [`Entry::path`] from the layers below (`.wh.<name>`).
    Whiteout,
    /// [`Entry::path`] is a directory whose lower contents are hidden
    /// (`.wh..wh..opq`). Usually paired with a [`EntryKind::Dir`] entry for
    /// the same path.
    Opaque,
}

/// Ownership, permissions, time and extended attributes of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits including setuid (0o4000), setgid (0o2000) and
    /// sticky (0o1000); file-type bits are ignored.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// Extended attributes, written as PAX `SCHILY.xattr.<name>` records
    /// (sorted by name in the output).
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// One entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the layer root (a leading `/` is accepted and
    /// stripped; `..` is refused when the layer is written).
    pub path: PathBuf,
    pub kind: EntryKind,
    pub meta: Meta,
}

impl Entry {
    /// An entry of `kind` at `path` with the default metadata: root-owned,
    /// mtime 0, mode 0o755 for directories and 0o644 otherwise (0o777 for
    /// symlinks, as Linux reports them).
    pub fn new(path: impl Into<PathBuf>, kind: EntryKind) -> Self {
        let mode = match kind {
            EntryKind::Dir => 0o755,
            EntryKind::Symlink(_) => 0o777,
            _ => 0o644,
        };
        Entry {
            path: path.into(),
            kind,
            meta: Meta {
                mode,
                uid: 0,
                gid: 0,
                mtime: 0,
                xattrs: Vec::new(),
            },
        }
    }

    pub fn file(path: impl Into<PathBuf>, content: Content) -> Self {
        Self::new(path, EntryKind::File(content))
    }

    pub fn dir(path: impl Into<PathBuf>) -> Self {
        Self::new(path, EntryKind::Dir)
    }

    pub fn symlink(path: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Self {
        Self::new(path, EntryKind::Symlink(target.into()))
    }

    pub fn hardlink(path: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Self {
        Self::new(path, EntryKind::Hardlink(target.into()))
    }

    pub fn char_device(path: impl Into<PathBuf>, major: u32, minor: u32) -> Self {
        Self::new(path, EntryKind::CharDevice { major, minor })
    }

    pub fn block_device(path: impl Into<PathBuf>, major: u32, minor: u32) -> Self {
        Self::new(path, EntryKind::BlockDevice { major, minor })
    }

    pub fn fifo(path: impl Into<PathBuf>) -> Self {
        Self::new(path, EntryKind::Fifo)
    }

    /// A whiteout deleting `path` from the layers below.
    pub fn whiteout(path: impl Into<PathBuf>) -> Self {
        Self::new(path, EntryKind::Whiteout)
    }

    /// An opaque marker for directory `path`.
    pub fn opaque(path: impl Into<PathBuf>) -> Self {
        Self::new(path, EntryKind::Opaque)
    }

    /// Sets the permission bits (including setuid/setgid/sticky).
    pub fn mode(mut self, mode: u32) -> Self {
        self.meta.mode = mode & 0o7777;
        self
    }

    pub fn owner(mut self, uid: u32, gid: u32) -> Self {
        self.meta.uid = uid;
        self.meta.gid = gid;
        self
    }

    pub fn mtime(mut self, secs: i64) -> Self {
        self.meta.mtime = secs;
        self
    }

    pub fn xattr(mut self, name: impl Into<String>, value: Vec<u8>) -> Self {
        self.meta.xattrs.push((name.into(), value));
        self
    }

    /// The path, for error messages and lookups.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
