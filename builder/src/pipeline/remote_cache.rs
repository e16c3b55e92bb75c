//! `--cache-from` / `--cache-to`: sharing step results between stores.
//!
//! A cache export is the map *cache key → result* (the layer a step added,
//! or none), plus the layer blobs. `mode=max` exports every step of the
//! build (all stages; the default here, where BuildKit's is min, so that
//! a change that makes the final stage miss still finds the stages it
//! reads);
//! `mode=min` only the
//! steps the final image is made of. In a registry it is an OCI artifact
//! (`application/vnd.strata.cache.v1+json`) whose config holds the map and
//! whose layers are the blobs; in a local directory it is
//! `strata-cache.json` beside `blobs/sha256/<hex>`; `type=inline` puts the
//! `mode=min` map into the image config itself (key [`INLINE_CONFIG_KEY`]),
//! whose layers are the blobs, so `--cache-from IMAGE` of a pushed image
//! reuses its steps. Imports are read once at the start; a hit copies or
//! fetches just that step's blob. An unreachable or unreadable cache source
//! only costs a rebuild: it is reported and ignored, never a failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use cache::reference::Reference;
use cache::store::Store;
use cache::transport::registry::{self, SmallBlob};
use serde::{Deserialize, Serialize};

use crate::ops::{CachedResult, Layer};
use crate::options::{CacheFrom, CacheTo};
use crate::solver::explain::StepRecord;

/// The artifact type of a strata cache in a registry.
pub const CACHE_ARTIFACT: &str = "application/vnd.strata.cache.v1+json";
const LOCAL_INDEX: &str = "strata-cache.json";
/// The image config key that carries an inline cache. Unknown top-level
/// config keys are ignored by every image consumer (BuildKit keeps its own
/// inline cache the same way).
pub const INLINE_CONFIG_KEY: &str = "strata.cache.v1";

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheDoc {
    entries: BTreeMap<String, CachedResult>,
    /// What each exported step's key was made of, by the step's place in
    /// the Dockerfile (`explain_identity`): a fresh runner's
    /// `--explain-cache` compares its own step with it and names the input
    /// that changed. Absent in caches written before it existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    explain: BTreeMap<String, StepRecord>,
}

#[derive(Debug, Clone)]
enum Origin {
    Dir(PathBuf),
    Registry(String),
    /// An image of the local store with an inline cache: its blobs are
    /// already here.
    Store,
}

/// Step results imported with `--cache-from`.
#[derive(Debug, Default)]
pub struct Imported {
    entries: BTreeMap<String, (CachedResult, Origin)>,
    /// Step records of the sources, by portable step identity.
    explain: BTreeMap<String, StepRecord>,
}

impl Imported {
    /// Reads every source; failures become warnings.
    pub fn load(
        store: &Store,
        reg: &crate::Registry,
        sources: &[CacheFrom],
        warn: &dyn Fn(String),
    ) -> Imported {
        let mut out = Imported::default();
        for s in sources {
            let r = match s {
                CacheFrom::Local { src } => read_dir(src).map(|d| (d, Origin::Dir(src.clone()))),
                CacheFrom::Registry { reference } => match read_local_image(store, reference) {
                    Some(doc) => Ok((doc, Origin::Store)),
                    None => read_registry(reg, reference)
                        .map(|d| (d, Origin::Registry(reference.clone()))),
                },
            };
            match r {
                Ok((doc, origin)) => {
                    for (k, v) in doc.entries {
                        out.entries.entry(k).or_insert((v, origin.clone()));
                    }
                    for (k, v) in doc.explain {
                        out.explain.entry(k).or_insert(v);
                    }
                }
                Err(e) => warn(format!(
                    "--cache-from {s} is not usable, building without it: {e:#}"
                )),
            }
        }
        out
    }

    /// The record an imported cache carries for the step at `identity`
    /// (see [`Exported`]), for `--explain-cache` on a fresh runner.
    pub fn record(&self, identity: &str) -> Option<&StepRecord> {
        self.explain.get(identity)
    }

    /// The result for `key` if a source has it, without fetching its blob.
    pub fn peek(&self, key: &str) -> Option<&CachedResult> {
        self.entries.get(key).map(|(r, _)| r)
    }

    /// The result for `key`, with its blob brought into the store.
    pub fn take(&self, store: &Store, reg: &crate::Registry, key: &str) -> Option<CachedResult> {
        let (res, origin) = self.entries.get(key)?;
        let ok = match (&res.layer, origin) {
            (None, _) => true,
            (Some(l), _) if store.blobs().has(&l.desc.digest) => true,
            // A local image's layer may be recorded as fetchable elsewhere.
            (Some(l), Origin::Store) => reg
                .client()
                .and_then(|c| crate::ops::source::ensure_blob(store, c, l))
                .is_ok(),
            (Some(l), Origin::Dir(d)) => {
                let p = d.join("blobs/sha256").join(l.desc.digest.hex());
                std::fs::File::open(&p)
                    .ok()
                    .and_then(|f| store.blobs().put_stream(f, Some(&l.desc.digest)).ok())
                    .is_some()
            }
            (Some(l), Origin::Registry(r)) => {
                let fetch = || -> anyhow::Result<()> {
                    let reference = Reference::parse(r)?;
                    registry::fetch_blob(reg.client()?, store, &reference, &l.desc)?;
                    Ok(())
                };
                fetch().is_ok()
            }
        };
        ok.then(|| res.clone())
    }
}

fn read_dir(dir: &Path) -> anyhow::Result<CacheDoc> {
    let p = dir.join(LOCAL_INDEX);
    let b = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_slice(&b).with_context(|| format!("parsing {}", p.display()))
}

/// A registry reference holds either a cache artifact (`type=registry`) or
/// an image whose config carries an inline cache (`type=inline`).
fn read_registry(reg: &crate::Registry, reference: &str) -> anyhow::Result<CacheDoc> {
    let r = Reference::parse(reference)?;
    let client = reg.client()?;
    let art = registry::get_artifact(
        client,
        &registry::pull::repo_of(&r),
        &registry::pull::registry_ref(&r),
    );
    let config = match art {
        Ok(None) => return Err(anyhow!("no cache at {reference}")),
        Ok(Some(a)) if a.artifact_type.as_deref() == Some(CACHE_ARTIFACT) => {
            return Ok(serde_json::from_slice(&a.config.data)?);
        }
        Ok(Some(a)) => a.config.data,
        // An image index: read the native platform's config.
        Err(_) => registry::resolve_remote(client, &r, &cache::platform::Platform::host())?.config,
    };
    inline_doc(&config)?.ok_or_else(|| {
        anyhow!(
            "{reference} is neither a strata cache nor an image built with --cache-to type=inline"
        )
    })
}

/// The inline cache of an image in the local store, if it has one.
fn read_local_image(store: &Store, reference: &str) -> Option<CacheDoc> {
    let r = Reference::parse(reference).ok()?;
    let img = store
        .resolve_image_for(&r, &cache::platform::Platform::host())
        .ok()??;
    inline_doc(img.config.raw()).ok()?
}

/// The cache map inside an image config, if it carries one.
fn inline_doc(config: &[u8]) -> anyhow::Result<Option<CacheDoc>> {
    let v: serde_json::Value =
        serde_json::from_slice(config).context("reading the image config")?;
    match v.get(INLINE_CONFIG_KEY) {
        None => Ok(None),
        Some(doc) => Ok(Some(
            serde_json::from_value(doc.clone()).context("reading the inline cache")?,
        )),
    }
}

/// The results the final image is made of (`mode=min`).
fn min_entries(
    entries: &BTreeMap<String, CachedResult>,
    chain: &[String],
) -> BTreeMap<String, CachedResult> {
    chain
        .iter()
        .filter_map(|k| entries.get(k).map(|r| (k.clone(), r.clone())))
        .collect()
}

/// What a build hands to the cache exports: every step result by key, and
/// every step's record by its portable identity (stage and step, not the
/// checkout's path, so that another runner's build of the same Dockerfile
/// finds it).
#[derive(Debug, Default, Clone)]
pub struct Exported {
    pub entries: BTreeMap<String, CachedResult>,
    pub records: BTreeMap<String, StepRecord>,
}

impl Exported {
    /// A document of `entries` with the records of exactly those steps.
    fn doc(&self, entries: BTreeMap<String, CachedResult>) -> CacheDoc {
        let explain = self
            .records
            .iter()
            .filter(|(_, r)| entries.contains_key(&r.key))
            .map(|(i, r)| (i.clone(), r.clone()))
            .collect();
        CacheDoc { entries, explain }
    }
}

/// The inline cache document for the image config (`mode=min`; its layers
/// are the image's own).
pub fn inline_entries(exported: &Exported, chain: &[String]) -> serde_json::Value {
    serde_json::to_value(exported.doc(min_entries(&exported.entries, chain))).unwrap_or_default()
}

/// `config` with an inline cache document added.
pub fn with_inline_cache(config: &[u8], doc: serde_json::Value) -> anyhow::Result<Vec<u8>> {
    let mut v: serde_json::Value = serde_json::from_slice(config)?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| anyhow!("internal: the image config is not an object"))?;
    obj.insert(INLINE_CONFIG_KEY.to_string(), doc);
    Ok(serde_json::to_vec(&v)?)
}

/// `entries` with every layer kept as a directory replaced by its gzip
/// blob (made once, in parallel, remembered): what a cache names.
pub fn with_stored_layers(
    store: &Store,
    executor: &crate::ops::exec::Executor,
    mut entries: BTreeMap<String, CachedResult>,
) -> anyhow::Result<BTreeMap<String, CachedResult>> {
    use rayon::prelude::*;
    let mut dir_layers: Vec<Layer> = entries
        .values()
        .filter_map(|r| r.layer.clone())
        .filter(|l| crate::ops::commit::is_dir_layer(store, l))
        .collect();
    dir_layers.sort_by(|a, b| a.diff_id.cmp(&b.diff_id));
    dir_layers.dedup_by(|a, b| a.diff_id == b.diff_id);
    let encoded: BTreeMap<cache::digest::Digest, Layer> = dir_layers
        .par_iter()
        .map(|l| {
            let l2 = crate::output::encode::gzip_layer(store, executor, l)?;
            Ok((l.diff_id.clone(), l2))
        })
        .collect::<anyhow::Result<_>>()?;
    for r in entries.values_mut() {
        if let Some(l) = &r.layer
            && let Some(e) = encoded.get(&l.diff_id)
            && l.desc.digest == l.diff_id
        {
            r.layer = Some(e.clone());
        }
    }
    Ok(entries)
}

/// Writes the results of this build to every `--cache-to` but `inline`
/// (which the image config carries): every result with `mode=max`, those
/// in `chain` (the final image's steps) with `mode=min`.
/// A target with `ignore-error=true` that fails is reported through `warn`
/// and skipped; any other failure fails the build.
pub fn export(
    store: &Store,
    reg: &crate::Registry,
    targets: &[CacheTo],
    exported: &Exported,
    chain: &[String],
    tasks: &crate::progress::Tasks,
    warn: &dyn Fn(String),
) -> anyhow::Result<()> {
    for t in targets {
        let max = match t {
            CacheTo::Inline => continue,
            CacheTo::Local { max, .. } | CacheTo::Registry { max, .. } => *max,
        };
        let doc = exported.doc(if max {
            exported.entries.clone()
        } else {
            min_entries(&exported.entries, chain)
        });
        let task = tasks.start(format!("exporting cache to {t}"));
        let result = export_one(store, reg, t, &doc);
        if let Ok(bytes) = &result {
            task.bytes(*bytes);
            task.line(format!(
                "{} steps, {} with a layer",
                doc.entries.len(),
                doc.entries.values().filter(|r| r.layer.is_some()).count()
            ));
        }
        task.end(&result);
        match result {
            Ok(_) => {}
            Err(e) if t.ignores_errors() => warn(format!(
                "--cache-to {t}: the cache was not exported (ignore-error=true): {e:#}"
            )),
            Err(e) => {
                return Err(e.context(format!(
                    "--cache-to {t} failed (add ignore-error=true to build anyway)"
                )));
            }
        }
    }
    Ok(())
}

/// Writes one cache document and its layer blobs to `t`; returns the bytes
/// of layer blobs written (those already there are not counted).
fn export_one(
    store: &Store,
    reg: &crate::Registry,
    t: &CacheTo,
    doc: &CacheDoc,
) -> anyhow::Result<u64> {
    let mut sent = 0;
    let layers: Vec<&Layer> = doc
        .entries
        .values()
        .filter_map(|r| r.layer.as_ref())
        .collect();
    match t {
        CacheTo::Inline => {}
        CacheTo::Local { dest, .. } => {
            let blobs = dest.join("blobs/sha256");
            std::fs::create_dir_all(&blobs)
                .with_context(|| format!("creating {}", blobs.display()))?;
            for l in &layers {
                crate::ops::source::ensure_blob(store, reg.client()?, l)?;
                let to = blobs.join(l.desc.digest.hex());
                if !to.exists() {
                    sent += l.desc.size;
                    let tmp = tempfile::NamedTempFile::new_in(&blobs)
                        .with_context(|| format!("writing into {}", blobs.display()))?;
                    std::fs::copy(store.blobs().path(&l.desc.digest), tmp.path())
                        .with_context(|| format!("copying layer {}", l.desc.digest))?;
                    tmp.persist(&to)
                        .map_err(|e| anyhow!("{}: {}", to.display(), e.error))?;
                }
            }
            let tmp = tempfile::NamedTempFile::new_in(dest)
                .with_context(|| format!("writing into {}", dest.display()))?;
            serde_json::to_writer(&tmp, &doc)?;
            let index = dest.join(LOCAL_INDEX);
            tmp.persist(&index)
                .map_err(|e| anyhow!("{}: {}", index.display(), e.error))?;
        }
        CacheTo::Registry { reference, .. } => {
            let r = Reference::parse(reference).map_err(|e| anyhow!("ref={reference}: {e}"))?;
            let client = reg.client()?;
            let repo = cache::transport::registry::pull::repo_of(&r);
            let mut descs = Vec::new();
            for l in &layers {
                crate::ops::source::ensure_blob(store, client, l)?;
                let how = registry::push_store_blob(client, store, &repo, &l.desc, None)
                    .with_context(|| format!("pushing layer {}", l.desc.digest))?;
                if matches!(
                    how,
                    registry::BlobPushed::Monolithic | registry::BlobPushed::Chunked
                ) {
                    sent += l.desc.size;
                }
                descs.push(l.desc.clone());
            }
            descs.sort_by_key(|d| d.digest.to_string());
            descs.dedup_by(|a, b| a.digest == b.digest);
            let config = SmallBlob {
                media_type: CACHE_ARTIFACT.into(),
                data: serde_json::to_vec(&doc)?,
            };
            registry::put_artifact(
                client,
                &repo,
                &registry::pull::registry_ref(&r),
                CACHE_ARTIFACT,
                Some(&config),
                &[],
                &descs,
            )
            .with_context(|| format!("writing the cache manifest {reference}"))?;
        }
    }
    Ok(sent)
}
