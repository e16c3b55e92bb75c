//! `dest=-`: a tarball written to standard output.
//!
//! The archive writers produce a file atomically (temp name, then rename),
//! so a half-written tarball never looks finished; for standard output the
//! tarball is written to the store's scratch directory the same way and then
//! streamed out, so a failed build writes nothing to the pipe.

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;

use anyhow::{Context as _, bail};
use cache::store::Store;

/// Runs `write` on `dest`, or on a scratch file copied to standard output
/// when `dest` is `-`.
pub fn or_file(
    store: &Store,
    dest: Option<&Path>,
    write: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dest = super::file_dest(dest)?;
    if dest != Path::new("-") {
        return write(dest);
    }
    let mut out = std::io::stdout().lock();
    if out.is_terminal() {
        bail!(
            "--output dest=-: standard output is a terminal; redirect it (> image.tar) or give dest=FILE"
        );
    }
    let scratch = tempfile::Builder::new()
        .prefix("stdout-")
        .tempdir_in(store.scratch_dir())
        .context("making a scratch directory for dest=-")?;
    let file = scratch.path().join("out.tar");
    write(&file)?;
    let mut f =
        std::fs::File::open(&file).with_context(|| format!("reading {}", file.display()))?;
    std::io::copy(&mut f, &mut out).context("--output dest=-: writing to standard output")?;
    out.flush()
        .context("--output dest=-: writing to standard output")?;
    Ok(())
}
