//! `strata parse`.

use std::process::ExitCode;

use clap::Args;

use super::{GlobalOpts, not_yet::not_supported};

#[derive(Debug, Args)]
pub struct ParseArgs {}

pub fn run(_g: &GlobalOpts, _args: ParseArgs) -> anyhow::Result<ExitCode> {
    Err(not_supported("strata parse"))
}
