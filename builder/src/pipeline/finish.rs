//! The end of a build: the image config (history, created time, labels,
//! an inline cache), the manifest written into the store, tags, outputs,
//! `--iidfile` and `--metadata-file`.

use std::collections::BTreeMap;

use anyhow::{Context as _, anyhow};
use cache::reference::Reference;
use frontend::Base;

use super::{Built, Ctx, FsState, image, remote_cache, resolver};
use crate::ops::source;

/// Assembles, stores, tags and exports the image.
pub(super) fn finish_image(
    ctx: &Ctx,
    graph: &frontend::BuildGraph,
    resolver: &resolver::StoreResolver,
    state: &FsState,
    inline_cache: Option<serde_json::Value>,
) -> anyhow::Result<Built> {
    let target = graph
        .target_stage()
        .ok_or_else(|| anyhow!("internal: no target stage"))?;
    // The chain of stages from the image base to the target.
    let mut chain = vec![target];
    while let Base::Stage { id } = &chain[chain.len() - 1].base {
        chain.push(
            graph
                .stage(*id)
                .ok_or_else(|| anyhow!("internal: missing stage {id}"))?,
        );
    }
    chain.reverse();
    let mut base_history = Vec::new();
    if let Base::Image {
        reference, digest, ..
    } = &chain[0].base
    {
        let d: cache::digest::Digest = digest.parse().map_err(|e| anyhow!("{reference}: {e}"))?;
        let img = ctx.store.image(&d, &cache::platform::Platform::host())?;
        let raw: serde_json::Value = serde_json::from_slice(img.config.raw())?;
        if let Some(h) = raw.get("history").and_then(|h| h.as_array()) {
            base_history = h.clone();
        }
    }
    // The image is as old as its newest step (BuildKit's rule): a fully
    // cached build gives the same config, hence the same image id. With no
    // step at all it keeps the base's time.
    let base_created = base_history
        .last()
        .and_then(|h| h.get("created"))
        .and_then(|c| c.as_str())
        .map(str::to_string);
    let created = state
        .created
        .iter()
        .filter(|c| !c.is_empty())
        .max()
        .cloned()
        .or(base_created)
        .unwrap_or_else(|| image::created_at(ctx.epoch));
    let history = history(&chain, state, &created);
    let mut config = target.config.clone();
    for (k, v) in &ctx.req.labels {
        config.labels.insert(k.clone(), v.clone());
    }
    let mut cfg = image::config_json(
        &config,
        target.author.as_deref(),
        &base_history,
        &history,
        &state.layers,
        &created,
    )?;
    if let Some(doc) = inline_cache {
        cfg = remote_cache::with_inline_cache(&cfg, doc)?;
    }
    keep_layers(ctx, state)?;
    let descs: Vec<cache::image::Descriptor> =
        state.layers.iter().map(|l| l.desc.clone()).collect();
    let img = ctx.store.write_image(
        &cfg,
        &descs,
        cache::image::media_type::ManifestFormat::Docker,
    )?;
    let img = if ctx.req.annotations.is_empty() {
        img
    } else {
        cache::image::with_annotations(ctx.store.blobs(), &img, &ctx.req.annotations)?
    };
    let mut names = Vec::new();
    for t in &ctx.req.tags {
        let r = Reference::parse(t).map_err(|e| anyhow!("-t {t}: {e}"))?;
        ctx.store.tag_image(&r, &img.manifest_digest)?;
        names.push(r);
    }
    crate::output::export(
        ctx.store,
        &ctx.executor,
        &img,
        &state.layers,
        &names,
        &ctx.req.outputs,
        &ctx.tasks,
    )?;
    if ctx.req.load {
        load(ctx, &img, &names)?;
    }
    let built = Built {
        image_id: img.id().to_string(),
        manifest_digest: img.manifest_digest.to_string(),
        size: img.size(),
    };
    if let Some(p) = &ctx.req.iidfile {
        std::fs::write(p, &built.image_id).with_context(|| format!("--iidfile {}", p.display()))?;
    }
    if let Some(p) = &ctx.req.metadata_file {
        let resolved = crate::lock(&resolver.resolved).clone();
        let md = serde_json::json!({
            "containerimage.digest": built.manifest_digest,
            "containerimage.config.digest": built.image_id,
            "image.name": ctx.req.tags.join(","),
            "strata.base-images": resolved.into_iter().collect::<BTreeMap<_, _>>(),
        });
        std::fs::write(p, serde_json::to_vec_pretty(&md)?)
            .with_context(|| format!("--metadata-file {}", p.display()))?;
    }
    Ok(built)
}

/// The history of the steps of `chain` (the stages from the image base to
/// the target). Steps that made no layer are recorded as empty layers;
/// metadata entries take the time of the step before them.
fn history(chain: &[&frontend::Stage], state: &FsState, created: &str) -> Vec<image::HistoryEntry> {
    let mut made = state.made_layer.iter().zip(state.created.iter());
    let mut history = Vec::new();
    let mut last_time = created.to_string();
    for st in chain {
        for h in &st.history {
            let empty = if h.empty_layer {
                true
            } else {
                match made.next() {
                    Some((m, t)) => {
                        if !t.is_empty() {
                            last_time = t.clone();
                        }
                        !m
                    }
                    None => false,
                }
            };
            history.push(image::HistoryEntry {
                created_by: h.created_by.clone(),
                comment: h.comment.clone(),
                empty_layer: empty,
                created: last_time.clone(),
            });
        }
    }
    history
}

/// Makes every layer of the image nameable by the store: records for layers
/// built here, blobs or origin records for base layers.
fn keep_layers(ctx: &Ctx, state: &FsState) -> anyhow::Result<()> {
    // Only outputs that carry bytes need every layer here; the local store
    // names absent ones through origin records and fetches them when a
    // later save, push or build needs them.
    // Layers built here are named through their directories' records.
    let needs_bytes = crate::output::needs_layer_bytes(&ctx.req.outputs);
    for l in &state.layers {
        if crate::ops::commit::is_dir_layer(ctx.store, l)
            || (l.origin.is_none()
                && l.desc.digest == l.diff_id
                && !ctx.store.blobs().has(&l.desc.digest))
        {
            crate::ops::commit::record(ctx.store, l)?;
        } else if needs_bytes {
            source::ensure_blob(ctx.store, ctx.executor.registry()?, l)?;
        } else {
            source::record_origin(ctx.store, l)?;
        }
    }
    Ok(())
}

/// `--load`, as a task of its own that names the engine that took the image.
fn load(ctx: &Ctx, img: &cache::image::Image, names: &[Reference]) -> anyhow::Result<()> {
    let task = ctx.tasks.start("loading the image (--load)");
    let r = crate::output::load::into_engine(ctx.store, &ctx.executor, img, names);
    if let Ok(engine) = &r {
        task.line(format!("loaded into {}", engine.display()));
    }
    task.end(&r);
    r.map(|_| ())
}
