//! The source ops: a stage's base — `FROM scratch` (no layers), `FROM
//! <image>` (its layers, keyed by the manifest digest) or `FROM <stage>`
//! (that stage's state, passed on) — and what steps read: URLs (keyed by
//! the downloaded content's digests) and git repositories (keyed by the
//! commit the reference resolves to) that `ADD` fetches, and images
//! `COPY --from=` names (keyed by their manifest digest); the local
//! sources (the context, a named directory) are `local.rs`. An image's layers stay lazy unless
//! the step on top certainly reads them; then they are downloaded here, so
//! the pull shows in its own progress entry with its time and bytes.

use std::path::PathBuf;
use std::sync::Arc;

use crate::context::{git, git_env, remote};
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
        // Local: selected and checksummed now (once: the vertex and the
        // step reading it take the same selection).
        VertexOp::Local { .. } => Some((
            super::local::selected(ctx, op).ok()?.key.clone(),
            Some(Vec::new()),
        )),
        VertexOp::CopyImage { reference } => {
            let digest = ctx.resolve_image(reference, "--from").ok()?;
            Some((
                image_key(reference, &digest),
                source::image_layers(ctx.store, &ctx.real_ref(reference), &digest).ok(),
            ))
        }
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
        VertexOp::Http { .. } | VertexOp::Git { .. } => return fetch(ctx, op),
        VertexOp::CopyImage { reference } => return copy_image(ctx, reference),
        // Like a fetch, it shows no progress entry of its own: its time is
        // the step's.
        VertexOp::Local { .. } => {
            let local = super::local::selected(ctx, op)?;
            return Ok(FsState {
                local: Some(local.clone()),
                ..FsState::empty(local.key.clone())
            });
        }
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
        download_unpacked(ctx, i, &layers)?;
    }
    emit(ctx, i, EventKind::Finished);
    Ok(FsState {
        layers,
        ..FsState::empty(image_key(reference, digest))
    })
}

/// Downloads the layers a step will run on that are not here yet, a few at
/// a time: each goes into a directory of its own, so they unpack side by
/// side (inflating and writing files keep both cores busy where one layer
/// after another would leave one idle).
fn download_unpacked(ctx: &Ctx, i: usize, layers: &[crate::ops::Layer]) -> anyhow::Result<()> {
    use cache::transport::registry::parallel::{TRANSFER_WORKERS, for_each_bounded_as};
    let todo: Vec<&crate::ops::Layer> = layers
        .iter()
        .filter(|l| needs_download(ctx.store, l))
        .collect();
    let bytes = std::sync::Mutex::new(0);
    for_each_bounded_as(&todo, TRANSFER_WORKERS, |l| -> anyhow::Result<()> {
        if ctx.executor.fetch_unpacked(l)? {
            let line = format!("{}: unpacked while downloading", &l.desc.digest.hex()[..12]);
            emit(ctx, i, EventKind::Output { line });
        }
        // Under the lock, so the count a reader sees only grows.
        let mut done = crate::lock(&bytes);
        *done += l.desc.size;
        emit(ctx, i, EventKind::Bytes { bytes: *done });
        Ok(())
    })?;
    Ok(())
}

/// Whether a base layer must be downloaded before a step can run on it:
/// not in the blob store and not already a layer directory.
fn needs_download(store: &Store, l: &crate::ops::Layer) -> bool {
    !store.blobs().has(&l.desc.digest)
        && !crate::ops::commit::is_dir_layer(store, l)
        && !source::layer_dir_ready(&source::layer_dir(store, l))
}

/// `COPY --from=<image>`: the image resolved (once per build, whichever
/// steps and probes ask) and its layers, left lazy (the copy reads them).
/// Like a fetch, it shows no progress entry of its own.
fn copy_image(ctx: &Ctx, reference: &str) -> anyhow::Result<FsState> {
    let digest = ctx.resolve_image(reference, "--from")?;
    let layers = source::image_layers(ctx.store, &ctx.real_ref(reference), &digest)?;
    Ok(FsState {
        layers,
        ..FsState::empty(image_key(reference, &digest))
    })
}

/// What a URL or git source vertex fetched, for the `ADD` steps reading it.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The scratch directory holding the files, kept while a step may read
    /// them (removed when the build ends).
    pub dir: Arc<tempfile::TempDir>,
    /// Where the files are (a checkout: its directory, under `subdir`).
    pub root: PathBuf,
    /// The files, relative to `root` (a checkout: `.`).
    pub names: Vec<String>,
    pub what: FetchedWhat,
}

/// The result a fetch is keyed by.
#[derive(Debug, Clone)]
pub enum FetchedWhat {
    /// Each URL with its file's name and content digest.
    Urls(Vec<remote::Fetched>),
    /// The commit a git reference resolved to.
    Commit(String),
}

/// Runs a URL or git source vertex: downloads (or clones) into a scratch
/// directory of the store. Its state's key is made of its definition and
/// what it fetched (contents, commit), so a step reading it is keyed by
/// what was fetched, not by where from. It shows no progress entry of its
/// own: its time is the `ADD` step's, as before.
fn fetch(ctx: &Ctx, op: &VertexOp) -> anyhow::Result<FsState> {
    let dir = tempfile::Builder::new()
        .prefix("add-url-")
        .tempdir_in(ctx.store.scratch_dir())?;
    let def = definition_digest(&op.fetch_definition());
    let (root, names, what, key) = match op {
        VertexOp::Http { urls, checksum } => {
            let fetched = remote::fetch_all(urls, dir.path(), checksum.as_deref())?;
            let got: Vec<String> = fetched
                .iter()
                .map(|f| format!("{} {}", f.name, f.digest))
                .collect();
            let key = cache_key(&KeyInputs {
                definition: &def,
                context: Some(&got.join("\n")),
                ..Default::default()
            });
            let names = fetched.iter().map(|f| f.name.clone()).collect();
            let root = dir.path().to_path_buf();
            (root, names, FetchedWhat::Urls(fetched), key)
        }
        VertexOp::Git {
            repository,
            reference,
            subdir,
            keep_git_dir,
        } => {
            let src = git::GitSource {
                url: repository.clone(),
                reference: reference.clone(),
                subdir: subdir.clone(),
            };
            let auth = git_env::GitAuth::for_remote(&src.url, &ctx.req.secrets, &ctx.req.ssh)?;
            let co = git::checkout(&src, dir.path(), *keep_git_dir, &auth)?;
            let key = cache_key(&KeyInputs {
                definition: &def,
                base_digest: Some(&co.commit),
                ..Default::default()
            });
            (
                co.dir,
                vec![".".into()],
                FetchedWhat::Commit(co.commit),
                key,
            )
        }
        _ => anyhow::bail!("internal: not a URL or git source"),
    };
    Ok(FsState {
        fetched: Some(Fetched {
            dir: Arc::new(dir),
            root,
            names,
            what,
        }),
        ..FsState::empty(key)
    })
}
