//! `strata push REF [DEST]`: send an image from the local store to a
//! registry, under its own name or another. Manifests go byte for byte, so
//! the registry's digest is the local one — except for an image with layers
//! built here, kept as directories: it goes over their gzip blobs (made
//! while they upload, then remembered), under the manifest that names those.

use std::process::ExitCode;

use anyhow::Context as _;
use cache::reference::Reference;
use cache::store::Store;
use cache::transport::registry::{BlobPushed, push};
use clap::Args;

use super::GlobalOpts;
use super::pull::ENV_HELP;
use crate::ops::exec::Executor;
use crate::output::encode::{self, Want};
use crate::output::push::Target;

#[derive(Debug, Args)]
#[command(after_help = ENV_HELP)]
pub struct PushArgs {
    /// The local image to push.
    #[arg(value_name = "REF")]
    pub source: String,
    /// Where to push it (default: REF itself).
    #[arg(value_name = "DEST")]
    pub dest: Option<String>,
    /// Speak plain HTTP to this registry host (repeatable; also
    /// STRATA_INSECURE_REGISTRIES). Loopback hosts always use HTTP.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registry: Vec<String>,
    /// Print only the digest.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(g: &GlobalOpts, args: PushArgs) -> anyhow::Result<ExitCode> {
    let source = Reference::parse(&args.source)?;
    let dest = match &args.dest {
        Some(d) => Reference::parse(d)?,
        None => source.clone(),
    };
    // One client for the push and for any base layer fetched to be
    // re-encoded, so both honour the flag and tokens are fetched once.
    let registry = std::sync::Arc::new(crate::Registry::new(&args.insecure_registry));
    let client = registry.client()?;
    let store = Store::open(g.root()?)?;
    let (report, streamed) = match with_dir_layers(&store, &source)? {
        Some((img, layers)) => {
            let mut executor = Executor::new(
                &store,
                Default::default(),
                Default::default(),
                Default::default(),
                0,
            );
            executor.registry = registry.clone();
            let to = Target {
                source: &source,
                dest: &dest,
            };
            let p = crate::output::push::push(
                &store,
                &executor,
                client,
                &img,
                &layers,
                Want::Gzip,
                to,
            )?;
            (p.report, p.streamed)
        }
        None => (
            push(client, &store, &source, &dest)
                .with_context(|| format!("pushing {source} to {dest}"))?,
            0,
        ),
    };
    let digest = report
        .digest
        .as_ref()
        .context("the push finished without a manifest digest")?;
    if args.quiet {
        println!("{digest}");
        return Ok(ExitCode::SUCCESS);
    }
    let count = |k: BlobPushed| report.blobs.iter().filter(|(_, h)| *h == k).count();
    eprintln!(
        "{}: {} blob(s) uploaded ({streamed} compressed while uploading), {} mounted, {} already there",
        dest.familiar(),
        count(BlobPushed::Monolithic) + count(BlobPushed::Chunked),
        count(BlobPushed::Mounted),
        count(BlobPushed::Existed)
    );
    println!("Digest: {digest}");
    Ok(ExitCode::SUCCESS)
}

/// The image `source` names and its layers, when some of them were built
/// here and are kept as directories: those are compressed into their
/// uploads (and remembered), so a registry gets compressed layers.
fn with_dir_layers(
    store: &Store,
    source: &Reference,
) -> anyhow::Result<Option<(cache::image::Image, Vec<crate::ops::Layer>)>> {
    let Some(img) = store.resolve_image(source)? else {
        return Ok(None);
    };
    let layers = encode::layers_of(&img);
    if !layers
        .iter()
        .any(|l| crate::ops::commit::is_dir_layer(store, l))
    {
        return Ok(None);
    }
    Ok(Some((img, layers)))
}
