//! `strata pull REF`: copy an image from a registry into the local store and
//! tag it, as `docker pull` does. Every blob is verified; the tag is written
//! last, so an interrupted pull never leaves a name pointing at a partial
//! image.

use std::process::ExitCode;

use anyhow::Context as _;
use cache::platform::Platform;
use cache::reference::Reference;
use cache::store::Store;
use cache::transport::registry::{PullEvent, pull_with_progress};
use clap::Args;

use super::GlobalOpts;

/// Environment the registry client reads (shown under `--help`).
pub(super) const ENV_HELP: &str = "Environment:
  DOCKER_CONFIG               directory of the config.json with registry logins (default ~/.docker)
  STRATA_INSECURE_REGISTRIES  comma-separated hosts to reach over plain HTTP
  STRATA_REGISTRY_MIRROR      Docker Hub pull mirror, e.g. https://mirror.example:5000
Loopback registries (localhost, 127.0.0.0/8, ::1) always use plain HTTP.";

#[derive(Debug, Args)]
#[command(after_help = ENV_HELP)]
pub struct PullArgs {
    /// The image to pull: `busybox`, `127.0.0.1:5000/library/debian:bookworm-slim`,
    /// `name@sha256:…`.
    #[arg(value_name = "REF")]
    pub reference: String,
    /// The platform to pick from a multi-platform image (default linux/amd64).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Speak plain HTTP to this registry host (repeatable; also
    /// STRATA_INSECURE_REGISTRIES). Loopback hosts always use HTTP.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registry: Vec<String>,
    /// Print only the digest.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(g: &GlobalOpts, args: PullArgs) -> anyhow::Result<ExitCode> {
    let reference = Reference::parse(&args.reference)?;
    let platform = match &args.platform {
        Some(p) => p.parse::<Platform>()?,
        None => Platform::default(),
    };
    let client = crate::registry_client(&args.insecure_registry)?;
    let store = Store::open(g.root()?)?;
    let quiet = args.quiet;
    // One line per event on stderr: readable in CI logs, no terminal tricks.
    let progress = move |ev: PullEvent| {
        if quiet {
            return;
        }
        match ev {
            PullEvent::Resolved {
                manifest,
                layers,
                bytes,
            } => {
                eprintln!("{manifest}: {layers} layer(s), {}", mb(bytes))
            }
            PullEvent::LayerPresent(d) => eprintln!("{}: already present", short(&d)),
            PullEvent::LayerStarted { digest, size } => {
                eprintln!("{}: downloading {}", short(&digest), mb(size))
            }
            PullEvent::LayerDone(d) => eprintln!("{}: verified and stored", short(&d)),
        }
    };
    let report = pull_with_progress(&client, &store, &reference, &platform, &progress)
        .with_context(|| format!("pulling {reference}"))?;
    if args.quiet {
        println!("{}", report.digest);
    } else {
        eprintln!(
            "{}: {} layer(s) downloaded, {} already present",
            reference.familiar(),
            report.downloaded.len(),
            report.present.len()
        );
        println!("Digest: {}", report.digest);
        if report.tagged {
            println!("{}", reference.familiar());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The first 12 hex digits, as Docker shows layer IDs.
fn short(d: &cache::digest::Digest) -> &str {
    &d.hex()[..12]
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
