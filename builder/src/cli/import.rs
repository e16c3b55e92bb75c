//! `strata import`.

use std::process::ExitCode;

use clap::Args;

use super::{GlobalOpts, not_yet::not_supported};

#[derive(Debug, Args)]
pub struct ImportArgs {}

pub fn run(_g: &GlobalOpts, _args: ImportArgs) -> anyhow::Result<ExitCode> {
    Err(not_supported("strata import"))
}
