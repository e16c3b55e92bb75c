//! `strata tag`.

use std::process::ExitCode;

use clap::Args;

use super::{GlobalOpts, not_yet::not_supported};

#[derive(Debug, Args)]
pub struct TagArgs {}

pub fn run(_g: &GlobalOpts, _args: TagArgs) -> anyhow::Result<ExitCode> {
    Err(not_supported("strata tag"))
}
