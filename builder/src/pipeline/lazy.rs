//! Not running what the build does not need, as BuildKit's lazy solve
//! does: a stage whose result only feeds steps that hit the cache (a
//! `COPY --from` or `RUN --mount=from=` whose own key is in the cache) is
//! never run, unpacked or downloaded.
//!
//! Before the solver starts, every vertex the target reaches is *probed*:
//! its key is computed by its own op ([`Op::cache_key`] in probe mode: no
//! downloads, no `--chown` names without layers), and looked up in the
//! local store and in `--cache-from` imports; `solver::lazy::needed` then
//! says which vertices must run. Vertices that are not needed get a
//! key-only state; those that hit are still reported CACHED, as BuildKit
//! reports them. A probe that cannot know a key (a download, an unreadable
//! input) only makes more vertices needed, never fewer. The key a probe
//! computed travels with its probe to the step (`Probe::keyed`), so a step
//! that then runs does not select and checksum its files again.

use super::plan::{Plan, Vertex, VertexOp};
use super::{Ctx, FsState, emit};
use crate::lock;
use crate::ops::{CachedResult, Layer};
use crate::progress::EventKind;
use crate::solver::schedule::reachable;
use crate::solver::solve::{Keyed, Op};
use crate::vertex::store::{cache_disabled, local_hit};
use crate::vertex::{Prepared, Step, source};

/// What a vertex's key and cache look like before anything runs.
#[derive(Debug, Clone, Default)]
pub(super) struct Probe {
    /// `None`: not knowable without running something.
    pub key: Option<String>,
    /// The layers of the state it leaves, when known without running.
    pub layers: Option<Vec<Layer>>,
    /// Its cache entry (local, or imported with `--cache-from`).
    pub hit: Option<CachedResult>,
    /// The hit is in the local store (its layer blob is here).
    pub local: bool,
    /// A step's key as its op computed it, with the input keys it was
    /// computed on: the step uses it when its inputs are those.
    pub keyed: Option<ProbedKey>,
}

/// A step's key as the probe computed it, with the input keys it was
/// computed on.
pub(super) type ProbedKey = (Vec<String>, Keyed<Prepared>);

/// Probes every vertex the target reaches, in plan order (inputs first).
pub(super) fn probe(ctx: &Ctx, plan: &Plan) -> Vec<Probe> {
    let reach = reachable(&plan.nodes, &[plan.target]);
    // The sources steps read are planned after them: probed first (a URL
    // or git source cannot be known without fetching: it stays unknown; a
    // local one is selected and checksummed, once, for the step too).
    let n = plan.nodes.len();
    let read = |i: &usize| plan.nodes[*i].op.op.is_read_source();
    let order = (0..n).filter(read).chain((0..n).filter(|i| !read(i)));
    let mut out: Vec<Probe> = vec![Probe::default(); n];
    for i in order {
        let node = &plan.nodes[i];
        if !reach[i] {
            continue;
        }
        let p = match &node.op.op {
            VertexOp::Step(_) => probe_step(ctx, i, &node.op, &node.deps, &out),
            // A stage base is its input's state.
            VertexOp::Stage => node
                .deps
                .first()
                .map(|d| Probe {
                    key: out[*d].key.clone(),
                    layers: out[*d].layers.clone(),
                    hit: out[*d].hit.clone(),
                    local: out[*d].local,
                    keyed: None,
                })
                .unwrap_or_default(),
            op => source::probe(ctx, op)
                .map(|(key, layers)| Probe {
                    key: Some(key),
                    layers,
                    ..Probe::default()
                })
                .unwrap_or_default(),
        };
        out[i] = p;
    }
    out
}

fn probe_step(ctx: &Ctx, i: usize, v: &Vertex, deps: &[usize], done: &[Probe]) -> Probe {
    let Some(keys) = deps
        .iter()
        .map(|d| done[*d].key.clone())
        .collect::<Option<Vec<String>>>()
    else {
        return Probe::default();
    };
    let prev_layers = deps.first().and_then(|d| done[*d].layers.clone());
    let step = Step {
        ctx,
        index: i,
        vertex: v,
        input_keys: keys.clone(),
        prev_layers: prev_layers.clone(),
        inputs: &[],
    };
    let Ok(Some(keyed)) = step.cache_key(true) else {
        return Probe::default();
    };
    let key = keyed.key.clone();
    let (hit, local) = if cache_disabled(ctx.req, v) {
        (None, false)
    } else {
        match local_hit(ctx.store, &key).ok().flatten() {
            Some(h) => (Some(h), true),
            None => (ctx.imported.peek(&key).cloned(), false),
        }
    };
    let layers = match (&hit, prev_layers) {
        (Some(h), Some(mut l)) => {
            l.extend(h.layer.iter().cloned());
            Some(l)
        }
        _ => None,
    };
    Probe {
        key: Some(key),
        layers,
        hit,
        local,
        keyed: Some((keys, keyed)),
    }
}

/// Which vertices must run (see `solver::lazy::needed`): a step that hits
/// does not need what it reads.
pub(super) fn needed(plan: &Plan, probes: &[Probe]) -> Vec<bool> {
    let hits: Vec<bool> = plan
        .nodes
        .iter()
        .zip(probes)
        .map(|(n, p)| n.op.is_step() && p.hit.is_some())
        .collect();
    crate::solver::lazy::needed(&plan.nodes, plan.target, &hits)
}

/// The state of a vertex that is not run: its key only (a local source:
/// its selection too). A step that hits is reported CACHED, and a local
/// hit is kept for `--cache-to`.
pub(super) fn skipped(ctx: &Ctx, i: usize, v: &Vertex, probe: &Probe) -> FsState {
    // A local source the probe selected is there already (memoized):
    // passed on, so a step that was to hit and then misses (its entry
    // pruned meanwhile) still has its files.
    if let (VertexOp::Local { .. }, Some(_)) = (&v.op, &probe.key)
        && let Ok(local) = crate::vertex::local::selected(ctx, &v.op)
    {
        return FsState {
            local: Some(local.clone()),
            ..FsState::empty(local.key.clone())
        };
    }
    if let (true, Some(hit), Some(key)) = (v.is_step(), &probe.hit, &probe.key) {
        ctx.cached.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = v.name.clone();
        emit(ctx, i, EventKind::Cached { name });
        if probe.local {
            lock(&ctx.results).insert(key.clone(), hit.clone());
        }
    }
    FsState {
        skipped: true,
        ..FsState::empty(probe.key.clone().unwrap_or_default())
    }
}
