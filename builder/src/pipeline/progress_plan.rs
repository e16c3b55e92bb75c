//! What the progress display knows before the solver starts: how many
//! entries the build will show (the tty's `(7/10)`), and which base images
//! are downloaded in their own `FROM` entry rather than lazily inside the
//! step that first reads them — so that a pull shows with its real time
//! and bytes instead of `0.0s`, its time charged to the next step.

use frontend::{Base, Op};

use super::lazy::{Probe, reachable};
use super::plan::{Plan, Vertex};

/// The entries the build shows: every reachable step that runs or is
/// reported CACHED, and every image base that runs.
pub(super) fn shown(
    graph: &frontend::BuildGraph,
    plan: &Plan,
    needed: &[bool],
    probes: &[Probe],
) -> usize {
    let reach = reachable(plan);
    plan.nodes
        .iter()
        .enumerate()
        .filter(|(i, n)| {
            reach[*i]
                && match n.op {
                    Vertex::Step { .. } => needed[*i] || probes[*i].hit.is_some(),
                    Vertex::Base { stage } => {
                        needed[*i] && matches!(graph.stages[stage].base, Base::Image { .. })
                    }
                }
        })
        .count()
}

/// Image bases whose layers the build certainly reads: the step right on
/// top of them is a RUN that runs (a miss) and needs them unpacked. Other
/// bases stay lazy (a COPY on top of an image needs no base bytes for the
/// local store).
pub(super) fn prefetch(
    graph: &frontend::BuildGraph,
    plan: &Plan,
    needed: &[bool],
    probes: &[Probe],
) -> Vec<bool> {
    let mut out = vec![false; plan.nodes.len()];
    for (j, n) in plan.nodes.iter().enumerate() {
        let Vertex::Step { stage, step } = n.op else {
            continue;
        };
        let Some(&base) = n.deps.first() else {
            continue;
        };
        let on_image = matches!(plan.nodes[base].op, Vertex::Base { stage: s }
            if matches!(graph.stages[s].base, Base::Image { .. }));
        let runs = matches!(graph.stages[stage].steps[step].op, Op::Exec(_));
        if on_image && runs && needed[j] && probes[j].hit.is_none() {
            out[base] = true;
        }
    }
    out
}
