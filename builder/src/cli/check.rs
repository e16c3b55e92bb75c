//! `strata check`.

use std::process::ExitCode;

use clap::Args;

use super::{GlobalOpts, not_yet::not_supported};

#[derive(Debug, Args)]
pub struct CheckArgs {}

pub fn run(_g: &GlobalOpts, _args: CheckArgs) -> anyhow::Result<ExitCode> {
    Err(not_supported("strata check"))
}
