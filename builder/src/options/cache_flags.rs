//! `--cache-from` and `--cache-to`: where step results are imported from
//! and exported to.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail};

use super::{parse_bool, split_kv};

/// `--cache-from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheFrom {
    Local { src: PathBuf },
    Registry { reference: String },
}

impl std::fmt::Display for CacheFrom {
    /// As the user writes it: `type=local,src=DIR` or `type=registry,ref=REF`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheFrom::Local { src } => write!(f, "type=local,src={}", src.display()),
            CacheFrom::Registry { reference } => write!(f, "type=registry,ref={reference}"),
        }
    }
}

/// `--cache-to`. `ignore_error`: a failed export only warns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheTo {
    Local {
        dest: PathBuf,
        max: bool,
        ignore_error: bool,
    },
    Registry {
        reference: String,
        max: bool,
        ignore_error: bool,
    },
    Inline,
}

impl CacheTo {
    /// Whether a failed export of this cache only warns (`ignore-error=true`).
    pub fn ignores_errors(&self) -> bool {
        match self {
            CacheTo::Local { ignore_error, .. } | CacheTo::Registry { ignore_error, .. } => {
                *ignore_error
            }
            CacheTo::Inline => false,
        }
    }
}

impl std::fmt::Display for CacheTo {
    /// As the user writes it, for messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheTo::Local { dest, .. } => write!(f, "type=local,dest={}", dest.display()),
            CacheTo::Registry { reference, .. } => write!(f, "type=registry,ref={reference}"),
            CacheTo::Inline => write!(f, "type=inline"),
        }
    }
}

pub(super) fn cache_items(flag: &str, s: &str) -> anyhow::Result<BTreeMap<String, String>> {
    s.split(',').map(|i| split_kv(flag, i)).collect()
}

/// Refuses keys a cache type does not know, naming the key (a typo such
/// as `ignore-errors` must not be dropped silently). BuildKit's keys that
/// strata has no use for are listed as not supported yet.
fn check_cache_keys(
    flag: &str,
    m: &BTreeMap<String, String>,
    known: &[&str],
) -> anyhow::Result<()> {
    const BUILDKIT_ONLY: [&str; 8] = [
        "compression",
        "compression-level",
        "force-compression",
        "oci-mediatypes",
        "image-manifest",
        "digest",
        "tag",
        "scope",
    ];
    for k in m.keys() {
        if known.contains(&k.as_str()) {
            continue;
        }
        if BUILDKIT_ONLY.contains(&k.as_str()) {
            return Err(crate::not_supported(&format!("{flag} {k}=")));
        }
        bail!("{flag}: unknown key {k:?}: use {}", known.join(", "));
    }
    Ok(())
}

impl std::str::FromStr for CacheFrom {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<CacheFrom> {
        const FLAG: &str = "--cache-from";
        if !s.contains('=') {
            return Ok(CacheFrom::Registry {
                reference: s.to_string(),
            });
        }
        let m = cache_items(FLAG, s)?;
        match m.get("type").map(String::as_str) {
            Some("local") => check_cache_keys(FLAG, &m, &["type", "src"])?,
            Some("registry") => check_cache_keys(FLAG, &m, &["type", "ref"])?,
            _ => {}
        }
        match m.get("type").map(String::as_str) {
            Some("local") => Ok(CacheFrom::Local {
                src: m
                    .get("src")
                    .map(PathBuf::from)
                    .ok_or_else(|| anyhow!("{FLAG}: type=local needs src=DIR"))?,
            }),
            Some("registry") => Ok(CacheFrom::Registry {
                reference: m
                    .get("ref")
                    .cloned()
                    .ok_or_else(|| anyhow!("{FLAG}: type=registry needs ref=IMAGE"))?,
            }),
            Some(other) => bail!(
                "{FLAG}: unknown type {other:?}: use local or registry (or a plain image reference)"
            ),
            None => bail!("{FLAG}: missing type= (local or registry)"),
        }
    }
}

impl std::str::FromStr for CacheTo {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<CacheTo> {
        const FLAG: &str = "--cache-to";
        // A bare reference is a registry cache, as in buildx.
        if !s.contains('=') {
            return Ok(CacheTo::Registry {
                reference: s.to_string(),
                max: true,
                ignore_error: false,
            });
        }
        let m = cache_items(FLAG, s)?;
        match m.get("type").map(String::as_str) {
            Some("local") => check_cache_keys(FLAG, &m, &["type", "dest", "mode", "ignore-error"])?,
            Some("registry") => {
                check_cache_keys(FLAG, &m, &["type", "ref", "mode", "ignore-error"])?
            }
            Some("inline") => check_cache_keys(FLAG, &m, &["type"])?,
            _ => {}
        }
        let ignore_error = match m.get("ignore-error") {
            Some(v) => parse_bool(FLAG, "ignore-error", v)?,
            None => false,
        };
        let max = match m.get("mode").map(String::as_str) {
            // max by default (BuildKit's is min): when a change makes the
            // final stage miss, a fresh runner still finds the stages it
            // reads (dependency builds) in the cache instead of rebuilding.
            Some("min") => false,
            None | Some("max") => true,
            Some(other) => bail!("{FLAG}: mode={other:?}: use min or max"),
        };
        match m.get("type").map(String::as_str) {
            Some("local") => Ok(CacheTo::Local {
                dest: m
                    .get("dest")
                    .map(PathBuf::from)
                    .ok_or_else(|| anyhow!("{FLAG}: type=local needs dest=DIR"))?,
                max,
                ignore_error,
            }),
            Some("registry") => Ok(CacheTo::Registry {
                reference: m
                    .get("ref")
                    .cloned()
                    .ok_or_else(|| anyhow!("{FLAG}: type=registry needs ref=IMAGE"))?,
                max,
                ignore_error,
            }),
            Some("inline") => Ok(CacheTo::Inline),
            Some(other) => bail!("{FLAG}: unknown type {other:?}: use local, registry or inline"),
            None => bail!("{FLAG}: missing type= (local, registry or inline)"),
        }
    }
}
