//! Not running what the build does not need, as BuildKit's lazy solve
//! does: a stage whose result only feeds steps that hit the cache (a
//! `COPY --from` or `RUN --mount=from=` whose own key is in the cache) is
//! never run, unpacked or downloaded.
//!
//! Before the solver starts, every vertex the target reaches is *probed*:
//! its key is computed as the step would compute it ([`super::step_key`] in
//! probe mode: no downloads, no `--chown` names without layers), and looked
//! up in the local store and in `--cache-from` imports. Walking back from
//! the target, a vertex is needed when a needed vertex builds on it (its
//! first input) or reads it and misses. Vertices that are not needed get a
//! key-only state; those that hit are still reported CACHED, as BuildKit
//! reports them. A probe that cannot know a key (a download, an unreadable
//! input) only makes more vertices needed, never fewer. The keys the probe
//! computed are kept (`Ctx::probed`), so a step that then runs does not
//! select and checksum its files again.

use frontend::Base;

use super::plan::{Plan, Vertex};
use super::step_key::step_key;
use super::{Ctx, FsState, cache_disabled, emit, image_key, local_hit, scratch_key};
use crate::ops::{CachedResult, Layer, source};
use crate::progress::EventKind;

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
}

/// Probes every vertex the target reaches, in plan order (inputs first).
pub(super) fn probe(ctx: &Ctx, graph: &frontend::BuildGraph, plan: &Plan) -> Vec<Probe> {
    let reach = reachable(plan);
    let mut out: Vec<Probe> = Vec::with_capacity(plan.nodes.len());
    for (i, node) in plan.nodes.iter().enumerate() {
        if !reach[i] {
            out.push(Probe::default());
            continue;
        }
        let p = match node.op {
            Vertex::Base { stage } => match &graph.stages[stage].base {
                Base::Scratch => Probe {
                    key: Some(scratch_key()),
                    layers: Some(Vec::new()),
                    ..Probe::default()
                },
                Base::Stage { .. } => node
                    .deps
                    .first()
                    .map(|d| out[*d].clone())
                    .unwrap_or_default(),
                Base::Image {
                    reference, digest, ..
                } => Probe {
                    key: Some(image_key(reference, digest)),
                    layers: source::image_layers(ctx.store, &ctx.real_ref(reference), digest).ok(),
                    ..Probe::default()
                },
            },
            Vertex::Step { stage, step } => {
                probe_step(ctx, graph, i, stage, step, &node.deps, &out)
            }
        };
        out.push(p);
    }
    out
}

fn probe_step(
    ctx: &Ctx,
    graph: &frontend::BuildGraph,
    i: usize,
    stage: usize,
    step: usize,
    deps: &[usize],
    done: &[Probe],
) -> Probe {
    let Some(keys) = deps
        .iter()
        .map(|d| done[*d].key.clone())
        .collect::<Option<Vec<String>>>()
    else {
        return Probe::default();
    };
    let prev_layers = deps.first().and_then(|d| done[*d].layers.clone());
    let Ok(Some(sk)) = step_key(
        ctx,
        graph,
        stage,
        step,
        prev_layers.as_deref(),
        keys.clone(),
        true,
    ) else {
        return Probe::default();
    };
    let key = sk.key.clone();
    ctx.probed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(i, (keys, sk));
    let (hit, local) = if cache_disabled(ctx.req, &graph.stages[stage]) {
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
    }
}

/// Which vertices must run: the target, what a needed vertex builds on, and
/// what a needed vertex reads when it misses. Vertices the solver runs once
/// for several places (same digest) are needed if any place needs them.
pub(super) fn needed(plan: &Plan, probes: &[Probe]) -> Vec<bool> {
    let n = plan.nodes.len();
    let mut needed = vec![false; n];
    needed[plan.target] = true;
    loop {
        for i in (0..n).rev() {
            if !needed[i] {
                continue;
            }
            let node = &plan.nodes[i];
            let hit = matches!(node.op, Vertex::Step { .. }) && probes[i].hit.is_some();
            for (k, d) in node.deps.iter().enumerate() {
                if k == 0 || !hit {
                    needed[*d] = true;
                }
            }
        }
        let mut changed = false;
        for i in 0..n {
            if needed[i] {
                continue;
            }
            let twin_needed = plan
                .nodes
                .iter()
                .enumerate()
                .any(|(j, o)| needed[j] && o.digest == plan.nodes[i].digest);
            if twin_needed {
                needed[i] = true;
                changed = true;
            }
        }
        if !changed {
            return needed;
        }
    }
}

/// The state of a vertex that is not run: its key only. A step that hits
/// is reported CACHED, and a local hit is kept for `--cache-to`.
pub(super) fn skipped(
    ctx: &Ctx,
    graph: &frontend::BuildGraph,
    plan: &Plan,
    i: usize,
    v: &Vertex,
    probe: &Probe,
) -> FsState {
    if let (Vertex::Step { .. }, Some(hit), Some(key)) = (v, &probe.hit, &probe.key) {
        ctx.cached.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        emit(
            ctx,
            i,
            EventKind::Cached {
                name: plan.progress_name(graph, v),
            },
        );
        if probe.local {
            ctx.results
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone(), hit.clone());
        }
    }
    FsState {
        skipped: true,
        ..FsState::empty(probe.key.clone().unwrap_or_default())
    }
}

/// The vertices the target reaches.
pub(super) fn reachable(plan: &Plan) -> Vec<bool> {
    let mut seen = vec![false; plan.nodes.len()];
    let mut stack = vec![plan.target];
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        stack.extend(plan.nodes[i].deps.iter().copied());
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solver::schedule::Node;

    /// Stage A (0: base, 1: RUN); stage B (2: base, 3: COPY --from=A, the
    /// target).
    fn plan(twin_of_1: bool) -> Plan {
        let node = |op, deps: Vec<usize>, digest: &str| Node {
            op,
            deps,
            digest: digest.to_string(),
        };
        let mut nodes = vec![
            node(Vertex::Base { stage: 0 }, vec![], "a0"),
            node(Vertex::Step { stage: 0, step: 0 }, vec![0], "a1"),
            node(Vertex::Base { stage: 1 }, vec![], "b0"),
            node(Vertex::Step { stage: 1, step: 0 }, vec![2, 1], "b1"),
        ];
        let mut target = 3;
        if twin_of_1 {
            // Stage B also runs the very same RUN as stage A, on its own.
            nodes.push(node(Vertex::Step { stage: 1, step: 1 }, vec![3], "b2"));
            nodes.push(node(Vertex::Step { stage: 1, step: 2 }, vec![0], "a1"));
            nodes[4].deps = vec![3, 5];
            target = 4;
        }
        Plan { nodes, target }
    }

    fn probes(n: usize, hits: &[usize]) -> Vec<Probe> {
        (0..n)
            .map(|i| Probe {
                key: Some(format!("k{i}")),
                hit: hits.contains(&i).then_some(CachedResult {
                    layer: None,
                    created: None,
                }),
                ..Probe::default()
            })
            .collect()
    }

    #[test]
    fn a_hit_does_not_need_the_stage_it_copies_from() {
        let p = plan(false);
        assert_eq!(needed(&p, &probes(4, &[3])), [false, false, true, true]);
        assert_eq!(needed(&p, &probes(4, &[])), [true, true, true, true]);
        // The source's own cache state does not matter, only the reader's.
        assert_eq!(needed(&p, &probes(4, &[1])), [true, true, true, true]);
    }

    #[test]
    fn work_shared_with_a_needed_place_is_needed_everywhere() {
        let p = plan(true);
        // 4 misses and reads 5, the twin of 1: so 1 (and its base) run too.
        let n = needed(&p, &probes(6, &[3]));
        assert!(n[5] && n[1] && n[0], "{n:?}");
    }
}
