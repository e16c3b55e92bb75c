//! `strata build -`: as with `docker build -`, standard input is either a
//! tar of the context (plain or compressed) or a lone Dockerfile with an
//! empty context. It is spooled to a scratch file first, because telling the
//! two apart needs its first bytes and unpacking needs all of them.

use std::path::PathBuf;

use anyhow::{Context as _, bail};

/// What standard input held, unpacked under one scratch directory.
pub struct StdinContext {
    pub dir: tempfile::TempDir,
    pub context: PathBuf,
    /// The Dockerfile when stdin was one; `None` when it was a context tar.
    pub dockerfile: Option<PathBuf>,
}

/// Reads standard input into a new directory under `$TMPDIR` (not the
/// store's scratch space: opening the store sweeps what it does not know).
pub fn read() -> anyhow::Result<StdinContext> {
    let dir = tempfile::Builder::new()
        .prefix("strata-stdin-")
        .tempdir()
        .context("making a directory for the context read from standard input")?;
    let spool = dir.path().join("stdin");
    let mut f = std::fs::File::create(&spool)?;
    std::io::copy(&mut std::io::stdin().lock(), &mut f)
        .context("reading the build context from standard input")?;
    drop(f);
    let context = dir.path().join("context");
    std::fs::create_dir(&context)?;
    let dockerfile = match crate::ops::archive::open_tar(&spool)? {
        Some(tar) => {
            let opts = cache::layer::UnpackOptions {
                whiteouts: cache::layer::WhiteoutMode::Apply,
                ownership: cache::layer::OwnershipMode::Record,
            };
            cache::layer::unpack(tar, &context, &opts)
                .context("unpacking the context tar read from standard input")?;
            None
        }
        None => {
            let text = std::fs::read(&spool)?;
            if text.iter().all(u8::is_ascii_whitespace) {
                bail!(
                    "build -: standard input is empty; pipe a Dockerfile or a tar of the context into it"
                );
            }
            let df = dir.path().join("Dockerfile");
            std::fs::rename(&spool, &df)?;
            Some(df)
        }
    };
    let _ = std::fs::remove_file(&spool);
    Ok(StdinContext {
        dir,
        context,
        dockerfile,
    })
}
