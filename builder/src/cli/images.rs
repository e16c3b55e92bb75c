//! `strata images`.

use std::process::ExitCode;

use clap::Args;

use super::{GlobalOpts, not_yet::not_supported};

#[derive(Debug, Args)]
pub struct ImagesArgs {}

pub fn run(_g: &GlobalOpts, _args: ImagesArgs) -> anyhow::Result<ExitCode> {
    Err(not_supported("strata images"))
}
