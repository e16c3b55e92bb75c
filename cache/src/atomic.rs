//! Atomic small-file replacement: write a temp file next to nothing the
//! reader can see, fsync it, rename it over the target, fsync the directory.
//! A reader sees the old content or the new, never a mix, even after a kill.

use std::fs;
use std::io::Write;
use std::path::Path;

use tempfile::NamedTempFile;

use crate::cas::sync_dir;
use crate::error::{IoContext, Result};

/// Replaces `dest` with `data` atomically. The temp file is created in
/// `scratch`, which must be on the same filesystem as `dest`.
pub(crate) fn write_atomic(scratch: &Path, dest: &Path, data: &[u8]) -> Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).ctx("create directory", dir)?;
    let mut tmp = NamedTempFile::new_in(scratch).ctx("create temp file in", scratch)?;
    tmp.write_all(data).ctx("write temp file", tmp.path())?;
    tmp.as_file()
        .sync_all()
        .ctx("fsync temp file", tmp.path())?;
    tmp.persist(dest)
        .map_err(|e| e.error)
        .ctx("replace", dest)?;
    sync_dir(dir)
}
