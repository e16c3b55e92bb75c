//! The exec op (RUN): its key — the definition, the inputs' keys, the
//! digests of the images its `--mount from=` reads — and its execution in
//! the worker's sandbox with its mounts.

use std::collections::BTreeMap;

use anyhow::anyhow;
use frontend::ExecOp;
use frontend::runmount::MountType;
use runtime::sandbox::run_mounts::BindFrom;

use super::Step;
use crate::lock;
use crate::ops::{Layer, file, source};
use crate::pipeline::ctx::emit;
use crate::progress::EventKind;
use crate::progress::clip::{Admit, StepLog};
use crate::solver::cache_key::{KeyInputs, cache_key};
use crate::solver::solve::Keyed;

/// What a RUN's key resolved: the manifest digest of each image a
/// `--mount from=` names, so that the step reads what its key says.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    pub images: BTreeMap<String, String>,
}

/// Whether a mount reads a filesystem from an image (secrets and ssh
/// agents name no filesystem with `from`).
fn image_of(m: &frontend::runmount::RunMount) -> Option<&str> {
    match (m.from_stage, m.from.as_deref()) {
        (None, Some(r)) if !matches!(m.kind, MountType::Secret | MountType::Ssh) => Some(r),
        _ => None,
    }
}

/// The key of a RUN: its definition, its inputs (the state it runs on and
/// each `--mount from=<stage>`), and each `--mount from=<image>`'s digest.
pub fn key(
    step: &Step,
    e: &ExecOp,
    def: &str,
    mut facts: BTreeMap<String, String>,
) -> anyhow::Result<Keyed<super::Prepared>> {
    for (k, v) in &e.env {
        facts.insert(
            format!("env:{k}"),
            crate::solver::explain::recorded_value(k, v),
        );
    }
    // Images that `--mount=…,from=<image>` reads are part of the key.
    let mut prepared = Prepared::default();
    let mut digests = Vec::new();
    for reference in e.mounts.iter().filter_map(image_of) {
        let d = step.ctx.resolve_image(reference, "--mount from")?;
        facts.insert(format!("base:{reference}"), d.clone());
        prepared.images.insert(reference.to_string(), d.clone());
        digests.push(d);
    }
    let joined = digests.join(",");
    let key = cache_key(&KeyInputs {
        definition: def,
        inputs: &step.input_keys,
        context: None,
        base_digest: (!digests.is_empty()).then_some(joined.as_str()),
    });
    Ok(Keyed {
        key,
        facts,
        prepared: super::Prepared::Exec(prepared),
    })
}

/// Runs a RUN on its inputs in the worker's sandbox.
pub fn run(
    step: &Step,
    e: &ExecOp,
    prepared: &Prepared,
    key: &str,
) -> anyhow::Result<Option<Layer>> {
    let ctx = step.ctx;
    let i = step.index;
    let mut log = StepLog::from_env();
    let mut out = |line: &str| {
        let shown = match log.admit(line) {
            Admit::Show => Some(line.to_string()),
            Admit::Clip(notice) => Some(notice),
            Admit::Drop => None,
        };
        if let Some(line) = shown {
            emit(ctx, i, EventKind::Output { line });
        }
        // The tail for a failure message follows the output to its end.
        let mut t = lock(&ctx.tails);
        let v = t.entry(i).or_default();
        v.push(line.to_string());
        if v.len() > 20 {
            v.remove(0);
        }
    };
    // Filesystems that `from=` mounts read: a stage (its output is one of
    // this step's inputs) or an image. A bind reads the shared layer
    // directories through a snapshot; a cache is seeded by the host side,
    // which needs a tree it can read as the invoking user.
    let mut keep_dirs = Vec::new();
    let mut keep_sources = Vec::new();
    let mut from_dirs = Vec::new();
    let mut next_input = 1;
    for m in &e.mounts {
        let layers = if m.from_stage.is_some() {
            let l = step
                .inputs
                .get(next_input)
                .ok_or_else(|| anyhow!("internal: RUN --mount from a stage has no input"))?
                .layers
                .clone();
            next_input += 1;
            Some(l)
        } else if let Some(reference) = image_of(m) {
            let digest = prepared
                .images
                .get(reference)
                .ok_or_else(|| anyhow!("internal: --mount from={reference} was not resolved"))?;
            Some(source::image_layers(
                ctx.store,
                &ctx.real_ref(reference),
                digest,
            )?)
        } else {
            None
        };
        from_dirs.push(match layers {
            Some(l) if m.kind == MountType::Cache => {
                let dir = file::materialize(ctx.store, &ctx.executor, &l)?;
                let p = dir.path().to_path_buf();
                keep_dirs.push(dir);
                Some(BindFrom::Dir(p))
            }
            Some(l) => {
                let src = ctx.executor.mount_source(&l)?;
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
        .any(|m| m.kind == MountType::Bind && m.from.is_none());
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
    let prev = step
        .inputs
        .first()
        .ok_or_else(|| anyhow!("internal: a RUN has no state to run on"))?;
    ctx.executor.run(
        &prev.layers,
        e,
        ctx.req.network,
        mounts,
        key,
        ctx.epoch,
        &mut out,
    )
}
