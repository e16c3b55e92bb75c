//! `strata build` end to end: read the Dockerfile, resolve bases, lower to
//! a build graph, plan the vertices, probe which of them the build needs
//! (`lazy.rs`), run those on the solver with cache lookups (keys from
//! `step_key.rs`), and assemble, store and export the image (`finish.rs`).

mod dir_base;
mod finish;
mod image;
mod lazy;
mod plan;
mod preflight;
mod progress_plan;
mod remote_cache;
mod resolver;
mod step_key;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use cache::store::Store;
use frontend::{Base, CopySource, FileKind, Op};
use runtime::run_mounts::BindFrom;

use crate::context::checksum::ChecksumIndex;
use crate::context::dockerignore::{self, Matcher};
use crate::context::select::{CopySpec, select};
use crate::ops::commit::FileLayer;
use crate::ops::exec::Executor;
use crate::ops::{CachedResult, Layer, commit, file, source};
use crate::options::{BuildRequest, DockerfileSource, NamedContextSource};
use crate::progress::{Event, EventKind, Sink, Summary};
use crate::solver::cache_key::{KeyInputs, cache_key, definition_digest};
use crate::solver::explain::{MissReason, RecordStore, StepRecord, explain};
use crate::solver::schedule;
use finish::finish_image;
use plan::{Plan, Vertex};
use step_key::{StepKey, step_key};

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
}

impl FsState {
    /// No layers yet, under `key`.
    fn empty(key: String) -> FsState {
        FsState {
            key,
            layers: Vec::new(),
            made_layer: Vec::new(),
            created: Vec::new(),
            chain_keys: Vec::new(),
            skipped: false,
        }
    }
}

/// The key of `FROM scratch`.
fn scratch_key() -> String {
    cache_key(&KeyInputs {
        definition: &definition_digest(&serde_json::json!({"source": "scratch"})),
        ..Default::default()
    })
}

/// The key of `FROM <image>` at a manifest digest.
fn image_key(reference: &str, digest: &str) -> String {
    let def = definition_digest(&serde_json::json!({"source": "image", "ref": reference}));
    cache_key(&KeyInputs {
        definition: &def,
        base_digest: Some(digest),
        ..Default::default()
    })
}

/// A usable entry of the local store for `key`: one whose layer blob is
/// here (an unreadable entry counts as none).
fn local_hit(store: &Store, key: &str) -> anyhow::Result<Option<CachedResult>> {
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
/// stage.
fn cache_disabled(req: &BuildRequest, st: &frontend::Stage) -> bool {
    req.no_cache
        || st
            .name
            .as_ref()
            .is_some_and(|n| req.no_cache_filter.contains(n))
        || req.no_cache_filter.contains(&st.id.to_string())
}

/// The result of a build.
#[derive(Debug, Clone)]
pub struct Built {
    pub image_id: String,
    pub manifest_digest: String,
    pub size: u64,
}

/// Runs a whole build.
pub fn build(req: &BuildRequest) -> anyhow::Result<Built> {
    let started = Instant::now();
    let sink = crate::progress::sink_for(req.progress);
    let result = build_with(req, sink.as_ref());
    let (run, cached) = match &result {
        Ok((_, r, c)) | Err((_, r, c)) => (*r, *c),
    };
    let summary = Summary {
        elapsed: started.elapsed(),
        steps_run: run,
        steps_cached: cached,
        image_digest: result.as_ref().ok().map(|(b, _, _)| b.image_id.clone()),
        image_size: result.as_ref().ok().map(|(b, _, _)| b.size),
        failed: result.is_err(),
    };
    sink.finish(&summary);
    match result {
        Ok((b, _, _)) => {
            // With a tarball on standard output, the id would corrupt it.
            if req.quiet && !crate::output::uses_stdout(&req.outputs) {
                println!("{}", b.image_id);
            }
            Ok(b)
        }
        Err((e, _, _)) => Err(e),
    }
}

type Outcome = Result<(Built, usize, usize), (anyhow::Error, usize, usize)>;

fn build_with(req: &BuildRequest, sink: &dyn Sink) -> Outcome {
    let ran = AtomicUsize::new(0);
    let cached = AtomicUsize::new(0);
    let r = build_inner(req, sink, &ran, &cached);
    let (a, b) = (ran.load(Ordering::SeqCst), cached.load(Ordering::SeqCst));
    match r {
        Ok(x) => Ok((x, a, b)),
        Err(e) => Err((e, a, b)),
    }
}

struct Ctx<'a> {
    req: &'a BuildRequest,
    store: &'a Store,
    sink: &'a dyn Sink,
    /// Pushes, exports, cache exports: progress entries after the steps.
    tasks: crate::progress::Tasks<'a>,
    ignore: Matcher,
    index: ChecksumIndex,
    records: RecordStore,
    executor: Executor,
    /// `SOURCE_DATE_EPOCH` (build arg, else environment): every layer's
    /// mtimes, the config's and history's times are clamped to it.
    epoch: Option<i64>,
    ran: &'a AtomicUsize,
    cached: &'a AtomicUsize,
    identity_prefix: String,
    /// Output lines of each step, for the failure message.
    tails: Mutex<BTreeMap<usize, Vec<String>>>,
    /// Results imported with `--cache-from`.
    imported: remote_cache::Imported,
    /// Every step result of this build, for `--cache-to`.
    results: Mutex<BTreeMap<String, CachedResult>>,
    /// Every step's record by its portable identity, for `--cache-to`
    /// (a fresh runner's `--explain-cache` reads them).
    records_out: Mutex<BTreeMap<String, StepRecord>>,
    /// `--build-context` names.
    named: BTreeMap<String, NamedContextSource>,
    /// Every stage name the Dockerfile declares, for messages.
    stage_names: Vec<String>,
    /// Images `--from=` names that could not be resolved, with the error:
    /// the probe and the step ask once, not twice with retries each.
    unresolved: Mutex<BTreeMap<String, String>>,
    /// The step that failed first (others may fail after, cancelled).
    first_failure: Mutex<Option<(usize, String)>>,
    /// The context without its `.dockerignore`d files, for RUN bind mounts
    /// (made on first use).
    context_view: std::sync::OnceLock<Result<tempfile::TempDir, String>>,
    /// Step keys the lazy probe computed, by vertex, with the input keys
    /// they were computed on: the step takes its own instead of selecting
    /// and checksumming its files a second time.
    probed: Mutex<BTreeMap<usize, (Vec<String>, StepKey)>>,
}

impl Ctx<'_> {
    /// The directory a RUN bind mount of the context shows: the context
    /// itself when nothing is ignored, else a view without the ignored files.
    fn context_for_mounts(&self) -> anyhow::Result<std::path::PathBuf> {
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
    /// (`flag`) names; a failure is remembered and says first when no
    /// stage has that name.
    fn resolve_image(&self, reference: &str, flag: &str) -> anyhow::Result<String> {
        let failed = || self.unresolved.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = failed().get(reference) {
            bail!("{e}");
        }
        // Not under the lock: other steps resolve their images meanwhile.
        resolver::resolve_for_copy(
            self.store,
            &self.executor.registry,
            &self.real_ref(reference),
            self.req.pull,
        )
        .map_err(|e| {
            let e = resolver::not_a_stage(&self.stage_names, flag, reference, e);
            failed().insert(reference.to_string(), format!("{e:#}"));
            e
        })
    }

    /// The image a name stands for (`--build-context name=docker-image://REF`).
    fn real_ref(&self, name: &str) -> String {
        match self.named.get(&name.to_ascii_lowercase()) {
            Some(NamedContextSource::Image(r)) => r.clone(),
            Some(NamedContextSource::OciLayout(p)) => format!("oci-layout:{}", p.display()),
            _ => name.to_string(),
        }
    }
}

fn build_inner(
    req: &BuildRequest,
    sink: &dyn Sink,
    ran: &AtomicUsize,
    cached: &AtomicUsize,
) -> anyhow::Result<Built> {
    let named: BTreeMap<String, NamedContextSource> = req
        .build_contexts
        .iter()
        .map(|c| (c.name.clone(), c.source.clone()))
        .collect();
    let (file_name, text, df_path) = match &req.dockerfile {
        DockerfileSource::Stdin => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the Dockerfile from stdin")?;
            ("-".to_string(), s, None)
        }
        DockerfileSource::Path(p) => {
            let s = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the Dockerfile {}", p.display()))?;
            (p.display().to_string(), s, Some(p.clone()))
        }
    };
    let (ignore, _) = dockerignore::load_for_build(&req.context, df_path.as_deref())?;
    preflight::check(req)?;
    let store = Store::open(&req.root)
        .with_context(|| format!("opening the store {}", req.root.display()))?;
    let df = frontend::parse(&file_name, &text).map_err(|d| anyhow!("{d}"))?;
    let registry = std::sync::Arc::new(crate::Registry::new(&req.insecure_registries));
    let mut resolver = resolver::StoreResolver::new(&store, &registry, req.pull);
    for (name, src) in &named {
        resolver.aliases.insert(name.clone(), src.clone());
    }
    let opts = frontend::BuildOptions {
        build_args: req.build_args.clone(),
        target: req.target.clone(),
        file_name: file_name.clone(),
        ..Default::default()
    };
    let graph = frontend::lower(&df, &opts, &resolver).map_err(|d| anyhow!("{d}"))?;
    for w in &graph.warnings {
        warn(req, &w.to_string());
    }
    let plan = plan::plan(&graph)?;
    let index = ChecksumIndex::open(&req.root, &req.context)?;
    let epoch = image::source_date_epoch(graph.source_date_epoch.as_ref())?;
    let mut executor = Executor::new(
        &store,
        req.userns,
        req.isolation,
        req.snapshotter,
        req.verbose,
    );
    executor.step_sandbox = req.step_sandbox.clone();
    executor.registry = registry.clone();
    let ctx = Ctx {
        req,
        store: &store,
        sink,
        tasks: crate::progress::Tasks::new(sink, plan.nodes.len() + 1),
        ignore,
        index,
        records: RecordStore::new(&req.root),
        executor,
        epoch,
        ran,
        cached,
        // Steps are compared with their last run by where they come from:
        // the context and the Dockerfile, both as absolute paths.
        identity_prefix: format!(
            "{}\0{}",
            req.context.display(),
            df_path
                .as_deref()
                .and_then(|p| std::fs::canonicalize(p).ok())
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| file_name.clone())
        ),
        tails: Mutex::new(BTreeMap::new()),
        // --no-cache reads no cache at all: an unreachable --cache-from
        // costs nothing then.
        imported: if req.no_cache {
            remote_cache::Imported::default()
        } else {
            remote_cache::Imported::load(&store, &registry, &req.cache_from, &|w| warn(req, &w))
        },
        results: Mutex::new(BTreeMap::new()),
        records_out: Mutex::new(BTreeMap::new()),
        named,
        stage_names: resolver::stage_names(&df),
        unresolved: Mutex::new(BTreeMap::new()),
        first_failure: Mutex::new(None),
        context_view: std::sync::OnceLock::new(),
        probed: Mutex::new(BTreeMap::new()),
    };
    // Stages only a cache hit reads are not run (BuildKit's lazy solve).
    let probes = lazy::probe(&ctx, &graph, &plan);
    let needed = lazy::needed(&plan, &probes);
    sink.planned(progress_plan::shown(&graph, &plan, &needed, &probes));
    let prefetch = progress_plan::prefetch(&graph, &plan, &needed, &probes);
    let outputs = schedule::run(
        &plan.nodes,
        &[plan.target],
        req.jobs,
        |i, v, inputs: &[FsState]| {
            if needed[i] {
                run_vertex(&ctx, &graph, &plan, i, v, inputs, prefetch[i])
            } else {
                Ok(lazy::skipped(&ctx, &graph, &plan, i, v, &probes[i]))
            }
        },
    );
    let _ = ctx.index.save();
    let outputs = match outputs {
        Ok(o) => o,
        Err(f) => {
            // Report the step that failed on its own, not a sibling that
            // was cancelled because of it.
            let (vertex, error) = ctx
                .first_failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or((f.vertex, format!("{:#}", f.error)));
            let v = &plan.nodes[vertex].op;
            let tail = ctx
                .tails
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&vertex)
                .unwrap_or_default();
            let mut msg = format!("{}: {}", plan.describe(&graph, v, &file_name), error);
            if !tail.is_empty() {
                msg.push_str("\nlast output:\n");
                for l in tail.iter().rev().take(10).rev() {
                    msg.push_str("  ");
                    msg.push_str(l);
                    msg.push('\n');
                }
            }
            bail!("{msg}");
        }
    };
    let mut exported = remote_cache::Exported {
        entries: ctx
            .results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
        records: ctx
            .records_out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
    };
    let state = outputs[plan.target]
        .clone()
        .ok_or_else(|| anyhow!("internal: the target produced nothing"))?;
    // A cache names compressed blobs a registry can serve: layers built
    // here are encoded (once; remembered) before they are named there.
    if !req.cache_to.is_empty() {
        exported.entries =
            remote_cache::with_stored_layers(&store, &ctx.executor, exported.entries)?;
    }
    remote_cache::export(
        &store,
        &registry,
        &req.cache_to,
        &exported,
        &state.chain_keys,
        &ctx.tasks,
        &|w| warn(req, &w),
    )?;
    let inline = req
        .cache_to
        .iter()
        .any(|c| matches!(c, crate::options::CacheTo::Inline))
        .then(|| remote_cache::inline_entries(&exported, &state.chain_keys));
    finish_image(&ctx, &graph, &resolver, &state, inline)
}

/// Whether a base layer must be downloaded before a step can run on it:
/// not in the blob store and not already a layer directory.
fn needs_download(store: &Store, l: &crate::ops::Layer) -> bool {
    !store.blobs().has(&l.desc.digest)
        && !crate::ops::commit::is_dir_layer(store, l)
        && !source::layer_dir_ready(&source::layer_dir(store, l))
}

/// A warning on stderr, unless `-q`. A Dockerfile diagnostic already says
/// `warning: ` itself.
fn warn(req: &BuildRequest, w: &str) {
    if !req.quiet {
        match w.strip_prefix("warning: ") {
            Some(rest) => eprintln!("warning: {rest}"),
            None => eprintln!("warning: {w}"),
        }
    }
}

fn emit(ctx: &Ctx, step: usize, kind: EventKind) {
    ctx.sink.event(&Event::now(step + 1, kind));
}

fn run_vertex(
    ctx: &Ctx,
    graph: &frontend::BuildGraph,
    plan: &Plan,
    i: usize,
    v: &Vertex,
    inputs: &[FsState],
    prefetch: bool,
) -> anyhow::Result<FsState> {
    let name = plan.progress_name(graph, v);
    match *v {
        Vertex::Base { stage } => {
            let st = &graph.stages[stage];
            match &st.base {
                Base::Scratch => Ok(FsState::empty(scratch_key())),
                Base::Stage { .. } => Ok(inputs[0].clone()),
                Base::Image {
                    reference, digest, ..
                } => {
                    emit(ctx, i, EventKind::Started { name: name.clone() });
                    let layers = source::image_layers(ctx.store, &ctx.real_ref(reference), digest)?;
                    // The next step runs on these layers: download them
                    // here, unpacking while they arrive, so the pull shows
                    // with its time and bytes. Layers already unpacked
                    // (built here, or pulled before) need no download.
                    if prefetch {
                        let mut bytes = 0;
                        for l in &layers {
                            if needs_download(ctx.store, l) {
                                if ctx.executor.fetch_unpacked(ctx.store, l)? {
                                    let line = format!(
                                        "{}: unpacked while downloading",
                                        &l.desc.digest.hex()[..12]
                                    );
                                    emit(ctx, i, EventKind::Output { line });
                                }
                                bytes += l.desc.size;
                                emit(ctx, i, EventKind::Bytes { bytes });
                            }
                        }
                    }
                    emit(ctx, i, EventKind::Finished);
                    Ok(FsState {
                        layers,
                        ..FsState::empty(image_key(reference, digest))
                    })
                }
            }
        }
        Vertex::Step { stage, step } => run_step(ctx, graph, i, stage, step, &name, inputs),
    }
}

fn run_step(
    ctx: &Ctx,
    graph: &frontend::BuildGraph,
    i: usize,
    stage: usize,
    step_idx: usize,
    name: &str,
    inputs: &[FsState],
) -> anyhow::Result<FsState> {
    let st = &graph.stages[stage];
    let step = &st.steps[step_idx];
    let prev = &inputs[0];
    let input_keys: Vec<String> = inputs.iter().map(|s| s.key.clone()).collect();
    let probed = ctx
        .probed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&i)
        .filter(|(keys, _)| *keys == input_keys)
        .map(|(_, sk)| sk);
    let step_key = match probed {
        Some(sk) => sk,
        None => step_key(
            ctx,
            graph,
            stage,
            step_idx,
            Some(&prev.layers),
            input_keys,
            false,
        )?
        .ok_or_else(|| anyhow!("internal: no cache key for a step that runs"))?,
    };
    let StepKey {
        key,
        facts,
        context_sel,
        ov,
        image_source,
        sel_root,
        sel_sources,
        downloads,
        named_ignore,
    } = step_key;
    let identity = format!(
        "{}\0{}\0{}",
        ctx.identity_prefix,
        st.name.clone().unwrap_or_else(|| st.id.to_string()),
        step_idx
    );
    let record = StepRecord {
        key: key.clone(),
        facts,
    };
    // Where the step is in the Dockerfile, without this checkout's paths:
    // the identity its record travels under in an exported cache.
    let portable = format!(
        "{}\0{}",
        st.name.clone().unwrap_or_else(|| st.id.to_string()),
        step_idx
    );
    ctx.records_out
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(portable.clone(), record.portable());
    let disabled = cache_disabled(ctx.req, st);
    let lookup_local = || -> anyhow::Result<Option<CachedResult>> {
        if disabled {
            return Ok(None);
        }
        local_hit(ctx.store, &key)
    };
    let mut local_hit = lookup_local()?;
    // Another strata process on this store may be running the very same
    // step: take the key's lock (waiting for it), then look again, so the
    // step runs once and the second process finds its result.
    let mut _key_lock = None;
    if local_hit.is_none() {
        _key_lock = Some(ctx.store.lock_key(&key)?);
        local_hit = lookup_local()?;
    }
    let hit = match local_hit {
        Some(h) => Some(h),
        None if !disabled => ctx
            .imported
            .take(ctx.store, &ctx.executor.registry, &key)
            .inspect(|h| {
                // Remember the imported result locally: the next build is offline.
                if let Ok(value) = serde_json::to_vec(h) {
                    let refs = cache::index::CacheRefs {
                        blobs: stored_blobs(ctx.store, h.layer.as_ref()),
                        snapshots: layer_dirs_kept(prev, h),
                    };
                    let _ = ctx.store.cache_put_with_refs(&key, &value, &refs);
                }
            }),
        None => None,
    };
    if let Some(hit) = hit {
        ctx.results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), hit.clone());
        ctx.cached.fetch_add(1, Ordering::SeqCst);
        emit(
            ctx,
            i,
            EventKind::Cached {
                name: name.to_string(),
            },
        );
        return Ok(next_state(prev, key, &hit));
    }
    // A stage skipped because this step was to hit the cache (a prune by
    // another process in between can make it miss) has nothing to read.
    if inputs.iter().skip(1).any(|s| s.skipped) {
        bail!(
            "the cache entry this step was found in is gone (pruned meanwhile?); run the build again"
        );
    }
    ctx.ran.fetch_add(1, Ordering::SeqCst);
    emit(
        ctx,
        i,
        EventKind::Started {
            name: name.to_string(),
        },
    );
    if ctx.req.explain_cache {
        let reason = if disabled {
            MissReason::Disabled
        } else {
            // This store's last run of the step, else the record an
            // imported cache carries (a fresh CI runner), compared in the
            // form it travels in.
            match (ctx.records.load(&identity), ctx.imported.record(&portable)) {
                (Some(local), _) => explain(Some(&local), &record),
                (None, Some(remote)) => explain(Some(remote), &record.portable()),
                (None, None) => explain(None, &record),
            }
        };
        emit(
            ctx,
            i,
            EventKind::Explain {
                reason: reason.describe(),
            },
        );
    }
    let result = (|| -> anyhow::Result<Option<Layer>> {
        match &step.op {
            Op::Exec(e) => {
                let mut out = |line: &str| {
                    emit(
                        ctx,
                        i,
                        EventKind::Output {
                            line: line.to_string(),
                        },
                    );
                    let mut t = ctx.tails.lock().unwrap_or_else(|p| p.into_inner());
                    let v = t.entry(i).or_default();
                    v.push(line.to_string());
                    if v.len() > 20 {
                        v.remove(0);
                    }
                };
                // Filesystems that `from=` mounts read: a stage (its
                // output is one of this step's inputs) or an image. A bind
                // reads the shared layer directories through a snapshot;
                // a cache is seeded by the host side, which needs a tree
                // it can read as the invoking user.
                let mut keep_dirs = Vec::new();
                let mut keep_sources = Vec::new();
                let mut from_dirs = Vec::new();
                let mut next_input = 1;
                for m in &e.mounts {
                    let layers = if m.from_stage.is_some() {
                        let l = inputs
                            .get(next_input)
                            .ok_or_else(|| {
                                anyhow!("internal: RUN --mount from a stage has no input")
                            })?
                            .layers
                            .clone();
                        next_input += 1;
                        Some(l)
                    } else if let Some(reference) = m.from.as_deref().filter(|_| {
                        !matches!(
                            m.kind,
                            frontend::runmount::MountType::Secret
                                | frontend::runmount::MountType::Ssh
                        )
                    }) {
                        let real = ctx.real_ref(reference);
                        let digest = resolver::resolve_for_copy(
                            ctx.store,
                            &ctx.executor.registry,
                            &real,
                            ctx.req.pull,
                        )?;
                        Some(source::image_layers(ctx.store, &real, &digest)?)
                    } else {
                        None
                    };
                    from_dirs.push(match layers {
                        Some(l) if m.kind == frontend::runmount::MountType::Cache => {
                            let dir = file::materialize(ctx.store, &ctx.executor, &l)?;
                            let p = dir.path().to_path_buf();
                            keep_dirs.push(dir);
                            Some(BindFrom::Dir(p))
                        }
                        Some(l) => {
                            let src = ctx.executor.mount_source(ctx.store, &l)?;
                            let from = src.from.clone();
                            keep_sources.push(src);
                            Some(from)
                        }
                        None => None,
                    });
                }
                let binds_context = e
                    .mounts
                    .iter()
                    .any(|m| m.kind == frontend::runmount::MountType::Bind && m.from.is_none());
                let context_dir = if binds_context {
                    ctx.context_for_mounts()?
                } else {
                    ctx.req.context.clone()
                };
                let mounts = crate::ops::mounts::convert(
                    &e.mounts,
                    &from_dirs,
                    &context_dir,
                    &ctx.req.secrets,
                    &ctx.req.ssh,
                )?;
                ctx.executor.run(
                    ctx.store,
                    &prev.layers,
                    e,
                    ctx.req.network,
                    mounts,
                    &key,
                    ctx.epoch,
                    &mut out,
                )
            }
            Op::File(f) if f.kind == FileKind::Mkdir => {
                let dest = ctx
                    .executor
                    .resolve_dest(ctx.store, &prev.layers, &f.dest, true)?;
                let files = FileLayer {
                    entries: file::with_dirs(Vec::new(), &dest.missing, ov.uid, ov.gid),
                    archives: Vec::new(),
                    parents: dest.parents,
                };
                ctx.executor.commit_files(ctx.store, files, ctx.epoch)
            }
            Op::File(f) => {
                // Where the files land in the image below: through its
                // symlinks, into an existing directory, with the parents
                // it lacks.
                let dest = ctx
                    .executor
                    .resolve_dest(ctx.store, &prev.layers, &f.dest, false)?;
                if several_sources(f) && !dest.path.ends_with('/') && !f.parents {
                    bail!(
                        "when copying more than one source (or a wildcard) the destination must be a directory: {} is not one in the image; write {}/",
                        f.dest,
                        f.dest
                    );
                }
                let (root, sel) = match (&f.from, context_sel) {
                    // Selected for the cache key with the destination as
                    // written; again if the image moves it.
                    (_, Some(sel)) if dest.path == f.dest => (sel_root.clone(), sel),
                    (_, Some(_)) => {
                        let no_ignore = Matcher::default();
                        let ignore = match (&downloads, &named_ignore) {
                            (Some(_), _) => &no_ignore,
                            (None, Some(n)) => n,
                            (None, None) => &ctx.ignore,
                        };
                        let mut spec = copy_spec(f, &dest.path);
                        spec.sources = sel_sources.clone();
                        let sel = select(&sel_root, ignore, &spec)?;
                        (sel_root.clone(), sel)
                    }
                    (CopySource::Stage { .. } | CopySource::Image { .. }, _) => {
                        let layers = match (&f.from, &image_source) {
                            (CopySource::Image { .. }, Some((reference, digest))) => {
                                source::image_layers(ctx.store, &ctx.real_ref(reference), digest)?
                            }
                            _ => inputs
                                .get(1)
                                .ok_or_else(|| {
                                    anyhow!("internal: COPY --from has no source input")
                                })?
                                .layers
                                .clone(),
                        };
                        return ctx.executor.copy_from(
                            ctx.store,
                            &layers,
                            &copy_spec(f, &dest.path),
                            &ov,
                            &dest.missing,
                            &dest.parents,
                            ctx.epoch,
                        );
                    }
                    _ => (ctx.req.context.clone(), Default::default()),
                };
                let (entries, archives) = file::copy_entries(
                    &root,
                    &sel,
                    &ov,
                    false,
                    // Remote files are unpacked only when asked (`--unpack`).
                    f.kind == FileKind::Add && f.unpack.unwrap_or(downloads.is_none()),
                    &f.inline,
                    &dest.path,
                )?;
                let files = FileLayer {
                    entries: file::with_dirs(entries, &dest.missing, ov.uid, ov.gid),
                    archives,
                    parents: dest.parents,
                };
                ctx.executor.commit_files(ctx.store, files, ctx.epoch)
            }
        }
    })();
    match result {
        Ok(layer) => {
            emit(ctx, i, EventKind::Finished);
            let result = CachedResult {
                layer: layer.clone(),
                created: Some(image::created_at(ctx.epoch)),
            };
            let value = serde_json::to_vec(&result)?;
            let refs = cache::index::CacheRefs {
                blobs: stored_blobs(ctx.store, layer.as_ref()),
                snapshots: layer_dirs_kept(prev, &result),
            };
            ctx.store.cache_put_with_refs(&key, &value, &refs)?;
            ctx.results
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone(), result.clone());
            let _ = ctx.records.save(&identity, &record);
            Ok(next_state(prev, key, &result))
        }
        Err(e) => {
            if ctx.executor.cancel_all() {
                *ctx.first_failure.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((i, format!("{e:#}")));
            }
            emit(
                ctx,
                i,
                EventKind::Failed {
                    error: format!("{e:#}"),
                },
            );
            Err(e)
        }
    }
}

/// What a COPY/ADD selects, copied to `dest`.
/// The sources a file op names (none for other ops).
fn f_sources(op: &Op) -> Vec<String> {
    match op {
        Op::File(f) => f.sources.clone(),
        Op::Exec(_) => Vec::new(),
    }
}

/// Whether a COPY/ADD names several sources (or a wildcard): Docker then
/// needs a directory destination.
fn several_sources(f: &frontend::FileOp) -> bool {
    f.sources.len() + f.inline.len() > 1
        || f.sources
            .iter()
            .any(|s| crate::context::select::is_wildcard(s))
}

/// The destination the cache key's selection uses. `COPY a b /dir` without
/// a trailing `/` is allowed when `/dir` is a directory of the image, which
/// only the step itself can see; the key selects as if the `/` were there
/// and the step refuses if the image has no such directory.
fn key_dest(f: &frontend::FileOp) -> String {
    if several_sources(f) && !f.dest.ends_with('/') && !f.parents {
        format!("{}/", f.dest)
    } else {
        f.dest.clone()
    }
}

fn copy_spec(f: &frontend::FileOp, dest: &str) -> CopySpec {
    let mut spec = CopySpec::new(f.sources.clone(), dest);
    spec.excludes = f.exclude.clone();
    spec.parents = f.parents;
    spec
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

fn next_state(prev: &FsState, key: String, result: &CachedResult) -> FsState {
    let mut s = prev.clone();
    s.chain_keys.push(key.clone());
    s.key = key;
    s.made_layer.push(result.layer.is_some());
    s.created.push(result.created.clone().unwrap_or_default());
    if let Some(l) = &result.layer {
        s.layers.push(l.clone());
    }
    s
}
