//! `--load`: the image loaded into the container engine on PATH, as buildx
//! loads into its daemon. Docker when a `docker` is on PATH (what buildx
//! users expect), else podman; the engine reads a docker-archive that is
//! written to the store's scratch directory first, so a failed export never
//! feeds it half an archive.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context as _, anyhow, bail};
use cache::image::Image;
use cache::reference::Reference;
use cache::store::Store;
use cache::transport::SaveItem;

/// The first of `names` found as an executable file on `PATH`.
fn find_on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

/// Loads `img` (named `names`) into docker or podman.
pub fn into_engine(
    store: &Store,
    executor: &crate::ops::exec::Executor,
    img: &Image,
    names: &[Reference],
) -> anyhow::Result<()> {
    let engine = find_on_path(&["docker", "podman"]).ok_or_else(|| {
        anyhow!(
            "--load: neither docker nor podman is on PATH; install one, or write an archive with -o type=docker,dest=image.tar and load it where you need it"
        )
    })?;
    let items: Vec<SaveItem> = if names.is_empty() {
        vec![SaveItem {
            name: None,
            image: img.clone(),
        }]
    } else {
        names
            .iter()
            .map(|r| SaveItem {
                name: Some(r.clone()),
                image: img.clone(),
            })
            .collect()
    };
    let scratch = tempfile::Builder::new()
        .prefix("load-")
        .tempdir_in(store.scratch_dir())
        .context("--load: making a scratch directory")?;
    let archive = scratch.path().join("image.tar");
    // Layers built here are directories: their tars are streamed from them.
    let made = crate::ops::commit::DirLayers { store, executor };
    cache::transport::docker_archive::save_with(store, &items, &archive, &made)
        .context("--load: writing the docker archive")?;
    let out = Command::new(&engine)
        .arg("load")
        .arg("-i")
        .arg(&archive)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("--load: running {}", engine.display()))?;
    if !out.status.success() {
        bail!(
            "--load: `{} load` failed: {}",
            engine.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
