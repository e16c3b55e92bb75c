//! Base-image metadata for the frontend: the local store first, then the
//! registry (manifest and config only — layers stay lazy). `--pull` skips
//! the local store.

use std::sync::Mutex;

use cache::store::Store;
use frontend::{ImageConfig, ImageResolver, Platform, ResolvedImage};

pub struct StoreResolver<'a> {
    pub store: &'a Store,
    pub pull: bool,
    /// What was resolved (reference → manifest digest), for the summary and
    /// metadata file.
    pub resolved: Mutex<Vec<(String, String)>>,
    /// `--build-context` names (lower-case) and what they stand for.
    pub aliases: std::collections::BTreeMap<String, crate::options::NamedContextSource>,
    /// The platform each resolved image's config names, by the reference
    /// the Dockerfile gave (for the InvalidBaseImagePlatform check).
    platforms: Mutex<std::collections::BTreeMap<String, Platform>>,
    /// The build's registry client.
    registry: &'a crate::Registry,
}

impl<'a> StoreResolver<'a> {
    pub fn new(store: &'a Store, registry: &'a crate::Registry, pull: bool) -> Self {
        StoreResolver {
            store,
            registry,
            pull,
            resolved: Mutex::new(Vec::new()),
            aliases: Default::default(),
            platforms: Mutex::new(Default::default()),
        }
    }

    /// The image's digest and config, and the platform its config names.
    fn lookup(&self, reference: &str) -> anyhow::Result<(ResolvedImage, Option<Platform>)> {
        let platform = cache::platform::Platform::host();
        // `docker-archive:PATH` and `oci-layout:PATH[:tag]` are read
        // directly (their blobs go into the store); names go to the store,
        // then the registry.
        let img = match cache::reference::ImageSource::parse(reference)? {
            cache::reference::ImageSource::Reference(r) => {
                let local = if self.pull {
                    None
                } else {
                    self.store.resolve_image_for(&r, &platform)?
                };
                match local {
                    Some(i) => i,
                    None => {
                        let client = self.registry.client()?;
                        let remote =
                            cache::transport::registry::resolve_remote(client, &r, &platform)?;
                        remote.store_metadata(self.store)?;
                        self.store.tag_image(&r, remote.top_digest())?;
                        self.store.image(remote.top_digest(), &platform)?
                    }
                }
            }
            other => cache::transport::resolve_source(self.store, &other, &platform)?
                .ok_or_else(|| anyhow::anyhow!("{reference} holds no image for {platform}"))?,
        };
        let raw: serde_json::Value = serde_json::from_slice(img.config.raw())?;
        let config: ImageConfig = match raw.get("config") {
            Some(c) if !c.is_null() => serde_json::from_value(c.clone())?,
            _ => ImageConfig::default(),
        };
        let digest = img.manifest_digest.to_string();
        crate::lock(&self.resolved).push((reference.to_string(), digest.clone()));
        Ok((ResolvedImage { digest, config }, config_platform(&raw)))
    }
}

impl ImageResolver for StoreResolver<'_> {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        if *platform != crate::platform::host() {
            return Err(format!(
                "{reference}: not supported yet: building for {platform} (only the native platform)"
            ));
        }
        let target = match self.aliases.get(&reference.to_ascii_lowercase()) {
            Some(crate::options::NamedContextSource::Image(r)) => r.clone(),
            Some(crate::options::NamedContextSource::OciLayout(p)) => {
                format!("oci-layout:{}", p.display())
            }
            Some(crate::options::NamedContextSource::Dir(dir)) => {
                let digest = super::dir_base::image_from_dir(self.store, reference, dir)
                    .map_err(|e| format!("FROM {reference}: {e:#}"))?;
                crate::lock(&self.resolved).push((reference.to_string(), digest.clone()));
                return Ok(ResolvedImage {
                    digest,
                    config: ImageConfig::default(),
                });
            }
            Some(crate::options::NamedContextSource::Git(_)) => {
                return Err(format!(
                    "internal: the git context {reference} was not checked out"
                ));
            }
            None => reference.to_string(),
        };
        let (resolved, served) = self
            .lookup(&target)
            .map_err(|e| format!("cannot resolve base image {target}: {e:#}"))?;
        if let Some(p) = served {
            crate::lock(&self.platforms).insert(reference.to_string(), p);
        }
        Ok(resolved)
    }

    fn resolved_platform(&self, reference: &str, _platform: &Platform) -> Option<Platform> {
        crate::lock(&self.platforms).get(reference).cloned()
    }
}

/// The platform an image config names (`os`, `architecture`, `variant`),
/// when it names one.
fn config_platform(raw: &serde_json::Value) -> Option<Platform> {
    let field = |k: &str| {
        raw.get(k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
    };
    Some(Platform {
        os: field("os")?.to_string(),
        architecture: field("architecture")?.to_string(),
        variant: field("variant").map(str::to_string),
    })
}

/// The manifest digest of an image `COPY --from=<image>` reads (the local
/// store, else the registry's manifest and config).
pub fn resolve_for_copy(
    store: &Store,
    registry: &crate::Registry,
    reference: &str,
    pull: bool,
) -> anyhow::Result<String> {
    let r = StoreResolver::new(store, registry, pull);
    Ok(r.lookup(reference)?.0.digest)
}

/// The error of a `COPY --from=NAME` (or `--mount=from=NAME`) whose NAME is
/// no stage and could not be pulled as an image either. BuildKit tries such
/// a name as an image too; a bare word is far more often a mistyped stage,
/// so that is said first, and the registry's answer after it.
pub fn not_a_stage(stages: &[String], flag: &str, name: &str, err: anyhow::Error) -> anyhow::Error {
    let bare = !name.contains(['/', ':', '@']);
    if !bare {
        return err.context(format!("{flag}={name}: cannot resolve the image {name}"));
    }
    let known = if stages.is_empty() {
        "this Dockerfile names no stage".to_string()
    } else {
        format!("the stages are {}", stages.join(", "))
    };
    let image = cache::reference::Reference::parse(name)
        .map(|r| r.to_string())
        .unwrap_or_else(|_| name.to_string());
    anyhow::anyhow!(
        "{flag}={name}: no stage is named {name} ({known}); as an image, {image} could not be pulled either: {err:#}"
    )
}

/// The stage names a Dockerfile declares (`FROM … AS name`), all of them:
/// the build graph holds only the stages the target needs.
pub fn stage_names(df: &frontend::ast::Dockerfile) -> Vec<String> {
    df.instructions
        .iter()
        .filter(|i| i.kind == frontend::ast::Keyword::From)
        .filter_map(|i| {
            let words: Vec<&str> = i.args_text.value.split_whitespace().collect();
            match words.as_slice() {
                [.., kw, name] if kw.eq_ignore_ascii_case("as") => Some(name.to_string()),
                _ => None,
            }
        })
        .collect()
}
