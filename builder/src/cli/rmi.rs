//! `strata rmi REF...`: remove names from the local store. The blobs stay
//! until `strata prune`, as with Docker's content store.

use std::process::ExitCode;

use cache::platform::Platform;
use cache::reference::Reference;
use clap::Args;

use super::GlobalOpts;
use super::images::{find_image, open_store};

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Names (`busybox`, `app:1`) or image IDs to remove.
    #[arg(required = true)]
    pub images: Vec<String>,
    /// With an image ID that has several names, remove all of them.
    #[arg(short, long)]
    pub force: bool,
}

pub fn run(g: &GlobalOpts, args: RmiArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(g)?;
    let mut failed = false;
    for s in &args.images {
        if let Err(e) = remove_one(&store, s, args.force) {
            eprintln!("error: {}", crate::error_text(&e));
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn remove_one(store: &cache::store::Store, s: &str, force: bool) -> anyhow::Result<()> {
    // A name first: `rmi busybox` removes exactly that name.
    if let Ok(r) = Reference::parse(s)
        && r.digest().is_none()
        && store.tags().remove(&r)?
    {
        println!("Untagged: {}", r.familiar());
        return Ok(());
    }
    let found = find_image(store, s, &Platform::host())?;
    let id = found.image.id().clone();
    let names: Vec<Reference> = store
        .tags()
        .list()?
        .into_iter()
        .filter(|t| {
            t.manifest == found.top
                || store
                    .image(&t.manifest, &Platform::host())
                    .is_ok_and(|i| i.id() == &id)
        })
        .filter_map(|t| t.reference().ok())
        .collect();
    if names.len() > 1 && !force {
        let list: Vec<String> = names.iter().map(|n| n.familiar()).collect();
        anyhow::bail!(
            "image {s} has several names ({}); remove them by name or pass --force",
            list.join(", ")
        );
    }
    if names.is_empty() {
        anyhow::bail!("no image {s} in the store");
    }
    for n in names {
        store.tags().remove(&n)?;
        println!("Untagged: {}", n.familiar());
    }
    Ok(())
}
