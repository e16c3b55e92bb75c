//! What the progress display knows before the solver starts: how many
//! entries the build will show (the tty's `(7/10)`), and which base images
//! are downloaded in their own `FROM` entry rather than lazily inside the
//! step that first reads them — so that a pull shows with its real time
//! and bytes instead of `0.0s`, its time charged to the next step.

use frontend::Op;

use super::lazy::Probe;
use super::plan::{Plan, VertexOp};
use crate::solver::schedule::reachable;

/// The entries the build shows: every reachable step that runs or is
/// reported CACHED, and every image base that runs.
pub(super) fn shown(plan: &Plan, needed: &[bool], probes: &[Probe]) -> usize {
    let reach = reachable(&plan.nodes, &[plan.target]);
    plan.nodes
        .iter()
        .enumerate()
        .filter(|(i, n)| {
            reach[*i]
                && match n.op.op {
                    VertexOp::Step(_) => needed[*i] || probes[*i].hit.is_some(),
                    VertexOp::Image { .. } => needed[*i],
                    VertexOp::Scratch
                    | VertexOp::Stage
                    | VertexOp::Http { .. }
                    | VertexOp::Git { .. }
                    | VertexOp::CopyImage { .. }
                    | VertexOp::Local { .. } => false,
                }
        })
        .count()
}

/// Image bases whose layers the build certainly reads: the step right on
/// top of them is a RUN that runs (a miss) and needs them unpacked. Other
/// bases stay lazy (a COPY on top of an image needs no base bytes for the
/// local store).
pub(super) fn prefetch(plan: &Plan, needed: &[bool], probes: &[Probe]) -> Vec<bool> {
    let mut out = vec![false; plan.nodes.len()];
    for (j, n) in plan.nodes.iter().enumerate() {
        let VertexOp::Step(op) = &n.op.op else {
            continue;
        };
        let Some(&base) = n.deps.first() else {
            continue;
        };
        let on_image = matches!(plan.nodes[base].op.op, VertexOp::Image { .. });
        let runs = matches!(op.as_ref(), Op::Exec(_));
        if on_image && runs && needed[j] && probes[j].hit.is_none() {
            out[base] = true;
        }
    }
    out
}
