//! `strata push`.

use std::process::ExitCode;

use clap::Args;

use super::{GlobalOpts, not_yet::not_supported};

#[derive(Debug, Args)]
pub struct PushArgs {}

pub fn run(_g: &GlobalOpts, _args: PushArgs) -> anyhow::Result<ExitCode> {
    Err(not_supported("strata push"))
}
