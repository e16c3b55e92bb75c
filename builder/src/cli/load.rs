//! `strata load -i FILE`: import a docker-archive or OCI archive tarball,
//! verifying every blob and every layer's diff ID.

use std::path::PathBuf;
use std::process::ExitCode;

use cache::platform::Platform;
use cache::transport::load_archive;
use clap::Args;

use super::GlobalOpts;
use super::images::open_store;

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The tarball to read.
    #[arg(short, long, value_name = "FILE")]
    pub input: PathBuf,
    /// Which platform to take from multi-platform images.
    #[arg(long)]
    pub platform: Option<Platform>,
    /// Print nothing.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(g: &GlobalOpts, args: LoadArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(g)?;
    let platform = args.platform.clone().unwrap_or_else(Platform::host);
    let loaded = load_archive(&store, &args.input, &platform)?;
    if !args.quiet {
        for l in &loaded {
            if l.names.is_empty() {
                println!("Loaded image ID: {}", l.image.id());
            }
            for n in &l.names {
                println!("Loaded image: {}", n.familiar());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
