//! The plain data a layer diff is made of.
//!
//! A [`Change`] says what one path of a build step's root filesystem became,
//! relative to the step's lower layers. The builder turns each one into a
//! layer tar entry (the layer writer lives in the `cache` crate), so these
//! types carry everything a tar header needs and nothing about how the change
//! was found: the overlay and the native snapshotters produce the same list
//! for the same step.
//!
//! To layer tar entries (the `cache` crate's `layer::Entry`), one change at a
//! time, in list order:
//!
//! | change | tar entries |
//! |---|---|
//! | `Added(e)` / `Modified(e)`, `e.file` = `File { source, .. }` | regular file, content read from `source` |
//! | … `Dir` / `Symlink` / `Hardlink` / devices / `Fifo` | the same kind (a hardlink's target is a layer path) |
//! | `Deleted` | whiteout `<parent>/.wh.<name>` |
//! | `Opaque(e)` | directory `e`, then `<path>/.wh..wh..opq` |
//!
//! with `mode`, `uid`, `gid`, `mtime` and `xattrs` from the entry. A
//! `user.rootlesscontainers` xattr (ownership the unpacker could not apply
//! with a single id mapping) is reported like any other; the layer writer
//! decides whether to turn it back into `uid`/`gid`.
//!
//! They are serializable because the walk that produces them usually runs in
//! a forked child inside the build's user namespace (files owned by
//! subordinate ids are unreadable from outside it) and the list has to cross a
//! pipe back to the parent.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One changed path. A list of changes is sorted by `path` (component-wise,
/// as [`std::path::Path`] orders), so a directory comes before its contents
/// and a hardlink's target before the link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Relative to the root of the filesystem, no leading `/`, never empty,
    /// no `.` or `..` components. May hold bytes that are not UTF-8.
    #[serde(with = "crate::diff::path_bytes")]
    pub path: PathBuf,
    pub kind: ChangeKind,
}

/// What happened at a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// Nothing existed at this path in the lower layers; write `Entry`.
    Added(Entry),
    /// Something existed at this path in the lower layers (possibly of another
    /// type, e.g. a directory replaced by a file); write `Entry` over it.
    Modified(Entry),
    /// The path existed in the lower layers and is gone. In a layer tar this is
    /// the whiteout file `<parent>/.wh.<name>`; a deleted directory needs only
    /// this one entry, never entries for its former children.
    Deleted,
    /// A directory that replaced a directory of the lower layers (it was
    /// removed and created again), so none of the lower directory's children
    /// show through. In a layer tar: the directory entry itself, then
    /// `<path>/.wh..wh..opq`. Its new contents follow as separate `Added`
    /// changes. The entry's type is always [`EntryType::Dir`].
    Opaque(Entry),
}

/// A file system object with its full metadata, as seen by the process that
/// walked the tree. Run the walk inside the build's user namespace and the ids
/// are container ids (what a tar header needs), not host ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub file: EntryType,
    /// Permission bits including setuid (0o4000), setgid (0o2000) and sticky
    /// (0o1000); never the file-type bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Timestamp,
    /// Extended attributes sorted by name, without overlayfs' own
    /// `user.overlay.*` and without `trusted.*` (neither belongs in a layer).
    pub xattrs: Vec<Xattr>,
}

/// The type of an [`Entry`] and what only that type has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryType {
    /// A regular file. Read its content from `source`, an absolute host path
    /// inside the active snapshot (readable from the user namespace the diff
    /// ran in; valid until the snapshot is committed or removed).
    File {
        size: u64,
        #[serde(with = "crate::diff::path_bytes")]
        source: PathBuf,
    },
    Dir,
    Symlink {
        #[serde(with = "crate::diff::path_bytes")]
        target: PathBuf,
    },
    /// Another name for a regular file (or other non-directory) of this same
    /// diff: `target` is the relative path of that file's first name in the
    /// sorted list, which always comes earlier and is never itself a
    /// `Hardlink`. Whiteouts are never reported as hardlinks.
    Hardlink {
        #[serde(with = "crate::diff::path_bytes")]
        target: PathBuf,
    },
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// A modification time. Layers usually clamp it (SOURCE_DATE_EPOCH); the diff
/// reports what the file system holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

/// One extended attribute; names are bytes because the kernel allows any.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Xattr {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

impl ChangeKind {
    /// The entry written for this change, `None` for a deletion.
    pub fn entry(&self) -> Option<&Entry> {
        match self {
            ChangeKind::Added(e) | ChangeKind::Modified(e) | ChangeKind::Opaque(e) => Some(e),
            ChangeKind::Deleted => None,
        }
    }
}

impl EntryType {
    pub fn is_dir(&self) -> bool {
        matches!(self, EntryType::Dir)
    }
}
