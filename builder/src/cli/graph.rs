//! `strata graph`.

use std::process::ExitCode;

use clap::Args;

use super::{GlobalOpts, not_yet::not_supported};

#[derive(Debug, Args)]
pub struct GraphArgs {}

pub fn run(_g: &GlobalOpts, _args: GraphArgs) -> anyhow::Result<ExitCode> {
    Err(not_supported("strata graph"))
}
