//! `--cache-from` / `--cache-to`: sharing step results between stores.
//!
//! A cache export is the map *cache key → result* (the layer a step added,
//! or none) for every step of the build, plus the layer blobs. In a
//! registry it is an OCI artifact (`application/vnd.strata.cache.v1+json`)
//! whose config holds the map and whose layers are the blobs; in a local
//! directory it is `strata-cache.json` beside `blobs/sha256/<hex>`. Imports
//! are read once at the start; a hit copies or fetches just that step's
//! blob. An unreachable or unreadable cache source only costs a rebuild: it
//! is reported and ignored, never a failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use cache::reference::Reference;
use cache::store::Store;
use cache::transport::registry::{self, RegistryClient, SmallBlob};
use serde::{Deserialize, Serialize};

use crate::ops::{CachedResult, Layer};
use crate::options::{CacheFrom, CacheTo};

/// The artifact type of a strata cache in a registry.
pub const CACHE_ARTIFACT: &str = "application/vnd.strata.cache.v1+json";
const LOCAL_INDEX: &str = "strata-cache.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheDoc {
    entries: BTreeMap<String, CachedResult>,
}

#[derive(Debug, Clone)]
enum Origin {
    Dir(PathBuf),
    Registry(String),
}

/// Step results imported with `--cache-from`.
#[derive(Debug, Default)]
pub struct Imported {
    entries: BTreeMap<String, (CachedResult, Origin)>,
}

impl Imported {
    /// Reads every source; failures become warnings.
    pub fn load(sources: &[CacheFrom], warn: &dyn Fn(String)) -> Imported {
        let mut out = Imported::default();
        for s in sources {
            let r = match s {
                CacheFrom::Local { src } => read_dir(src).map(|d| (d, Origin::Dir(src.clone()))),
                CacheFrom::Registry { reference } => {
                    read_registry(reference).map(|d| (d, Origin::Registry(reference.clone())))
                }
            };
            match r {
                Ok((doc, origin)) => {
                    for (k, v) in doc.entries {
                        out.entries.entry(k).or_insert((v, origin.clone()));
                    }
                }
                Err(e) => warn(format!(
                    "--cache-from {s:?} is not usable, building without it: {e:#}"
                )),
            }
        }
        out
    }

    /// The result for `key`, with its blob brought into the store.
    pub fn take(&self, store: &Store, key: &str) -> Option<CachedResult> {
        let (res, origin) = self.entries.get(key)?;
        let ok = match (&res.layer, origin) {
            (None, _) => true,
            (Some(l), _) if store.blobs().has(&l.desc.digest) => true,
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
                    let client = RegistryClient::from_env()?;
                    registry::fetch_blob(&client, store, &reference, &l.desc)?;
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

fn read_registry(reference: &str) -> anyhow::Result<CacheDoc> {
    let r = Reference::parse(reference)?;
    let client = RegistryClient::from_env()?;
    let art = registry::get_artifact(
        &client,
        &registry::pull::repo_of(&r),
        &registry::pull::registry_ref(&r),
    )?
    .ok_or_else(|| anyhow!("no cache at {reference}"))?;
    if art.artifact_type.as_deref() != Some(CACHE_ARTIFACT) {
        return Err(anyhow!(
            "{reference} is not a strata cache (artifact type {:?})",
            art.artifact_type
        ));
    }
    Ok(serde_json::from_slice(&art.config.data)?)
}

/// Writes the results of this build to every `--cache-to`.
pub fn export(
    store: &Store,
    targets: &[CacheTo],
    entries: &BTreeMap<String, CachedResult>,
) -> anyhow::Result<()> {
    let doc = CacheDoc {
        entries: entries.clone(),
    };
    let layers: Vec<&Layer> = entries.values().filter_map(|r| r.layer.as_ref()).collect();
    for t in targets {
        match t {
            CacheTo::Inline => return Err(crate::not_supported("--cache-to type=inline")),
            CacheTo::Local { dest, .. } => {
                let blobs = dest.join("blobs/sha256");
                std::fs::create_dir_all(&blobs)
                    .with_context(|| format!("--cache-to: creating {}", blobs.display()))?;
                for l in &layers {
                    crate::ops::source::ensure_blob(store, l)?;
                    let to = blobs.join(l.desc.digest.hex());
                    if !to.exists() {
                        let tmp = tempfile::NamedTempFile::new_in(&blobs)?;
                        std::fs::copy(store.blobs().path(&l.desc.digest), tmp.path())?;
                        tmp.persist(&to)
                            .map_err(|e| anyhow!("--cache-to: {}", e.error))?;
                    }
                }
                let tmp = tempfile::NamedTempFile::new_in(dest)?;
                serde_json::to_writer(&tmp, &doc)?;
                tmp.persist(dest.join(LOCAL_INDEX))
                    .map_err(|e| anyhow!("--cache-to: {}", e.error))?;
            }
            CacheTo::Registry { reference, .. } => {
                let r = Reference::parse(reference)
                    .map_err(|e| anyhow!("--cache-to ref={reference}: {e}"))?;
                let client = RegistryClient::from_env()?;
                let repo = registry::pull::repo_of(&r);
                let mut descs = Vec::new();
                for l in &layers {
                    crate::ops::source::ensure_blob(store, l)?;
                    registry::push_store_blob(&client, store, &repo, &l.desc, None)
                        .with_context(|| format!("--cache-to: pushing layer {}", l.desc.digest))?;
                    descs.push(l.desc.clone());
                }
                descs.sort_by_key(|d| d.digest.to_string());
                descs.dedup_by(|a, b| a.digest == b.digest);
                let config = SmallBlob {
                    media_type: CACHE_ARTIFACT.into(),
                    data: serde_json::to_vec(&doc)?,
                };
                registry::put_artifact(
                    &client,
                    &repo,
                    &registry::pull::registry_ref(&r),
                    CACHE_ARTIFACT,
                    Some(&config),
                    &[],
                    &descs,
                )
                .with_context(|| format!("--cache-to: writing the cache manifest {reference}"))?;
            }
        }
    }
    Ok(())
}
