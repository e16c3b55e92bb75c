//! The source ops: a stage's base — `FROM scratch` (no layers), `FROM
//! <image>` (its layers, keyed by the manifest digest) or `FROM <stage>`
//! (that stage's state, passed on). An image's layers stay lazy unless the
//! step on top certainly reads them; then they are downloaded here, so the
//! pull shows in its own progress entry with its time and bytes.

use crate::ops::{Layer, source};
use crate::pipeline::plan::VertexOp;
use cache::store::Store;

use crate::pipeline::ctx::{Ctx, FsState, emit};
use crate::progress::EventKind;
use crate::solver::cache_key::{KeyInputs, cache_key, definition_digest};

/// The key of `FROM scratch`.
pub fn scratch_key() -> String {
    cache_key(&KeyInputs {
        definition: &definition_digest(&serde_json::json!({"source": "scratch"})),
        ..Default::default()
    })
}

/// The key of `FROM <image>` at a manifest digest.
pub fn image_key(reference: &str, digest: &str) -> String {
    let def = definition_digest(&serde_json::json!({"source": "image", "ref": reference}));
    cache_key(&KeyInputs {
        definition: &def,
        base_digest: Some(digest),
        ..Default::default()
    })
}

/// The key and layers of a source before anything runs (`None` for a
/// stage base, which is its input's; layers `None` when not known).
pub fn probe(ctx: &Ctx, op: &VertexOp) -> Option<(String, Option<Vec<Layer>>)> {
    match op {
        VertexOp::Scratch => Some((scratch_key(), Some(Vec::new()))),
        VertexOp::Image { reference, digest } => Some((
            image_key(reference, digest),
            source::image_layers(ctx.store, &ctx.real_ref(reference), digest).ok(),
        )),
        _ => None,
    }
}

/// Runs source vertex `i` (`name` in progress). `prefetch`: download the
/// image's layers now (the step on top runs on them).
pub fn run(
    ctx: &Ctx,
    i: usize,
    op: &VertexOp,
    name: &str,
    inputs: &[FsState],
    prefetch: bool,
) -> anyhow::Result<FsState> {
    let (reference, digest) = match op {
        VertexOp::Scratch => return Ok(FsState::empty(scratch_key())),
        VertexOp::Image { reference, digest } => (reference, digest),
        VertexOp::Stage | VertexOp::Step(_) => {
            return inputs
                .first()
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("internal: FROM a stage has no input"));
        }
    };
    let name = name.to_string();
    emit(ctx, i, EventKind::Started { name });
    let layers = source::image_layers(ctx.store, &ctx.real_ref(reference), digest)?;
    // The next step runs on these layers: download them here, unpacking
    // while they arrive, so the pull shows with its time and bytes. Layers
    // already unpacked (built here, or pulled before) need no download.
    if prefetch {
        let mut bytes = 0;
        for l in &layers {
            if needs_download(ctx.store, l) {
                if ctx.executor.fetch_unpacked(l)? {
                    let line =
                        format!("{}: unpacked while downloading", &l.desc.digest.hex()[..12]);
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

/// Whether a base layer must be downloaded before a step can run on it:
/// not in the blob store and not already a layer directory.
fn needs_download(store: &Store, l: &crate::ops::Layer) -> bool {
    !store.blobs().has(&l.desc.digest)
        && !crate::ops::commit::is_dir_layer(store, l)
        && !source::layer_dir_ready(&source::layer_dir(store, l))
}
