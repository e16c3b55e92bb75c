//! `strata store`.

use std::process::ExitCode;

use clap::Args;

use super::{GlobalOpts, not_yet::not_supported};

#[derive(Debug, Args)]
pub struct StoreArgs {}

pub fn run(_g: &GlobalOpts, _args: StoreArgs) -> anyhow::Result<ExitCode> {
    Err(not_supported("strata store"))
}
