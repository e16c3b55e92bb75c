//! `strata build`.

use std::process::ExitCode;

use clap::Args;

use super::{GlobalOpts, not_yet::not_supported};

#[derive(Debug, Args)]
pub struct BuildArgs {}

pub fn run(_g: &GlobalOpts, _args: BuildArgs) -> anyhow::Result<ExitCode> {
    Err(not_supported("strata build"))
}
