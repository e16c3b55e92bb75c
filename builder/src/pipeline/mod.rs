//! `strata build` end to end: read the Dockerfile, resolve bases, lower to
//! a build graph, plan the vertices (`plan.rs`: each carries its op),
//! probe which of them the build needs (`lazy.rs`, with the ops' own keys),
//! run those on the solver — a source vertex as itself, a step through the
//! solver's cache protocol (`crate::vertex`) — and assemble, store and
//! export the image (`finish.rs`).

pub(crate) mod ctx;
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
use crate::context::{dockerignore, git};
use crate::lock;
use crate::ops::exec::Executor;
use crate::options::{BuildRequest, DockerfileSource, NamedContextSource};
use crate::progress::{Sink, Summary};
use crate::solver::explain::RecordStore;
use crate::solver::schedule;
use crate::vertex;
pub use ctx::FsState;
pub(crate) use ctx::{Ctx, emit};
use finish::finish_image;
use plan::{Vertex, VertexOp};

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

/// `--build-context`s by name, git repositories checked out into the
/// store's scratch space (kept while the returned handles live).
fn named_contexts(
    req: &BuildRequest,
    store: &Store,
) -> anyhow::Result<(BTreeMap<String, NamedContextSource>, Vec<tempfile::TempDir>)> {
    let mut named: BTreeMap<String, NamedContextSource> = req
        .build_contexts
        .iter()
        .map(|c| (c.name.clone(), c.source.clone()))
        .collect();
    let kept = git::checkout_named(&mut named, store.scratch_dir(), &req.secrets, &req.ssh)?;
    Ok((named, kept))
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

fn build_inner(
    req: &BuildRequest,
    sink: &dyn Sink,
    ran: &AtomicUsize,
    cached: &AtomicUsize,
) -> anyhow::Result<Built> {
    let (file_name, text, df_path) = read_dockerfile(req)?;
    let (ignore, _) = dockerignore::load_for_build(&req.context, df_path.as_deref())?;
    preflight::check(req)?;
    let store = Store::open(&req.root)
        .with_context(|| format!("opening the store {}", req.root.display()))?;
    let df = frontend::parse(&file_name, &text).map_err(|d| anyhow!("{d}"))?;
    let (named, _checkouts) = named_contexts(req, &store)?;
    let registry = std::sync::Arc::new(crate::Registry::new(&req.insecure_registries));
    let mut resolver = resolver::StoreResolver::new(&store, &registry, req.pull);
    for (name, src) in &named {
        resolver.aliases.insert(name.clone(), src.clone());
    }
    let opts = frontend::BuildOptions {
        build_args: req.build_args.clone(),
        target: req.target.clone(),
        file_name: file_name.clone(),
        named_contexts: named.keys().map(|n| n.to_ascii_lowercase()).collect(),
        ..crate::platform::host_build_options()
    };
    let graph = frontend::lower(&df, &opts, &resolver).map_err(|d| anyhow!("{d}"))?;
    for w in &graph.warnings {
        warn(req, &w.to_string());
    }
    let plan = plan::plan(&graph, &named)?;
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
        // Numbered after the steps (sources steps read show no entry).
        tasks: crate::progress::Tasks::new(sink, plan.staged + 1),
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
        images: Mutex::new(BTreeMap::new()),
        local_sources: Mutex::new(BTreeMap::new()),
        first_failure: Mutex::new(None),
        context_view: std::sync::OnceLock::new(),
    };
    // Stages only a cache hit reads are not run (BuildKit's lazy solve).
    let mut probes = lazy::probe(&ctx, &plan);
    // Each step takes the key its probe computed (once: what it selected
    // is not kept twice).
    let keyed: Vec<Mutex<Option<lazy::ProbedKey>>> = probes
        .iter_mut()
        .map(|p| Mutex::new(p.keyed.take()))
        .collect();
    let needed = lazy::needed(&plan, &probes);
    sink.planned(progress_plan::shown(&plan, &needed, &probes));
    let prefetch = progress_plan::prefetch(&plan, &needed, &probes);
    let outputs = schedule::run(
        &plan.nodes,
        &[plan.target],
        req.jobs,
        |i, v, inputs: &[FsState]| {
            if needed[i] {
                run_vertex(&ctx, i, v, inputs, lock(&keyed[i]).take(), prefetch[i])
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
        .unwrap_or((f.vertex, crate::error_text(&f.error)));
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
        &ctx.executor.registry,
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

/// Runs vertex `i`: a stage's base as a source, a step with the solver's
/// cache protocol (`probed`: the key the lazy probe computed for it).
fn run_vertex(
    ctx: &Ctx,
    i: usize,
    v: &Vertex,
    inputs: &[FsState],
    probed: Option<lazy::ProbedKey>,
    prefetch: bool,
) -> anyhow::Result<FsState> {
    match &v.op {
        VertexOp::Step(_) => vertex::run_step(ctx, i, v, inputs, probed),
        op => vertex::source::run(ctx, i, op, &v.name, inputs, prefetch),
    }
}
