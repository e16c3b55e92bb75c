//! `strata tag SOURCE TARGET`: give a local image another name.

use std::process::ExitCode;

use anyhow::Context;
use cache::platform::Platform;
use cache::reference::Reference;
use clap::Args;

use super::GlobalOpts;
use super::images::{find_image, open_store};

#[derive(Debug, Args)]
pub struct TagArgs {
    /// The image: a name (`busybox`, `app:1`) or an image ID.
    pub source: String,
    /// The new name (`app:2`, `registry.example/app:latest`).
    pub target: String,
}

pub fn run(g: &GlobalOpts, args: TagArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(g)?;
    let target = Reference::parse(&args.target)
        .with_context(|| format!("the new name {:?} is not a valid image name", args.target))?;
    if target.digest().is_some() {
        anyhow::bail!(
            "the new name {} has a digest; a name in the store is name:tag",
            args.target
        );
    }
    let found = find_image(&store, &args.source, &Platform::host())?;
    store.tag_image(&target, &found.top)?;
    Ok(ExitCode::SUCCESS)
}
