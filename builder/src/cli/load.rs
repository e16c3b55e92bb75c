//! `strata load`.

use std::process::ExitCode;

use clap::Args;

use super::{GlobalOpts, not_yet::not_supported};

#[derive(Debug, Args)]
pub struct LoadArgs {}

pub fn run(_g: &GlobalOpts, _args: LoadArgs) -> anyhow::Result<ExitCode> {
    Err(not_supported("strata load"))
}
