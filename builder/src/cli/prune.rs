//! `strata prune`.

use std::process::ExitCode;

use clap::Args;

use super::{GlobalOpts, not_yet::not_supported};

#[derive(Debug, Args)]
pub struct PruneArgs {}

pub fn run(_g: &GlobalOpts, _args: PruneArgs) -> anyhow::Result<ExitCode> {
    Err(not_supported("strata prune"))
}
