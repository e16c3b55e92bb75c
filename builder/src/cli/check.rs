//! `strata check`: parse and lower a Dockerfile without building it, and
//! report what is wrong (exit 1) or suspicious (warnings, exit 0).
//!
//! Base images are not contacted (see `strata graph`), so only what the
//! Dockerfile itself says is checked.

use std::process::ExitCode;

use clap::Args;

use super::GlobalOpts;
use super::graph::{DockerfileArgs, lower};

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub dockerfile: DockerfileArgs,
}

pub fn run(_g: &GlobalOpts, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let graph = lower(&args.dockerfile)?;
    for w in &graph.warnings {
        eprintln!("{w}");
    }
    let steps: usize = graph.stages.iter().map(|s| s.steps.len()).sum();
    eprintln!(
        "ok: {} stage(s), {steps} step(s), {} warning(s)",
        graph.stages.len(),
        graph.warnings.len()
    );
    Ok(ExitCode::SUCCESS)
}
