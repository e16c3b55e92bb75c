//! `--load`: the image loaded into the container engine on PATH, as buildx
//! loads into its daemon. Docker first when a `docker` is on PATH (what
//! buildx users expect), then podman: a CI image often carries a docker CLI
//! whose daemon is not there, so an engine that refuses the load hands it
//! to the next one, and only when every engine refused does the build fail,
//! naming each engine's reason. The engines read a docker-archive that is
//! written to the store's scratch directory first, so a failed export never
//! feeds one half an archive.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, anyhow, bail};
use cache::image::Image;
use cache::reference::Reference;
use cache::store::Store;
use cache::transport::SaveItem;

/// Each of `names` found as an executable file on `PATH` (the first such
/// file of each), in the order of `names`.
fn find_on_path(names: &[&str]) -> Vec<PathBuf> {
    let Some(path) = std::env::var_os("PATH") else {
        return Vec::new();
    };
    names
        .iter()
        .filter_map(|n| {
            std::env::split_paths(&path)
                .map(|d| d.join(n))
                .find(|p| p.is_file())
        })
        .collect()
}

/// Loads `img` (named `names`) into docker or, when docker is missing or
/// refuses, podman. Returns the engine that took it.
pub fn into_engine(
    store: &Store,
    executor: &crate::ops::exec::Executor,
    img: &Image,
    names: &[Reference],
) -> anyhow::Result<PathBuf> {
    let engines = find_on_path(&["docker", "podman"]);
    if engines.is_empty() {
        bail!(
            "--load: neither docker nor podman is on PATH; install one, or write an archive with -o type=docker,dest=image.tar and load it where you need it"
        );
    }
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
    let mut refusals = Vec::new();
    for engine in engines {
        match load_archive(&engine, &archive) {
            Ok(()) => return Ok(engine),
            Err(why) => refusals.push(format!("`{} load` failed: {why}", engine.display())),
        }
    }
    Err(anyhow!(
        "--load: {}; start the engine's daemon or service, or write an archive with -o type=docker,dest=image.tar and load it where you need it",
        refusals.join("; ")
    ))
}

/// `ENGINE load -i ARCHIVE`; what the engine said when it refused.
fn load_archive(engine: &Path, archive: &Path) -> Result<(), String> {
    let out = Command::new(engine)
        .arg("load")
        .arg("-i")
        .arg(archive)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run it: {}", crate::io_reason(&e)))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}
