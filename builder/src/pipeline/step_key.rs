//! A step's cache key, computed before (and without) running it: the
//! definition, the input keys, and what the step reads — the selected
//! context files' checksums, downloaded files, the digests of images it
//! copies or mounts from. The key is what a step runs under; the same
//! computation in probe mode (no downloads, no layers to read `--chown`
//! names from) lets the build skip stages whose results no missing step
//! needs (see `lazy.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use frontend::{CopySource, FileKind, Op};

use super::{Ctx, copy_spec, f_sources, key_dest};
use crate::context::checksum::{ChecksumIndex, Overrides, checksum_selection};
use crate::context::dockerignore::{self, Matcher};
use crate::context::select::{CopySpec, Selection, select_known};
use crate::context::{git, remote};
use crate::ops::{Layer, file};
use crate::options::NamedContextSource;
use crate::solver::cache_key::{KeyInputs, cache_key, definition_digest};

/// A step's key and what computing it selected, for running the step.
pub(super) struct StepKey {
    pub key: String,
    /// What went into the key, for `--explain-cache`.
    pub facts: BTreeMap<String, String>,
    /// The files a COPY/ADD from a directory selected (context, named
    /// context, downloads, git checkout).
    pub context_sel: Option<Selection>,
    pub ov: Overrides,
    /// `(reference, digest)` of an image the step copies or mounts from.
    pub image_source: Option<(String, String)>,
    /// The directory `context_sel` is relative to.
    pub sel_root: PathBuf,
    /// The sources selected, relative to `sel_root`.
    pub sel_sources: Vec<String>,
    /// ADD <url>/<git>: the downloaded files, kept until the layer is written.
    pub downloads: Option<tempfile::TempDir>,
    /// The `.dockerignore` of a `--build-context name=DIR` copied from.
    pub named_ignore: Option<Matcher>,
}

/// The key of step `step_idx` of `stage` on inputs with `input_keys`
/// (`prev_layers`: the filesystem it runs on, when known). `probe`: compute
/// it only if that needs no download; `None` when it cannot be known so.
pub(super) fn step_key(
    ctx: &Ctx,
    graph: &frontend::BuildGraph,
    stage: usize,
    step_idx: usize,
    prev_layers: Option<&[Layer]>,
    input_keys: Vec<String>,
    probe: bool,
) -> anyhow::Result<Option<StepKey>> {
    let st = &graph.stages[stage];
    let step = &st.steps[step_idx];
    let mut def = serde_json::to_value(&step.op)?;
    if let Some(o) = def.as_object_mut() {
        o.remove("proxy_env");
        // COPY/ADD/WORKDIR results from before destinations were placed in
        // the image below (ops::dest) can contradict it: never reuse them.
        if matches!(step.op, Op::File(_)) {
            o.insert("placement".into(), "in-image".into());
        }
        // `--add-host`, `--shm-size`, `--ulimit` are part of what a RUN
        // step runs with, as in BuildKit's exec op.
        if let (Op::Exec(_), Some(part)) = (&step.op, ctx.req.step_sandbox.key_part()) {
            o.insert("sandbox".into(), part);
        }
        // A layer's mtimes are clamped to it: another epoch, another layer.
        if let Some(e) = ctx.epoch {
            o.insert("source_date_epoch".into(), e.into());
        }
    }
    let def_digest = definition_digest(&def);
    let mut facts: BTreeMap<String, String> = BTreeMap::new();
    facts.insert("instruction".into(), step.original.clone());
    for (n, k) in input_keys.iter().enumerate() {
        facts.insert(format!("input:{n}"), k.clone());
    }
    // COPY/ADD from the context: select and checksum exactly those files.
    let mut context_sel = None;
    let mut ctx_sum = None;
    let mut ov = Overrides::default();
    let mut image_source: Option<(String, String)> = None;
    let mut sel_root = ctx.req.context.clone();
    // The sources the cache key's selection used (`sel_root`-relative), so
    // the step can select them again for a destination the image moves.
    let mut sel_sources: Vec<String> = f_sources(&step.op);
    // ADD <url>: the downloaded files, kept until the layer is written.
    let mut downloads: Option<tempfile::TempDir> = None;
    // The `.dockerignore` of a `--build-context name=DIR` being copied from.
    let mut named_ignore: Option<Matcher> = None;
    match &step.op {
        Op::Exec(e) => {
            for (k, v) in &e.env {
                facts.insert(
                    format!("env:{k}"),
                    crate::solver::explain::recorded_value(k, v),
                );
            }
            // Images that `--mount=…,from=<image>` reads are part of the key.
            let mut digests = Vec::new();
            for m in &e.mounts {
                if let (None, Some(reference)) = (m.from_stage, m.from.as_deref())
                    && !matches!(
                        m.kind,
                        frontend::runmount::MountType::Secret | frontend::runmount::MountType::Ssh
                    )
                {
                    let d = ctx.resolve_image(reference, "--mount from")?;
                    facts.insert(format!("base:{reference}"), d.clone());
                    digests.push(d);
                }
            }
            if !digests.is_empty() {
                image_source = Some((String::new(), digests.join(",")));
            }
        }
        Op::File(f) => {
            ov.chmod = file::chmod_of(f)?;
            if let Some(c) = &f.chown {
                // A name needs the image's /etc/passwd: unknown to a probe
                // that has no layers.
                let Some(layers) = prev_layers else {
                    return Ok(None);
                };
                (ov.uid, ov.gid) = file::resolve_owner(ctx.store, &ctx.executor, layers, c)?;
                ov.explicit_owner = true;
            }
            // `--build-context name=DIR`: COPY --from=name reads that
            // directory like a second context (with its own .dockerignore).
            let named_dir = match &f.from {
                CopySource::Image { reference } => {
                    match ctx.named.get(&reference.to_ascii_lowercase()) {
                        Some(NamedContextSource::Dir(d)) => Some(d.clone()),
                        _ => None,
                    }
                }
                _ => None,
            };
            if let (CopySource::Image { reference }, None) = (&f.from, &named_dir) {
                let r = ctx.resolve_image(reference, "--from")?;
                facts.insert("base".into(), r.clone());
                image_source = Some((reference.clone(), r));
            }
            if let Some(dir) = &named_dir {
                let (ignore, _) = dockerignore::load_for_build(dir, None)?;
                let prefix = format!("context:{}:", dir.display());
                let (sel, sum) = select_for_key(
                    dir,
                    &ignore,
                    &copy_spec(f, &key_dest(f)),
                    &ov,
                    &ChecksumIndex::in_memory(),
                    Some((&mut facts, &prefix)),
                )?;
                (ctx_sum, context_sel, sel_root) = (Some(sum), Some(sel), dir.clone());
                named_ignore = Some(ignore);
            }
            if f.kind != FileKind::Mkdir
                && matches!(f.from, CopySource::Context)
                && !f.sources.is_empty()
            {
                let remote = f.sources.iter().filter(|s| remote::is_remote(s)).count();
                if f.kind == FileKind::Add && remote > 0 {
                    if remote != f.sources.len() {
                        return Err(crate::not_supported(
                            "ADD of URLs and local files in one instruction; split it in two",
                        ));
                    }
                    // A probe does not download: the key stays unknown.
                    if probe {
                        return Ok(None);
                    }
                    // The downloads are this step's context.
                    let dir = tempfile::Builder::new()
                        .prefix("add-url-")
                        .tempdir_in(ctx.store.scratch_dir())?;
                    if f.sources.iter().any(|s| git::is_git(s)) {
                        let [source] = f.sources.as_slice() else {
                            return Err(crate::not_supported(
                                "ADD of a git repository together with other sources; split it",
                            ));
                        };
                        let src = git::GitSource::parse(source);
                        let co = git::checkout(&src, dir.path(), f.keep_git_dir)?;
                        // The tree is copied into `dest` as a directory.
                        let into = format!("{}/", f.dest.trim_end_matches('/'));
                        let (sel, sum) = select_for_key(
                            &co.dir,
                            &Matcher::default(),
                            &CopySpec::new(vec![".".into()], &into),
                            &ov,
                            &ChecksumIndex::in_memory(),
                            None,
                        )?;
                        facts.insert(format!("git:{source}"), co.commit.clone());
                        (ctx_sum, context_sel, sel_root) = (Some(sum), Some(sel), co.dir);
                        sel_sources = vec![".".into()];
                        downloads = Some(dir);
                    } else {
                        let fetched =
                            remote::fetch_all(&f.sources, dir.path(), f.checksum.as_deref())?;
                        let names: Vec<String> = fetched.iter().map(|d| d.name.clone()).collect();
                        let (sel, sum) = select_for_key(
                            dir.path(),
                            &Matcher::default(),
                            &CopySpec::new(names.clone(), &f.dest),
                            &ov,
                            &ChecksumIndex::in_memory(),
                            None,
                        )?;
                        sel_sources = names;
                        for d in &fetched {
                            facts.insert(format!("url:{}", d.url), d.digest.to_string());
                        }
                        (ctx_sum, context_sel, sel_root) =
                            (Some(sum), Some(sel), dir.path().to_path_buf());
                        downloads = Some(dir);
                    }
                } else {
                    let (sel, sum) = select_for_key(
                        &ctx.req.context,
                        &ctx.ignore,
                        &copy_spec(f, &key_dest(f)),
                        &ov,
                        &ctx.index,
                        Some((&mut facts, "context:")),
                    )?;
                    (ctx_sum, context_sel) = (Some(sum), Some(sel));
                }
            }
        }
    }
    let key = cache_key(&KeyInputs {
        definition: &def_digest,
        inputs: &input_keys,
        context: ctx_sum.as_deref(),
        base_digest: image_source.as_ref().map(|(_, d)| d.as_str()),
    });
    Ok(Some(StepKey {
        key,
        facts,
        context_sel,
        ov,
        image_source,
        sel_root,
        sel_sources,
        downloads,
        named_ignore,
    }))
}

/// Selects `spec` under `root` and checksums the selection for the key;
/// with `facts`, records each file's checksum and mode under the prefix
/// for `--explain-cache`.
fn select_for_key(
    root: &Path,
    ignore: &Matcher,
    spec: &CopySpec,
    ov: &Overrides,
    index: &ChecksumIndex,
    facts: Option<(&mut BTreeMap<String, String>, &str)>,
) -> anyhow::Result<(Selection, String)> {
    let sel = select_known(root, ignore, spec, &|rel, stat| index.known_meta(rel, stat))?;
    let sum = checksum_selection(root, &sel, ov, index)?;
    if let Some((facts, prefix)) = facts {
        for (e, c) in sel.entries.iter().zip(&sum.contents) {
            facts.insert(
                format!("{prefix}{}", e.rel),
                format!("{c} {:o}", e.key_mode()),
            );
        }
    }
    Ok((sel, sum.checksum))
}
