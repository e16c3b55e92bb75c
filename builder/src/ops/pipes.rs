//! RUN heredoc scripts that carry their own interpreter (`RUN <<EOF` with
//! a `#!` line): the frontend makes the command the script's path under
//! `/dev/pipes`, as BuildKit does, and the file has to be there when the
//! step starts.
//!
//! The scripts are written to a scratch directory of the store and
//! bind-mounted read-only at `/dev/pipes`: outside every snapshot, so
//! nothing of them reaches the step's layer, and gone after the step.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context as _;
use cache::store::Store;
use runtime::sandbox::run_mounts::{BindFrom, BindMount, RunMount};

/// Where the scripts appear inside the step.
const PIPES_DIR: &str = "/dev/pipes";

/// The scripts of one RUN on disk; removed when dropped.
pub struct Pipes(tempfile::TempDir);

impl Pipes {
    /// Writes `files` (absolute paths directly under `/dev/pipes`) into a
    /// fresh scratch directory; `None` when there are none.
    pub fn write(store: &Store, files: &[frontend::InlineFile]) -> anyhow::Result<Option<Pipes>> {
        if files.is_empty() {
            return Ok(None);
        }
        let dir = tempfile::Builder::new()
            .prefix("pipes-")
            .tempdir_in(store.scratch_dir())
            .context("creating the directory of the RUN's heredoc scripts")?;
        // Readable by whichever USER the step runs as.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .context("opening the heredoc script directory to the step's user")?;
        for f in files {
            let name = Path::new(&f.path)
                .strip_prefix(PIPES_DIR)
                .ok()
                .filter(|n| n.components().count() == 1)
                .ok_or_else(|| {
                    crate::not_supported(&format!(
                        "a RUN heredoc script at {} (only directly under {PIPES_DIR})",
                        f.path
                    ))
                })?;
            let path = dir.path().join(name);
            std::fs::write(&path, &f.content)
                .and_then(|()| {
                    std::fs::set_permissions(
                        &path,
                        std::fs::Permissions::from_mode(f.mode & 0o7777),
                    )
                })
                .with_context(|| format!("writing the heredoc script {}", f.path))?;
        }
        Ok(Some(Pipes(dir)))
    }

    /// The read-only bind mount that shows the scripts to the step.
    pub fn mount(&self) -> RunMount {
        RunMount::Bind(BindMount {
            from: BindFrom::Dir(self.0.path().to_path_buf()),
            source: None,
            target: PIPES_DIR.into(),
            readwrite: false,
        })
    }
}
