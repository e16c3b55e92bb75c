//! Options every verb accepts.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct GlobalOpts {
    /// The store directory (default: $XDG_DATA_HOME/strata, else ~/.local/share/strata).
    #[arg(long, global = true, env = "STRATA_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Say more about what happens (for example which snapshotter was chosen and why).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl GlobalOpts {
    /// The store root: `--root`, `STRATA_ROOT`, `$XDG_DATA_HOME/strata` or
    /// `~/.local/share/strata`, in that order.
    pub fn root(&self) -> anyhow::Result<PathBuf> {
        if let Some(r) = &self.root {
            return Ok(r.clone());
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(x).join("strata"));
        }
        match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(h) => Ok(PathBuf::from(h).join(".local/share/strata")),
            None => anyhow::bail!(
                "cannot find a place for the store: HOME is not set; pass --root DIR or set STRATA_ROOT"
            ),
        }
    }
}
