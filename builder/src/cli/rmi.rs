//! `strata rmi`.

use std::process::ExitCode;

use clap::Args;

use super::{GlobalOpts, not_yet::not_supported};

#[derive(Debug, Args)]
pub struct RmiArgs {}

pub fn run(_g: &GlobalOpts, _args: RmiArgs) -> anyhow::Result<ExitCode> {
    Err(not_supported("strata rmi"))
}
