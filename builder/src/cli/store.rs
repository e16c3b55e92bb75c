//! `strata store …`: inspect the store itself.

use std::process::ExitCode;

use cache::gc::verify;
use clap::{Args, Subcommand};

use super::GlobalOpts;
use super::images::{human_size, open_store};

#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Re-hash every blob and check that every name and cache entry points
    /// to content that is there; exit 1 if anything is wrong.
    Verify,
    /// Print the store's root directory.
    Path,
}

pub fn run(g: &GlobalOpts, args: StoreArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        StoreCommand::Path => {
            println!("{}", g.root()?.display());
            Ok(ExitCode::SUCCESS)
        }
        StoreCommand::Verify => {
            let store = open_store(g)?;
            let report = verify(&store)?;
            for p in &report.problems {
                println!("{p}");
            }
            println!(
                "checked {} blobs ({}): {}",
                report.blobs_checked,
                human_size(report.bytes_checked),
                if report.is_clean() {
                    "all intact".to_string()
                } else {
                    format!("{} problems", report.problems.len())
                }
            );
            Ok(if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
