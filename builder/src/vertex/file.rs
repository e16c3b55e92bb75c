//! The file op (COPY, ADD, WORKDIR): its key — the definition, the inputs'
//! keys (among them a local source's: the checksum of the context or named
//! directory files it selected), the checksum of what a URL or git source
//! vertex fetched, or the digest of the image it copies from — and its
//! execution: the selected files placed in the image below and committed
//! as a layer. A stage, an image, a URL, a git repository or the files it
//! reads from a local directory is its second input (a source vertex of
//! the plan), never fetched or selected here (only selected again when the
//! image below moves the destination).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail};
use frontend::{CopySource, FileKind, FileOp};

use super::Step;
use super::source::{Fetched, FetchedWhat};
use crate::context::checksum::{ChecksumIndex, Overrides, checksum_selection};
use crate::context::dockerignore::Matcher;
use crate::context::select::{CopySpec, Selection, select, select_known};
use crate::ops::commit::FileLayer;
use crate::ops::{Layer, file};
use crate::options::NamedContextSource;
use crate::pipeline::plan::VertexOp;
use crate::solver::cache_key::{KeyInputs, cache_key};
use crate::solver::solve::Keyed;

/// What a file op's key selected, for running it.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    /// The files a COPY/ADD from a directory selected (context, named
    /// context, downloads, git checkout).
    pub context_sel: Option<Arc<Selection>>,
    pub ov: Overrides,
    /// The directory `context_sel` is relative to.
    pub sel_root: PathBuf,
    /// The sources selected, relative to `sel_root`.
    pub sel_sources: Vec<String>,
    /// ADD <url>/<git>: the downloaded files, kept until the layer is written.
    pub downloads: Option<Arc<tempfile::TempDir>>,
    /// The `.dockerignore` of a `--build-context name=DIR` copied from.
    pub named_ignore: Option<Matcher>,
}

/// The key of a COPY/ADD/WORKDIR. `probe`: only if that needs no download
/// and no layers to read `--chown` names from; `None` when it cannot be
/// known so.
pub fn key(
    step: &Step,
    f: &FileOp,
    def: &str,
    mut facts: BTreeMap<String, String>,
    probe: bool,
) -> anyhow::Result<Option<Keyed<super::Prepared>>> {
    let ctx = step.ctx;
    let mut p = Prepared {
        sel_root: ctx.req.context.clone(),
        // The sources the key's selection used (`sel_root`-relative), so
        // the step can select them again for a destination the image moves.
        sel_sources: f.sources.clone(),
        ..Prepared::default()
    };
    let (mut ctx_sum, mut base, mut local) = (None, None, false);
    p.ov.chmod = file::chmod_of(f)?;
    if let Some(c) = &f.chown {
        // A name needs the image's /etc/passwd: unknown to a probe that
        // has no layers.
        let Some(layers) = &step.prev_layers else {
            return Ok(None);
        };
        (p.ov.uid, p.ov.gid) = file::resolve_owner(ctx.store, &ctx.executor, layers, c)?;
        p.ov.explicit_owner = true;
    }
    match &f.from {
        // `--build-context name=DIR`: a second context, read through its
        // local source vertex (below).
        CopySource::Named { name } => match ctx.named.get(&name.to_ascii_lowercase()) {
            Some(NamedContextSource::Dir(_)) => local = true,
            // An image or OCI layout: resolved like `--from=<image>`.
            _ => base = Some(image_digest(step, name, &mut facts)?),
        },
        CopySource::Image { reference } => {
            base = Some(image_digest(step, reference, &mut facts)?);
        }
        // ADD <url>… / ADD <git repository>: fetched by the source vertex
        // that is this step's second input (unknown to a probe, which does
        // not fetch).
        CopySource::Http | CopySource::Git { .. } if f.kind != FileKind::Mkdir => {
            let Some(fetched) = step.inputs.get(1).and_then(|s| s.fetched.as_ref()) else {
                if probe {
                    return Ok(None);
                }
                bail!("internal: ADD of a URL or git repository has no fetched input");
            };
            ctx_sum = Some(fetched_key(f, fetched, &mut p, &mut facts)?);
        }
        CopySource::Context if f.kind != FileKind::Mkdir && !f.sources.is_empty() => {
            local = true;
        }
        _ => {}
    }
    if local {
        local_selection(step, f, &mut p, &mut facts, probe)?;
    }
    // A URL, repository, image or local directory read through a source
    // vertex is explained by its own facts (`url:`, `git:`, `base`,
    // `context:`), not as "an earlier step it builds on changed".
    if base.is_some() || p.downloads.is_some() || local {
        facts.remove("input:1");
    }
    let key = cache_key(&KeyInputs {
        definition: def,
        inputs: &step.input_keys,
        context: ctx_sum.as_deref(),
        base_digest: base.as_deref(),
    });
    Ok(Some(Keyed {
        key,
        facts,
        prepared: super::Prepared::File(p),
    }))
}

/// The manifest digest of the image a `--from` names (the step's source
/// vertex resolved it: this is the build's memo of it), among the key's
/// facts as `base` for `--explain-cache`.
fn image_digest(
    step: &Step,
    reference: &str,
    facts: &mut BTreeMap<String, String>,
) -> anyhow::Result<String> {
    let r = step.ctx.resolve_image(reference, "--from")?;
    facts.insert("base".into(), r.clone());
    Ok(r)
}

/// COPY/ADD from the context or a named directory: the selection its local
/// source vertex (the step's second input) made, with each file's facts;
/// the step is keyed on that input's key. A probe, which has no inputs,
/// takes the same selection from the build's memo of it.
fn local_selection(
    step: &Step,
    f: &FileOp,
    p: &mut Prepared,
    facts: &mut BTreeMap<String, String>,
    probe: bool,
) -> anyhow::Result<()> {
    let s = match step.inputs.get(1).and_then(|s| s.local.clone()) {
        Some(s) => s,
        None if probe => {
            let op = VertexOp::read_source(&frontend::Op::File(f.clone()), &step.ctx.named)
                .ok_or_else(|| anyhow!("internal: COPY from a directory has no local source"))?;
            super::local::selected(step.ctx, &op)?
        }
        None => bail!("internal: COPY from a directory has no local source input"),
    };
    facts.extend(s.facts.iter().map(|(k, v)| (k.clone(), v.clone())));
    p.context_sel = Some(s.sel.clone());
    p.sel_root = s.root.clone();
    p.named_ignore = s.named_ignore.clone();
    Ok(())
}

/// ADD <url>… or ADD <git repository>: what its source vertex fetched
/// becomes the step's context; returns the checksum of its selection.
fn fetched_key(
    f: &FileOp,
    fetched: &Fetched,
    p: &mut Prepared,
    facts: &mut BTreeMap<String, String>,
) -> anyhow::Result<String> {
    let spec = match &fetched.what {
        // The tree is copied into `dest` as a directory.
        FetchedWhat::Commit(commit) => {
            let source = f.sources.first().map(String::as_str);
            let source = match (&f.from, source) {
                (_, Some(s)) => s,
                (CopySource::Git { repository, .. }, None) => repository.as_str(),
                _ => "",
            };
            facts.insert(format!("git:{source}"), commit.clone());
            CopySpec::new(
                fetched.names.clone(),
                &format!("{}/", f.dest.trim_end_matches('/')),
            )
        }
        FetchedWhat::Urls(files) => {
            for d in files {
                facts.insert(format!("url:{}", d.url), d.digest.to_string());
            }
            CopySpec::new(fetched.names.clone(), &f.dest)
        }
    };
    let (sel, sum) = select_for_key(&fetched.root, &spec, &p.ov)?;
    p.sel_sources = fetched.names.clone();
    (p.context_sel, p.sel_root) = (Some(Arc::new(sel)), fetched.root.clone());
    p.downloads = Some(fetched.dir.clone());
    Ok(sum)
}

/// Selects `spec` under `root` and checksums the selection for the key.
fn select_for_key(
    root: &Path,
    spec: &CopySpec,
    ov: &Overrides,
) -> anyhow::Result<(Selection, String)> {
    let index = ChecksumIndex::in_memory();
    let sel = select_known(root, &Matcher::default(), spec, &|rel, stat| {
        index.known_meta(rel, stat)
    })?;
    let sum = checksum_selection(root, &sel, ov, &index)?;
    Ok((sel, sum.checksum))
}

/// Runs a COPY/ADD/WORKDIR on the state it runs on: the files it selected
/// (again, if the image below moves the destination) become a layer.
pub fn run(step: &Step, f: &FileOp, p: Prepared) -> anyhow::Result<Option<Layer>> {
    let ctx = step.ctx;
    let prev = step
        .inputs
        .first()
        .ok_or_else(|| anyhow!("internal: a file op has no state to run on"))?;
    let ov = &p.ov;
    if f.kind == FileKind::Mkdir {
        let dest = ctx.executor.resolve_dest(&prev.layers, &f.dest, true)?;
        let files = FileLayer {
            entries: file::with_dirs(Vec::new(), &dest.missing, ov.uid, ov.gid),
            archives: Vec::new(),
            parents: dest.parents,
        };
        return ctx.executor.commit_files(files, ctx.epoch);
    }
    // Where the files land in the image below: through its symlinks, into
    // an existing directory, with the parents it lacks.
    let dest = ctx.executor.resolve_dest(&prev.layers, &f.dest, false)?;
    if several_sources(f) && !dest.path.ends_with('/') && !f.parents {
        bail!(
            "when copying more than one source (or a wildcard) the destination must be a directory: {} is not one in the image; write {}/",
            f.dest,
            f.dest
        );
    }
    let (root, sel) = match (&f.from, p.context_sel) {
        // Selected for the cache key with the destination as written;
        // again if the image moves it.
        (_, Some(sel)) if dest.path == f.dest => (p.sel_root.clone(), sel),
        (_, Some(_)) => {
            let no_ignore = Matcher::default();
            let ignore = match (&p.downloads, &p.named_ignore) {
                (Some(_), _) => &no_ignore,
                (None, Some(n)) => n,
                (None, None) => &ctx.ignore,
            };
            let mut spec = copy_spec(f, &dest.path);
            spec.sources = p.sel_sources.clone();
            let sel = select(&p.sel_root, ignore, &spec)?;
            (p.sel_root.clone(), Arc::new(sel))
        }
        (CopySource::Stage { .. } | CopySource::Image { .. } | CopySource::Named { .. }, _) => {
            // A stage or an image (`--from=<image>`, a named context
            // standing for one) is the step's second input.
            let layers = step
                .inputs
                .get(1)
                .ok_or_else(|| anyhow!("internal: COPY --from has no source input"))?
                .layers
                .clone();
            return ctx.executor.copy_from(
                &layers,
                &copy_spec(f, &dest.path),
                ov,
                &dest.missing,
                &dest.parents,
                ctx.epoch,
            );
        }
        _ => (ctx.req.context.clone(), Default::default()),
    };
    let (entries, archives) = file::copy_entries(
        &root,
        &sel,
        ov,
        false,
        // Remote files are unpacked only when asked (`--unpack`).
        f.kind == FileKind::Add && f.unpack.unwrap_or(p.downloads.is_none()),
        &f.inline,
        &dest.path,
    )?;
    let files = FileLayer {
        entries: file::with_dirs(entries, &dest.missing, ov.uid, ov.gid),
        archives,
        parents: dest.parents,
    };
    ctx.executor.commit_files(files, ctx.epoch)
}

/// Whether a COPY/ADD names several sources (or a wildcard): Docker then
/// needs a directory destination.
fn several_sources(f: &FileOp) -> bool {
    f.sources.len() + f.inline.len() > 1
        || f.sources
            .iter()
            .any(|s| crate::context::select::is_wildcard(s))
}

/// The destination the cache key's selection uses. `COPY a b /dir` without
/// a trailing `/` is allowed when `/dir` is a directory of the image, which
/// only the step itself can see; the key selects as if the `/` were there
/// and the step refuses if the image has no such directory.
pub(crate) fn key_dest(f: &FileOp) -> String {
    if several_sources(f) && !f.dest.ends_with('/') && !f.parents {
        format!("{}/", f.dest)
    } else {
        f.dest.clone()
    }
}

/// What a COPY/ADD selects, copied to `dest`.
fn copy_spec(f: &FileOp, dest: &str) -> CopySpec {
    let mut spec = CopySpec::new(f.sources.clone(), dest);
    spec.excludes = f.exclude.clone();
    spec.parents = f.parents;
    spec
}
