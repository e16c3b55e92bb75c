//! `strata du`.

use std::process::ExitCode;

use clap::Args;

use super::{GlobalOpts, not_yet::not_supported};

#[derive(Debug, Args)]
pub struct DuArgs {}

pub fn run(_g: &GlobalOpts, _args: DuArgs) -> anyhow::Result<ExitCode> {
    Err(not_supported("strata du"))
}
