//! The local sources a COPY/ADD reads: the build context and a
//! `--build-context name=DIR`. Their vertex selects the files a step
//! copies (its sources, excludes and destination, the `.dockerignore`,
//! the symlink rules of `context::select`) and is keyed by the checksum of
//! that selection; the selection travels in its state to the file op
//! reading it, which keys on it and does not select again. Being local,
//! the key is known to the lazy probe; the selection is made once per
//! build (`Ctx::local_sources`), whether the probe or the vertex asks first.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::context::checksum::{ChecksumIndex, Overrides, checksum_selection};
use crate::context::dockerignore::{self, Matcher};
use crate::context::select::{CopySpec, Selection, select_known};
use crate::lock;
use crate::pipeline::ctx::Ctx;
use crate::pipeline::plan::VertexOp;
use crate::solver::cache_key::{KeyInputs, cache_key, definition_digest};

/// What a local source vertex selected.
#[derive(Debug)]
pub struct Selected {
    /// Its key: the definition and the selection's checksum.
    pub key: String,
    /// The directory the selection is relative to.
    pub root: PathBuf,
    pub sel: Arc<Selection>,
    /// A named context's `.dockerignore` (the build context's is the
    /// build's own), for selecting again if the image moves the destination.
    pub named_ignore: Option<Matcher>,
    /// Each selected file's checksum and mode, for `--explain-cache`
    /// (`context:…`), as the reading step's facts.
    pub facts: BTreeMap<String, String>,
}

/// The selection of local source `op` (made on first ask, then the same).
pub fn selected(ctx: &Ctx, op: &VertexOp) -> anyhow::Result<Arc<Selected>> {
    let def = definition_digest(&op.fetch_definition());
    if let Some(s) = lock(&ctx.local_sources).get(&def) {
        return Ok(s.clone());
    }
    let s = Arc::new(select_source(ctx, op, &def)?);
    lock(&ctx.local_sources).insert(def, s.clone());
    Ok(s)
}

fn select_source(ctx: &Ctx, op: &VertexOp, def: &str) -> anyhow::Result<Selected> {
    let VertexOp::Local {
        dir,
        sources,
        dest,
        excludes,
        parents,
    } = op
    else {
        anyhow::bail!("internal: not a local source");
    };
    let mut spec = CopySpec::new(sources.clone(), dest);
    spec.excludes = excludes.clone();
    spec.parents = *parents;
    let in_memory = ChecksumIndex::in_memory();
    let (root, named_ignore, index, prefix) = match dir {
        // `--build-context name=DIR`: a second context, with its own
        // `.dockerignore`.
        Some(dir) => {
            let (ignore, _) = dockerignore::load_for_build(dir, None)?;
            let prefix = format!("context:{}:", dir.display());
            (dir.clone(), Some(ignore), &in_memory, prefix)
        }
        None => (
            ctx.req.context.clone(),
            None,
            &ctx.index,
            "context:".to_string(),
        ),
    };
    let ignore = named_ignore.as_ref().unwrap_or(&ctx.ignore);
    let sel = select_known(&root, ignore, &spec, &|rel, stat| {
        index.known_meta(rel, stat)
    })?;
    // Ownership and mode overrides are the file op's (its definition).
    let sum = checksum_selection(&root, &sel, &Overrides::default(), index)?;
    let facts = sel
        .entries
        .iter()
        .zip(&sum.contents)
        .map(|(e, c)| {
            (
                format!("{prefix}{}", e.rel),
                format!("{c} {:o}", e.key_mode()),
            )
        })
        .collect();
    let key = cache_key(&KeyInputs {
        definition: def,
        context: Some(&sum.checksum),
        ..Default::default()
    });
    Ok(Selected {
        key,
        root,
        sel: Arc::new(sel),
        named_ignore,
        facts,
    })
}
