//! Pushing an image with layers built here: a layer kept as a directory
//! with no blob in the wanted encoding yet is encoded (tar, then gzip or
//! zstd) straight into its upload, hashed on the way, instead of being
//! written to a temp blob first and read back. The same bytes go into the
//! store once (a tee) and the encoding is remembered, so the next push or
//! export costs nothing. Layers go a few at a time, as many encoding at
//! once as fit a memory budget (`encode::Budget`); a layer whose blob
//! exists already (a base layer, or one encoded before) goes through the
//! ordinary push, which skips what the registry has or can mount.

use anyhow::{Context as _, anyhow};
use cache::digest::Digest;
use cache::image::{Descriptor, Image};
use cache::reference::Reference;
use cache::store::Store;
use cache::transport::registry::parallel::{TRANSFER_WORKERS, for_each_bounded};
use cache::transport::registry::pull::repo_of;
use cache::transport::registry::{BlobPushed, PushReport, RegistryClient, RegistryError};

use super::encode::{self, Want};
use crate::ops::Layer;
use crate::ops::exec::Executor;

/// What [`push`] did.
pub struct Pushed {
    /// The image as pushed (over its encoded layers).
    pub image: Image,
    /// Every blob and how it got there; layers encoded into their upload
    /// count as uploaded.
    pub report: PushReport,
    /// How many layers were compressed while they uploaded.
    pub streamed: usize,
}

/// Where a push goes and what it is called locally.
pub struct Target<'a> {
    /// The local name: a repository on the destination's registry under
    /// it is one to mount blobs from.
    pub source: &'a Reference,
    pub dest: &'a Reference,
}

/// Pushes `img` (whose layers are `layers`) in the encoding `want`,
/// encoding the layers that need it into their uploads.
pub fn push(
    store: &Store,
    executor: &Executor,
    client: &RegistryClient,
    img: &Image,
    layers: &[Layer],
    want: Want,
    to: Target<'_>,
) -> anyhow::Result<Pushed> {
    let dest = to.dest;
    let Some((codec, flavor, format)) = encode::params(want) else {
        return push_stored(store, client, img.clone(), to, Vec::new());
    };
    let repo = repo_of(dest);
    let budget = encode::Budget::new();
    let done = for_each_bounded(layers, TRANSFER_WORKERS, |l| {
        if encode::keeps(store, l, codec, true) {
            return Ok((l.desc.clone(), None));
        }
        let found = encode::remembered(store, l, codec, flavor).map_err(other)?;
        if let Some(d) = found {
            return Ok((d, None));
        }
        let share = budget.take(l);
        let (d, how) = client
            .upload_while_made(&repo, |up| {
                let d = encode::encode_now(store, executor, l, codec, flavor, up)?;
                let digest = d.digest.clone();
                Ok::<_, anyhow::Error>((d, digest))
            })
            .map_err(other)?;
        drop(share);
        // A broken upload leaves the blob in the store: the ordinary push
        // below sends it again (with restarts).
        let digest = d.digest.clone();
        Ok((d, how.ok().map(|h| (digest, h))))
    })
    .with_context(|| format!("pushing to {}", dest.familiar()))?;
    let descs: Vec<Descriptor> = done.iter().map(|(d, _)| d.clone()).collect();
    let streamed = done.into_iter().filter_map(|(_, s)| s).collect();
    let image = if descs.iter().zip(layers).all(|(d, l)| *d == l.desc) {
        img.clone()
    } else {
        encode::image_over(store, img, &descs, format)?
    };
    push_stored(store, client, image, to, streamed)
}

fn other(e: anyhow::Error) -> RegistryError {
    RegistryError::Other(format!("{e:#}"))
}

/// The ordinary push of an image whose blobs are all in the store (or
/// known to the registry), by digest; `streamed` blobs were uploaded while
/// they were made and are reported so.
fn push_stored(
    store: &Store,
    client: &RegistryClient,
    image: Image,
    to: Target<'_>,
    streamed: Vec<(Digest, BlobPushed)>,
) -> anyhow::Result<Pushed> {
    let dest = to.dest;
    let source = to.source.with_digest(image.manifest_digest.clone());
    let streamed_count = streamed.len();
    let mut report = cache::transport::registry::push(client, store, &source, dest)
        .with_context(|| format!("pushing {}", dest.familiar()))?;
    for (digest, how) in &mut report.blobs {
        if let Some((_, h)) = streamed.iter().find(|(d, _)| d == digest) {
            *how = *h;
        }
    }
    if report.digest.is_none() {
        return Err(anyhow!("the push finished without a manifest digest"));
    }
    Ok(Pushed {
        image,
        report,
        streamed: streamed_count,
    })
}
