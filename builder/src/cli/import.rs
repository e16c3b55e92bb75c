//! `strata import ROOTFS.tar [NAME]`: a one-layer image from a root
//! filesystem tarball, as `docker import` makes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cache::image::ManifestFormat;
use cache::platform::Platform;
use cache::reference::Reference;
use cache::transport::{RootfsImport, import_rootfs};
use clap::Args;

use super::GlobalOpts;
use super::images::open_store;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The tarball (plain, gzip or zstd).
    pub file: PathBuf,
    /// The name to give the image (`app:base`).
    pub name: Option<String>,
    /// A comment for the image history.
    #[arg(short, long)]
    pub message: Option<String>,
    /// The platform to record (default: this machine's).
    #[arg(long)]
    pub platform: Option<Platform>,
    /// Use Docker media types instead of OCI ones.
    #[arg(long)]
    pub docker_format: bool,
}

pub fn run(g: &GlobalOpts, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let name = args
        .name
        .as_deref()
        .map(|n| Reference::parse(n).with_context(|| format!("{n:?} is not a valid image name")))
        .transpose()?;
    let store = open_store(g)?;
    let opts = RootfsImport {
        platform: args.platform.clone(),
        message: args.message.clone(),
        format: if args.docker_format {
            ManifestFormat::Docker
        } else {
            ManifestFormat::Oci
        },
    };
    let image = import_rootfs(&store, &args.file, &opts)?;
    if let Some(n) = &name {
        store.tag_image(n, &image.manifest_digest)?;
    }
    println!("{}", image.id());
    Ok(ExitCode::SUCCESS)
}
