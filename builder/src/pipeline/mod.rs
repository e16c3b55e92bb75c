//! `strata build` end to end: read the Dockerfile, resolve bases, lower to
//! a build graph, plan the vertices (`plan.rs`: each carries its op),
//! probe which of them the build needs (`lazy.rs`, with the ops' own keys),
//! run those on the solver — a source vertex as itself, a step through the
//! solver's cache protocol (`crate::vertex`) — and assemble, store and
//! export the image (`finish.rs`).

mod dir_base;
mod finish;
pub(crate) mod image;
mod lazy;
pub(crate) mod plan;
mod preflight;
mod progress_plan;
mod remote_cache;
mod resolver;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use cache::store::Store;

use crate::context::checksum::ChecksumIndex;
use crate::context::dockerignore::{self, Matcher};
use crate::lock;
use crate::ops::exec::Executor;
use crate::ops::{CachedResult, Layer, source};
use crate::options::{BuildRequest, DockerfileSource, NamedContextSource};
use crate::progress::{Event, EventKind, Sink, Summary};
use crate::solver::explain::{RecordStore, StepRecord};
use crate::solver::schedule;
use crate::vertex;
use finish::finish_image;
use plan::{Vertex, VertexOp};

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
    pub(crate) fn empty(key: String) -> FsState {
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
    /// Images `--from=` names that could not be resolved, with the error:
    /// the probe and the step ask once, not twice with retries each.
    pub(crate) unresolved: Mutex<BTreeMap<String, String>>,
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
    /// (`flag`) names; a failure is remembered and says first when no
    /// stage has that name.
    pub(crate) fn resolve_image(&self, reference: &str, flag: &str) -> anyhow::Result<String> {
        let failed = || lock(&self.unresolved);
        if let Some(e) = failed().get(reference) {
            bail!("{e}");
        }
        // Not under the lock: other steps resolve their images meanwhile.
        resolver::resolve_for_copy(self.store, &self.real_ref(reference), self.req.pull).map_err(
            |e| {
                let e = resolver::not_a_stage(&self.stage_names, flag, reference, e);
                failed().insert(reference.to_string(), format!("{e:#}"));
                e
            },
        )
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
    let (file_name, text, df_path) = read_dockerfile(req)?;
    let (ignore, _) = dockerignore::load_for_build(&req.context, df_path.as_deref())?;
    preflight::check(req)?;
    let store = Store::open(&req.root)
        .with_context(|| format!("opening the store {}", req.root.display()))?;
    let df = frontend::parse(&file_name, &text).map_err(|d| anyhow!("{d}"))?;
    let mut resolver = resolver::StoreResolver::new(&store, req.pull);
    for (name, src) in &named {
        resolver.aliases.insert(name.clone(), src.clone());
    }
    let opts = frontend::BuildOptions {
        build_args: req.build_args.clone(),
        target: req.target.clone(),
        file_name: file_name.clone(),
        named_contexts: named.keys().map(|n| n.to_ascii_lowercase()).collect(),
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
            remote_cache::Imported::load(&store, &req.cache_from, &|w| warn(req, &w))
        },
        results: Mutex::new(BTreeMap::new()),
        records_out: Mutex::new(BTreeMap::new()),
        named,
        stage_names: resolver::stage_names(&df),
        unresolved: Mutex::new(BTreeMap::new()),
        first_failure: Mutex::new(None),
        context_view: std::sync::OnceLock::new(),
    };
    // Stages only a cache hit reads are not run (BuildKit's lazy solve).
    let probes = lazy::probe(&ctx, &plan);
    let needed = lazy::needed(&plan, &probes);
    sink.planned(progress_plan::shown(&plan, &needed, &probes));
    let prefetch = progress_plan::prefetch(&plan, &needed, &probes);
    let outputs = schedule::run(
        &plan.nodes,
        &[plan.target],
        req.jobs,
        |i, v, inputs: &[FsState]| {
            if needed[i] {
                run_vertex(&ctx, i, v, inputs, &probes[i], prefetch[i])
            } else {
                Ok(lazy::skipped(&ctx, i, v, &probes[i]))
            }
        },
    );
    let _ = ctx.index.save();
    let outputs = match outputs {
        Ok(o) => o,
        Err(f) => bail!("{}", failure_message(&ctx, &plan, f, &file_name)),
    };
    let state = outputs[plan.target]
        .clone()
        .ok_or_else(|| anyhow!("internal: the target produced nothing"))?;
    let inline = export_cache(&ctx, &state)?;
    finish_image(&ctx, &graph, &resolver, &state, inline)
}

/// The Dockerfile's name (for messages), text and path (`None`: stdin).
fn read_dockerfile(
    req: &BuildRequest,
) -> anyhow::Result<(String, String, Option<std::path::PathBuf>)> {
    Ok(match &req.dockerfile {
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
    })
}

/// The message of a failed build: the step that failed on its own (not a
/// sibling cancelled because of it), where it is, and its last output.
fn failure_message(
    ctx: &Ctx,
    plan: &plan::Plan,
    f: schedule::Failure<anyhow::Error>,
    file_name: &str,
) -> String {
    let (vertex, error) = lock(&ctx.first_failure)
        .take()
        .unwrap_or((f.vertex, format!("{:#}", f.error)));
    let v = &plan.nodes[vertex].op;
    let tail = lock(&ctx.tails).remove(&vertex).unwrap_or_default();
    let mut msg = format!("{}: {}", v.describe(file_name), error);
    if !tail.is_empty() {
        msg.push_str("\nlast output:\n");
        for l in tail.iter().rev().take(10).rev() {
            msg.push_str("  ");
            msg.push_str(l);
            msg.push('\n');
        }
    }
    msg
}

/// `--cache-to`: exports this build's results (and their records) where
/// asked; returns the inline cache for the image config, if asked for.
fn export_cache(ctx: &Ctx, state: &FsState) -> anyhow::Result<Option<serde_json::Value>> {
    let mut exported = remote_cache::Exported {
        entries: lock(&ctx.results).clone(),
        records: lock(&ctx.records_out).clone(),
    };
    // A cache names compressed blobs a registry can serve: layers built
    // here are encoded (once; remembered) before they are named there.
    if !ctx.req.cache_to.is_empty() {
        exported.entries =
            remote_cache::with_stored_layers(ctx.store, &ctx.executor, exported.entries)?;
    }
    remote_cache::export(
        ctx.store,
        &ctx.req.cache_to,
        &exported,
        &state.chain_keys,
        &ctx.tasks,
        &|w| warn(ctx.req, &w),
    )?;
    let inline = ctx
        .req
        .cache_to
        .iter()
        .any(|c| matches!(c, crate::options::CacheTo::Inline))
        .then(|| remote_cache::inline_entries(&exported, &state.chain_keys));
    Ok(inline)
}

/// Whether a base layer must be downloaded before a step can run on it:
/// not in the blob store and not already a layer directory.
pub(crate) fn needs_download(store: &Store, l: &crate::ops::Layer) -> bool {
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

pub(crate) fn emit(ctx: &Ctx, step: usize, kind: EventKind) {
    ctx.sink.event(&Event::now(step + 1, kind));
}

/// Runs vertex `i`: a stage's base as a source, a step with the solver's
/// cache protocol (`probe`: what the lazy probe found for it).
fn run_vertex(
    ctx: &Ctx,
    i: usize,
    v: &Vertex,
    inputs: &[FsState],
    probe: &lazy::Probe,
    prefetch: bool,
) -> anyhow::Result<FsState> {
    match &v.op {
        VertexOp::Step(_) => vertex::run_step(ctx, i, v, inputs, probe.keyed.as_ref()),
        op => vertex::source::run(ctx, i, op, &v.name, inputs, prefetch),
    }
}
