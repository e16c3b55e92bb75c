//! The build's vertices as ops with keys (BuildKit's `llbsolver/ops`): each
//! op kind has one file holding its cache map — what its key is made of —
//! and its execution: [`exec`] (RUN), [`file`] (COPY/ADD/WORKDIR),
//! [`source`] (a stage's base: scratch, an image, another stage; and what
//! a step reads: a URL, a git repository, an image `COPY --from` names)
//! and [`local`] (the files a COPY/ADD selects from the build context or
//! a `--build-context name=DIR`, keyed by their checksum).
//!
//! [`Step`] is a filesystem step as the solver's [`Op`]: the solver's
//! cache protocol (`solver::solve`) computes its key, asks [`store`]'s
//! cache (the local store, key locks, `--cache-from` imports) and runs
//! it only on a miss. The work itself is done by the worker
//! (`ops::exec::Executor`: sandboxes, layer directories, commits).

pub mod exec;
pub mod file;
pub mod local;
pub mod source;
pub mod store;

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};
use frontend::Op as StepKind;

use crate::ops::{CachedResult, Layer};
use crate::pipeline::ctx::{Ctx, FsState};
use crate::pipeline::image;
use crate::pipeline::plan::{Vertex, VertexOp};
use crate::solver::cache_key::definition_digest;
use crate::solver::solve::{Keyed, Op, Policy, solve_vertex};

/// What computing a step's key leaves for running it.
#[derive(Debug, Clone)]
pub enum Prepared {
    Exec(exec::Prepared),
    File(file::Prepared),
}

/// A filesystem step of the plan with what it runs on: the solver's op.
pub struct Step<'a> {
    pub ctx: &'a Ctx<'a>,
    /// Its index in the plan (progress events are numbered by it).
    pub index: usize,
    pub vertex: &'a Vertex,
    /// The keys of its inputs: the state it runs on, then what it reads.
    pub input_keys: Vec<String>,
    /// The layers it runs on, when known (a probe may not know them).
    pub prev_layers: Option<Vec<Layer>>,
    /// Its inputs' states when it runs (empty while probing).
    pub inputs: &'a [FsState],
}

impl Step<'_> {
    fn kind(&self) -> anyhow::Result<&StepKind> {
        match &self.vertex.op {
            VertexOp::Step(op) => Ok(op),
            _ => Err(anyhow!("internal: a stage's base is not a step")),
        }
    }

    /// The definition every step's key starts from: its op, how it runs
    /// (sandbox options, `SOURCE_DATE_EPOCH`) and its inputs' keys.
    fn definition(&self) -> anyhow::Result<(String, BTreeMap<String, String>)> {
        let ctx = self.ctx;
        let op = self.kind()?;
        let mut def = serde_json::to_value(op)?;
        if let Some(o) = def.as_object_mut() {
            o.remove("proxy_env");
            // COPY/ADD/WORKDIR results from before destinations were placed in
            // the image below (ops::dest) can contradict it: never reuse them.
            if matches!(op, StepKind::File(_)) {
                o.insert("placement".into(), "in-image".into());
            }
            // `--add-host`, `--shm-size`, `--ulimit` are part of what a RUN
            // step runs with, as in BuildKit's exec op.
            if let (StepKind::Exec(_), Some(part)) = (op, ctx.req.step_sandbox.key_part()) {
                o.insert("sandbox".into(), part);
            }
            // A layer's mtimes are clamped to it: another epoch, another layer.
            if let Some(e) = ctx.epoch {
                o.insert("source_date_epoch".into(), e.into());
            }
        }
        let mut facts: BTreeMap<String, String> = BTreeMap::new();
        facts.insert("instruction".into(), self.vertex.instruction.clone());
        for (n, k) in self.input_keys.iter().enumerate() {
            facts.insert(format!("input:{n}"), k.clone());
        }
        Ok((definition_digest(&def), facts))
    }
}

impl Op for Step<'_> {
    type Prepared = Prepared;
    type Output = CachedResult;

    fn cache_key(&self, probe: bool) -> anyhow::Result<Option<Keyed<Prepared>>> {
        let (def, facts) = self.definition()?;
        match self.kind()? {
            StepKind::Exec(e) => exec::key(self, e, &def, facts).map(Some),
            StepKind::File(f) => file::key(self, f, &def, facts, probe),
        }
    }

    fn check_inputs(&self) -> anyhow::Result<()> {
        // A stage skipped because this step was to hit the cache (a prune by
        // another process in between can make it miss) has nothing to read.
        if self.inputs.iter().skip(1).any(|s| s.skipped) {
            bail!(
                "the cache entry this step was found in is gone (pruned meanwhile?); run the build again"
            );
        }
        Ok(())
    }

    fn exec(&self, key: &str, prepared: Prepared) -> anyhow::Result<CachedResult> {
        let layer = match (self.kind()?, prepared) {
            (StepKind::Exec(e), Prepared::Exec(p)) => exec::run(self, e, &p, key)?,
            (StepKind::File(f), Prepared::File(p)) => file::run(self, f, p)?,
            _ => bail!("internal: a step's key was prepared for another op"),
        };
        Ok(CachedResult {
            layer,
            created: Some(image::created_at(self.ctx.epoch)),
        })
    }
}

/// Runs step `i` on its inputs with the solver's cache protocol. `probed`:
/// the key the lazy probe computed, with the input keys it was computed on.
pub fn run_step(
    ctx: &Ctx,
    i: usize,
    vertex: &Vertex,
    inputs: &[FsState],
    probed: Option<(Vec<String>, Keyed<Prepared>)>,
) -> anyhow::Result<FsState> {
    let prev = &inputs[0];
    let step = Step {
        ctx,
        index: i,
        vertex,
        input_keys: inputs.iter().map(|s| s.key.clone()).collect(),
        prev_layers: Some(prev.layers.clone()),
        inputs,
    };
    let known = probed
        .filter(|(keys, _)| *keys == step.input_keys)
        .map(|(_, k)| k);
    let cache = store::StoreCache::new(ctx, vertex, prev);
    let events = store::StepEvents {
        ctx,
        index: i,
        name: &vertex.name,
    };
    let policy = Policy {
        use_cache: !store::cache_disabled(ctx.req, vertex),
        explain: ctx.req.explain_cache,
    };
    let solved = solve_vertex(&step, known, &cache, &events, policy)?;
    Ok(next_state(prev, solved.key, &solved.value))
}

/// The state a step leaves: `prev` with the step's layer on top.
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
