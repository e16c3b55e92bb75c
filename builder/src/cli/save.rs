//! `strata save -o FILE REF...`: write images to a tarball `docker load`
//! (classic and containerd stores) and `podman load` accept, or to an OCI
//! layout (tar or directory).

use std::path::PathBuf;
use std::process::ExitCode;

use cache::platform::Platform;
use cache::transport::oci_layout;
use cache::transport::{SaveItem, docker_archive};
use clap::{Args, ValueEnum};

use super::GlobalOpts;
use super::images::{find_image, open_store};
use crate::ops::commit::DirLayers;
use crate::ops::exec::Executor;
use crate::output::encode::{self, Want};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaveFormat {
    /// A tar with manifest.json and an OCI layout: loads with docker and podman.
    DockerArchive,
    /// An OCI image layout in a tar.
    OciArchive,
    /// An OCI image layout directory (created or added to).
    OciDir,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Where to write: a file (archives) or a directory (oci-dir).
    #[arg(short, long, value_name = "PATH")]
    pub output: PathBuf,
    /// The output format.
    #[arg(long, value_enum, default_value = "docker-archive")]
    pub format: SaveFormat,
    /// Which platform to save from multi-platform images.
    #[arg(long)]
    pub platform: Option<Platform>,
    /// Images to save: names or image IDs.
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub fn run(g: &GlobalOpts, args: SaveArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(g)?;
    let platform = args.platform.clone().unwrap_or_else(Platform::host);
    let mut items = Vec::new();
    for s in &args.images {
        let found = find_image(&store, s, &platform)?;
        items.push(SaveItem {
            name: found.name.map(|n| n.without_digest()),
            image: found.image,
        });
    }
    // Layers built here are kept as directories: a docker-archive streams
    // them uncompressed, as `docker save` writes layers; an OCI layout gets
    // them gzip-compressed (made once and remembered).
    let executor = Executor::new(
        &store,
        Default::default(),
        Default::default(),
        Default::default(),
        0,
    );
    let made = DirLayers {
        store: &store,
        executor: &executor,
    };
    if args.format != SaveFormat::DockerArchive {
        for it in &mut items {
            let layers = encode::layers_of(&it.image);
            it.image = encode::encode(&store, &executor, &it.image, &layers, Want::Gzip, true)?;
        }
    }
    match args.format {
        SaveFormat::DockerArchive => {
            docker_archive::save_with(&store, &items, &args.output, &made)?
        }
        SaveFormat::OciArchive => oci_layout::export_tar(&store, &items, &args.output)?,
        SaveFormat::OciDir => oci_layout::export_dir(&store, &items, &args.output)?,
    }
    Ok(ExitCode::SUCCESS)
}
