//! The state one build shares between its vertices: the request, the
//! store, the worker, the cache records and imports, progress, and what the
//! steps leave ([`FsState`]).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use anyhow::{anyhow, bail};
use cache::store::Store;

use super::{remote_cache, resolver};
use crate::context::checksum::ChecksumIndex;
use crate::context::dockerignore::Matcher;
use crate::lock;
use crate::ops::exec::Executor;
use crate::ops::{CachedResult, Layer};
use crate::options::{BuildRequest, NamedContextSource};
use crate::progress::{Event, EventKind, Sink};
use crate::solver::explain::{RecordStore, StepRecord};

/// A filesystem state: the layers so far and the cache key that made them.
#[derive(Debug, Clone)]
pub struct FsState {
    pub key: String,
    pub layers: Vec<Layer>,
    /// Per step of the stage chain (base history excluded): whether each
    /// filesystem step made a layer, in step order across parent stages.
    pub made_layer: Vec<bool>,
    /// When each of those steps ran, in the same order.
    pub created: Vec<String>,
    /// The cache keys of those steps: what `mode=min` and inline caches
    /// export (the results the final image is made of).
    pub chain_keys: Vec<String>,
    /// A vertex the build did not need (see `lazy.rs`): only its key is
    /// real, its layers are not there.
    pub skipped: bool,
    /// What a URL or git source vertex fetched (a file op reads it).
    pub fetched: Option<crate::vertex::source::Fetched>,
    /// What a local source vertex selected (a file op reads it).
    pub local: Option<std::sync::Arc<crate::vertex::local::Selected>>,
}

impl FsState {
    /// No layers yet, under `key`.
    pub(crate) fn empty(key: String) -> FsState {
        FsState {
            key,
            layers: Vec::new(),
            made_layer: Vec::new(),
            created: Vec::new(),
            chain_keys: Vec::new(),
            skipped: false,
            fetched: None,
            local: None,
        }
    }
}

/// The build's shared state.
pub(crate) struct Ctx<'a> {
    pub(crate) req: &'a BuildRequest,
    pub(crate) store: &'a Store,
    pub(crate) sink: &'a dyn Sink,
    /// Pushes, exports, cache exports: progress entries after the steps.
    pub(crate) tasks: crate::progress::Tasks<'a>,
    pub(crate) ignore: Matcher,
    pub(crate) index: ChecksumIndex,
    pub(crate) records: RecordStore,
    pub(crate) executor: Executor<'a>,
    /// `SOURCE_DATE_EPOCH` (build arg, else environment): every layer's
    /// mtimes, the config's and history's times are clamped to it.
    pub(crate) epoch: Option<i64>,
    pub(crate) ran: &'a AtomicUsize,
    pub(crate) cached: &'a AtomicUsize,
    pub(crate) identity_prefix: String,
    /// Output lines of each step, for the failure message.
    pub(crate) tails: Mutex<BTreeMap<usize, Vec<String>>>,
    /// Results imported with `--cache-from`.
    pub(crate) imported: remote_cache::Imported,
    /// Every step result of this build, for `--cache-to`.
    pub(crate) results: Mutex<BTreeMap<String, CachedResult>>,
    /// Every step's record by its portable identity, for `--cache-to`
    /// (a fresh runner's `--explain-cache` reads them).
    pub(crate) records_out: Mutex<BTreeMap<String, StepRecord>>,
    /// `--build-context` names.
    pub(crate) named: BTreeMap<String, NamedContextSource>,
    /// Every stage name the Dockerfile declares, for messages.
    pub(crate) stage_names: Vec<String>,
    /// Images `--from=` / `--mount from=` name, resolved once per build:
    /// the manifest digest, or the error (the probe and the steps ask
    /// once, not again with retries each).
    pub(crate) images: Mutex<BTreeMap<String, Result<String, String>>>,
    /// What the local sources selected, by definition digest: once per
    /// build, whether the probe or the vertex asks first.
    pub(crate) local_sources:
        Mutex<BTreeMap<String, std::sync::Arc<crate::vertex::local::Selected>>>,
    /// The step that failed first (others may fail after, cancelled).
    pub(crate) first_failure: Mutex<Option<(usize, String)>>,
    /// The context without its `.dockerignore`d files, for RUN bind mounts
    /// (made on first use).
    pub(crate) context_view: std::sync::OnceLock<Result<tempfile::TempDir, String>>,
}

impl Ctx<'_> {
    /// The directory a RUN bind mount of the context shows: the context
    /// itself when nothing is ignored, else a view without the ignored files.
    pub(crate) fn context_for_mounts(&self) -> anyhow::Result<std::path::PathBuf> {
        if self.ignore.is_empty() {
            return Ok(self.req.context.clone());
        }
        self.context_view
            .get_or_init(|| {
                crate::context::filtered::filtered_view(
                    &self.req.context,
                    &self.ignore,
                    self.store.scratch_dir(),
                )
                .map_err(|e| format!("{e:#}"))
            })
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .map_err(|e| anyhow!("{e}"))
    }

    /// The manifest digest of the image `COPY --from=` / `--mount from=`
    /// (`flag`) names, resolved once per build; a failure is remembered
    /// too and says first when no stage has that name.
    pub(crate) fn resolve_image(&self, reference: &str, flag: &str) -> anyhow::Result<String> {
        let known = || lock(&self.images);
        match known().get(reference) {
            Some(Ok(digest)) => return Ok(digest.clone()),
            Some(Err(e)) => bail!("{e}"),
            None => {}
        }
        // Not under the lock: other steps resolve their images meanwhile.
        let r = resolver::resolve_for_copy(
            self.store,
            &self.executor.registry,
            &self.real_ref(reference),
            self.req.pull,
        )
        .map_err(|e| resolver::not_a_stage(&self.stage_names, flag, reference, e));
        let kept = r.as_ref().map(String::clone).map_err(crate::error_text);
        known().insert(reference.to_string(), kept);
        r
    }

    /// The image a name stands for (`--build-context name=docker-image://REF`).
    pub(crate) fn real_ref(&self, name: &str) -> String {
        match self.named.get(&name.to_ascii_lowercase()) {
            Some(NamedContextSource::Image(r)) => r.clone(),
            Some(NamedContextSource::OciLayout(p)) => format!("oci-layout:{}", p.display()),
            _ => name.to_string(),
        }
    }
}

pub(crate) fn emit(ctx: &Ctx, step: usize, kind: EventKind) {
    ctx.sink.event(&Event::now(step + 1, kind));
}
