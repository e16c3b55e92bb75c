//! `strata pull`.

use std::process::ExitCode;

use clap::Args;

use super::{GlobalOpts, not_yet::not_supported};

#[derive(Debug, Args)]
pub struct PullArgs {}

pub fn run(_g: &GlobalOpts, _args: PullArgs) -> anyhow::Result<ExitCode> {
    Err(not_supported("strata pull"))
}
