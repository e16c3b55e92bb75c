//! Blobs on demand: the one way a consumer that needs a blob's bytes (save,
//! export, push, unpacking a layer) gets a blob the store does not hold but
//! has an origin record for ([`crate::origin`]).
//!
//! Every candidate repository is tried in turn — the recorded ones first,
//! then the caller's hint — because a record is only a hint: a registry may
//! have dropped the blob, or a hint may name a local-only tag. The download
//! goes through the store's verified writer like any pull, which drops the
//! record once the blob is here.

use super::client::RegistryClient;
use super::error::{RegistryError, Result};
use super::parallel::{TRANSFER_WORKERS, for_each_bounded};
use super::pull::{fetch_blob, fetch_into_store_teed, repo_of};
use crate::image::{Descriptor, Image};
use crate::reference::Reference;
use crate::store::Store;

/// Makes sure the store holds `desc`'s blob, fetching it from its recorded
/// origins or, failing those, from `hint`'s repository. Returns whether it
/// was downloaded.
pub fn ensure_blob(store: &Store, desc: &Descriptor, hint: Option<&Reference>) -> Result<bool> {
    if store.blobs().has(&desc.digest) {
        return Ok(false);
    }
    let client = RegistryClient::from_env()?;
    ensure_blob_with(&client, store, desc, hint)
}

/// [`ensure_blob`] for every layer of `image` the store lacks, a few at a
/// time. The config and manifest are always in the store.
pub fn ensure_image_blobs(store: &Store, image: &Image) -> Result<()> {
    let missing: Vec<&Descriptor> = image
        .layers()
        .iter()
        .filter(|l| !store.blobs().has(&l.digest))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let client = RegistryClient::from_env()?;
    for_each_bounded(&missing, TRANSFER_WORKERS, |l| {
        ensure_blob_with(&client, store, l, None)
    })?;
    Ok(())
}

/// [`ensure_blob`] with a client the caller already has.
pub fn ensure_blob_with(
    client: &RegistryClient,
    store: &Store,
    desc: &Descriptor,
    hint: Option<&Reference>,
) -> Result<bool> {
    if store.blobs().has(&desc.digest) {
        return Ok(false);
    }
    let candidates = candidates(store, desc, hint)?;
    let mut failures = Vec::new();
    for r in &candidates {
        match fetch_blob(client, store, r, desc) {
            Ok(fetched) => return Ok(fetched),
            Err(e) => failures.push(format!("{r}: {e}")),
        }
    }
    Err(RegistryError::Other(format!(
        "blob {} is not in the local store and could not be fetched from where it came from ({})",
        desc.digest,
        failures.join("; ")
    )))
}

/// Where a blob may be fetched from: the recorded origins, then `hint`.
fn candidates(
    store: &Store,
    desc: &Descriptor,
    hint: Option<&Reference>,
) -> Result<Vec<Reference>> {
    let mut candidates = store
        .origins()
        .get(&desc.digest)?
        .map(|r| r.parsed_references())
        .unwrap_or_default();
    if let Some(h) = hint
        && !candidates.contains(h)
    {
        candidates.push(h.clone());
    }
    if candidates.is_empty() {
        return Err(RegistryError::Other(format!(
            "blob {} is not in the local store and nothing records where to fetch it from; \
             pull or build the image again",
            desc.digest
        )));
    }
    Ok(candidates)
}

/// How a one-pass download ([`fetch_blob_teed`]) ended.
#[derive(Debug)]
pub enum Teed {
    /// Downloaded, verified and stored; the consumer got every byte once.
    Fetched,
    /// The store had the blob already: the consumer got nothing.
    Present,
    /// It failed after bytes reached the consumer, for a reason a second
    /// try may not have (a broken connection, a full disk): the consumer
    /// must discard what it got, and the caller may fetch again the
    /// ordinary way ([`ensure_blob_with`], which retries).
    Broken(RegistryError),
}

/// [`ensure_blob_with`] in one pass that also hands every byte of the blob
/// to `also` as it arrives (a layer unpacked while it downloads), so the
/// blob is read from the network once and never from disk. The blob is
/// kept only once its digest and size matched; a tampered or truncated
/// download is an error (nothing kept), naming the registry and digest.
/// Sources are tried in turn while none of their bytes reached `also`.
pub fn fetch_blob_teed(
    client: &RegistryClient,
    store: &Store,
    desc: &Descriptor,
    hint: Option<&Reference>,
    also: &mut dyn std::io::Write,
) -> Result<Teed> {
    if store.blobs().has(&desc.digest) {
        return Ok(Teed::Present);
    }
    let mut failures = Vec::new();
    for r in &candidates(store, desc, hint)? {
        match fetch_into_store_teed(client, store, &repo_of(r), desc, also) {
            Ok(()) => return Ok(Teed::Fetched),
            Err((e, _)) if e.is_integrity_error() => return Err(e),
            Err((e, 0)) => failures.push(format!("{r}: {e}")),
            Err((e, _)) => return Ok(Teed::Broken(e)),
        }
    }
    Err(RegistryError::Other(format!(
        "blob {} is not in the local store and could not be fetched from where it came from ({})",
        desc.digest,
        failures.join("; ")
    )))
}
