//! Turning `lstat` + xattrs into an [`Entry`], and comparing entries.

use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::overlay_form::is_internal_xattr;
use super::{DiffError, Entry, EntryType, Timestamp, Xattr};

/// Reads the entry at `path` (never following a final symlink). `None` for a
/// socket: a layer tar cannot hold one (docker and BuildKit skip them too).
pub(crate) fn read_entry(path: &Path, md: &Metadata) -> Result<Option<Entry>, DiffError> {
    let ft = md.file_type();
    let rdev = md.rdev();
    let file = if ft.is_file() {
        EntryType::File {
            size: md.len(),
            source: path.to_path_buf(),
        }
    } else if ft.is_dir() {
        EntryType::Dir
    } else if ft.is_symlink() {
        let target =
            std::fs::read_link(path).map_err(|e| DiffError::io("read symlink", path, e))?;
        EntryType::Symlink { target }
    } else if ft.is_char_device() {
        EntryType::CharDevice {
            major: rustix::fs::major(rdev),
            minor: rustix::fs::minor(rdev),
        }
    } else if ft.is_block_device() {
        EntryType::BlockDevice {
            major: rustix::fs::major(rdev),
            minor: rustix::fs::minor(rdev),
        }
    } else if ft.is_fifo() {
        EntryType::Fifo
    } else {
        return Ok(None);
    };
    Ok(Some(Entry {
        file,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime: Timestamp {
            secs: md.mtime(),
            // The kernel keeps nanoseconds in 0..1e9.
            nanos: u32::try_from(md.mtime_nsec()).unwrap_or(0),
        },
        xattrs: read_xattrs(path)?,
    }))
}

/// The xattrs that belong in a layer, sorted by name.
pub(crate) fn read_xattrs(path: &Path) -> Result<Vec<Xattr>, DiffError> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(Vec::new()),
        Err(e) => return Err(DiffError::io("list xattrs of", path, e)),
    };
    let mut out = Vec::new();
    for name in names {
        let name_bytes = name.as_bytes();
        if is_internal_xattr(name_bytes) {
            continue;
        }
        match xattr::get(path, &name) {
            Ok(Some(value)) => out.push(Xattr {
                name: name_bytes.to_vec(),
                value,
            }),
            // Removed between list and get: nothing to report.
            Ok(None) => {}
            Err(e) => return Err(DiffError::io("read xattr of", path, e)),
        }
    }
    out.sort();
    Ok(out)
}

/// Whether two entries describe the same object, ignoring where the content
/// is read from (the two sides live in different trees).
pub(crate) fn same_object(a: &Entry, b: &Entry) -> bool {
    let same_type = match (&a.file, &b.file) {
        (EntryType::File { size: x, .. }, EntryType::File { size: y, .. }) => x == y,
        (x, y) => x == y,
    };
    same_type && same_attributes(a, b) && a.mtime == b.mtime
}

/// Same mode, owner and xattrs: everything but type and time.
pub(crate) fn same_attributes(a: &Entry, b: &Entry) -> bool {
    a.mode == b.mode && a.uid == b.uid && a.gid == b.gid && a.xattrs == b.xattrs
}

/// Whether two regular files hold the same bytes.
pub(crate) fn same_content(a: &Path, b: &Path) -> Result<bool, DiffError> {
    use std::io::Read;
    let open = |p: &Path| std::fs::File::open(p).map_err(|e| DiffError::io("open", p, e));
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(|e| DiffError::io("read", a, e))?;
        let nb = read_full(&mut fb, &mut bb).map_err(|e| DiffError::io("read", b, e))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }

    /// Fills `buf` unless the file ends first; returns the bytes read.
    fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}
