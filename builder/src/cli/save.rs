//! `strata save`.

use std::process::ExitCode;

use clap::Args;

use super::{GlobalOpts, not_yet::not_supported};

#[derive(Debug, Args)]
pub struct SaveArgs {}

pub fn run(_g: &GlobalOpts, _args: SaveArgs) -> anyhow::Result<ExitCode> {
    Err(not_supported("strata save"))
}
