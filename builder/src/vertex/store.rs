//! The solver's cache and events for the build's steps: results in the
//! local store (kept with the blobs and layer directories they need), key
//! locks across processes, `--cache-from` imports, the records of last runs
//! that explain a miss, and progress events.

use std::sync::atomic::Ordering;

use cache::store::Store;

use crate::lock;
use crate::ops::{CachedResult, Layer, commit, source};
use crate::options::BuildRequest;
use crate::pipeline::ctx::{Ctx, FsState, emit};
use crate::pipeline::plan::Vertex;
use crate::progress::EventKind;
use crate::solver::explain::{MissReason, StepRecord, explain};
use crate::solver::solve::{Cache, Events};

/// A usable entry of the local store for `key`: one whose layer blob is
/// here (an unreadable entry counts as none).
pub fn local_hit(store: &Store, key: &str) -> anyhow::Result<Option<CachedResult>> {
    Ok(store
        .cache_get(key)?
        .and_then(|raw| serde_json::from_slice::<CachedResult>(&raw).ok())
        .filter(|hit| hit.layer.as_ref().is_none_or(|l| layer_present(store, l))))
}

/// Whether a layer's bytes are here: its blob, or its directory for a
/// layer built here (whose record is renewed, as `strata prune` may have
/// dropped it while no image named the layer).
fn layer_present(store: &Store, l: &Layer) -> bool {
    if store.blobs().has(&l.desc.digest) {
        return true;
    }
    l.origin.is_none()
        && l.desc.digest == l.diff_id
        && source::layer_dir_ready(&source::layer_dir(store, l))
        && commit::record(store, l).is_ok()
}

/// Whether `--no-cache` or `--no-cache-filter` turns the cache off for a
/// vertex's stage.
pub fn cache_disabled(req: &BuildRequest, v: &Vertex) -> bool {
    req.no_cache
        || v.stage_name
            .as_ref()
            .is_some_and(|n| req.no_cache_filter.contains(n))
        || req.no_cache_filter.contains(&v.stage_id.to_string())
}

/// The blobs a step's cache entry keeps alive: its layer's, when it is a
/// stored blob (a layer built here is kept by its directory instead).
fn stored_blobs(store: &Store, layer: Option<&Layer>) -> Vec<cache::digest::Digest> {
    layer
        .filter(|l| store.blobs().has(&l.desc.digest))
        .map(|l| l.desc.digest.clone())
        .into_iter()
        .collect()
}

/// The unpacked layer directories a step's cache entry keeps alive: those
/// of every layer of the state it leaves, which is what the next step runs
/// on. `strata prune` removes the directories no entry names; one that is
/// not unpacked yet is simply named early.
fn layer_dirs_kept(prev: &FsState, result: &CachedResult) -> Vec<String> {
    prev.layers
        .iter()
        .chain(&result.layer)
        .map(source::layer_dir_name)
        .collect()
}

/// The cache as one step of this build sees it.
pub struct StoreCache<'a> {
    ctx: &'a Ctx<'a>,
    /// The state the step runs on (its entry keeps those layers alive).
    prev: &'a FsState,
    /// The step's place behind this context's and Dockerfile's paths: what
    /// its last local run is recorded under.
    identity: String,
    /// Its place alone: what its record travels under in an exported cache.
    portable: String,
}

impl<'a> StoreCache<'a> {
    pub fn new(ctx: &'a Ctx<'a>, vertex: &Vertex, prev: &'a FsState) -> StoreCache<'a> {
        let portable = vertex.place();
        StoreCache {
            ctx,
            prev,
            identity: format!("{}\0{portable}", ctx.identity_prefix),
            portable,
        }
    }

    /// The entry `value` is stored under `key` with.
    fn put(&self, key: &str, value: &CachedResult) -> anyhow::Result<()> {
        let refs = cache::index::CacheRefs {
            blobs: stored_blobs(self.ctx.store, value.layer.as_ref()),
            snapshots: layer_dirs_kept(self.prev, value),
        };
        self.ctx
            .store
            .cache_put_with_refs(key, &serde_json::to_vec(value)?, &refs)?;
        Ok(())
    }
}

impl Cache<CachedResult> for StoreCache<'_> {
    type Lock = cache::lock::LockGuard;

    fn keyed(&self, record: &StepRecord) {
        lock(&self.ctx.records_out).insert(self.portable.clone(), record.portable());
    }

    fn lookup(&self, key: &str) -> anyhow::Result<Option<CachedResult>> {
        local_hit(self.ctx.store, key)
    }

    fn lock(&self, key: &str) -> anyhow::Result<Self::Lock> {
        Ok(self.ctx.store.lock_key(key)?)
    }

    fn import(&self, key: &str) -> Option<CachedResult> {
        // Remembered locally: the next build is offline.
        self.ctx
            .imported
            .take(self.ctx.store, &self.ctx.executor.registry, key)
            .inspect(|h| drop(self.put(key, h)))
    }

    fn explain(&self, now: &StepRecord) -> MissReason {
        // This store's last run of the step, else the record an imported
        // cache carries (a fresh CI runner), compared in the form it
        // travels in.
        let ctx = self.ctx;
        match (
            ctx.records.load(&self.identity),
            ctx.imported.record(&self.portable),
        ) {
            (Some(local), _) => explain(Some(&local), now),
            (None, Some(remote)) => explain(Some(remote), &now.portable()),
            (None, None) => explain(None, now),
        }
    }

    fn hit(&self, key: &str, value: &CachedResult) {
        lock(&self.ctx.results).insert(key.to_string(), value.clone());
    }

    fn record(&self, key: &str, value: &CachedResult, record: &StepRecord) -> anyhow::Result<()> {
        self.put(key, value)?;
        lock(&self.ctx.results).insert(key.to_string(), value.clone());
        let _ = self.ctx.records.save(&self.identity, record);
        Ok(())
    }
}

/// A step's progress events, counted for the summary.
pub struct StepEvents<'a> {
    pub ctx: &'a Ctx<'a>,
    pub index: usize,
    pub name: &'a str,
}

impl Events for StepEvents<'_> {
    fn cached(&self) {
        self.ctx.cached.fetch_add(1, Ordering::SeqCst);
        let name = self.name.to_string();
        emit(self.ctx, self.index, EventKind::Cached { name });
    }

    fn started(&self) {
        self.ctx.ran.fetch_add(1, Ordering::SeqCst);
        let name = self.name.to_string();
        emit(self.ctx, self.index, EventKind::Started { name });
    }

    fn explained(&self, reason: &MissReason) {
        let reason = reason.describe();
        emit(self.ctx, self.index, EventKind::Explain { reason });
    }

    fn finished(&self) {
        emit(self.ctx, self.index, EventKind::Finished);
    }

    fn failed(&self, e: &anyhow::Error) {
        let error = crate::error_text(e);
        if self.ctx.executor.cancel_all() {
            *lock(&self.ctx.first_failure) = Some((self.index, error.clone()));
        }
        emit(self.ctx, self.index, EventKind::Failed { error });
    }
}
