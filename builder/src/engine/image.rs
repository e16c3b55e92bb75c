//! The final image: config JSON, manifest, tags.
//!
//! The config starts from the base image's *raw* JSON, so fields strata does
//! not model (Docker's `Hostname`, `Domainname`, `docker_version`, a
//! `variant`, vendor extensions) pass through untouched. The stage's
//! [`frontend::ImageConfig`] is then laid over the `config` object key by
//! key: it is the base's config plus the stage's instructions, so a key it
//! leaves out (Docker's `omitempty`) is removed. Docker-only keys
//! (`Healthcheck`, `OnBuild`, `Shell`, `StopSignal`) are written whatever the
//! manifest media type, as BuildKit does, so nothing the Dockerfile said is
//! lost. `container_config` and `container` are dropped: they describe the
//! container that committed the *base* image's last layer, which would be a
//! false statement about this one (BuildKit does not write them either).
//!
//! History is the base's, then the stage's; each stage entry that stands for
//! a filesystem step is matched 1:1 with that step's [`LayerResult`], and a
//! step that changed nothing becomes `empty_layer: true` (no layer), as
//! BuildKit's exporter records it.

use anyhow::Context as _;
use cache::image::Image;
use cache::reference::Reference;
use frontend::{History, ImageConfig, Platform};
use serde_json::{Map, Value, json};

use super::{Engine, LayerResult, LayerStack};

/// The `config` keys the frontend's [`ImageConfig`] owns.
const CONFIG_KEYS: &[&str] = &[
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Healthcheck",
    "ArgsEscaped",
    "Volumes",
    "WorkingDir",
    "Labels",
    "OnBuild",
    "StopSignal",
    "Shell",
];

/// Everything the image of one stage is made from.
#[derive(Debug, Clone, Copy)]
pub struct ImageRequest<'a> {
    /// The base image's config bytes (`BaseImage::config`); `None` for
    /// `FROM scratch`. For `FROM <stage>`, the config this function made for
    /// that stage (its history is then the parent's, already complete).
    pub base_config: Option<&'a [u8]>,
    /// The stage's final config ([`frontend::Stage::config`]).
    pub config: &'a ImageConfig,
    /// The stage's own history ([`frontend::Stage::history`]).
    pub history: &'a [History],
    /// `MAINTAINER` ([`frontend::Stage::author`]).
    pub author: Option<&'a str>,
    pub platform: &'a Platform,
    /// One result per filesystem step of the stage, in order.
    pub steps: &'a [LayerResult],
    /// The stage's final root filesystem (the base's layers + the new ones).
    pub stack: &'a LayerStack,
    /// Names to tag the image with in the store (`app:latest`, ...).
    pub tags: &'a [String],
}

impl Engine {
    /// The config JSON [`Engine::assemble`] would write, without writing
    /// anything: what a `FROM <stage>` child takes as its `base_config`
    /// when the parent stage is not exported itself.
    pub fn image_config(&self, req: &ImageRequest<'_>) -> anyhow::Result<Vec<u8>> {
        config_json(req, self.build_time())
    }

    /// Writes the config and manifest (in the engine's manifest format) into
    /// the store, tags the image, and returns it. Its ID is the config
    /// digest.
    pub fn assemble(&self, req: &ImageRequest<'_>) -> anyhow::Result<Image> {
        let config = config_json(req, self.build_time())?;
        // Base layers no step needed are still only in the registry.
        for layer in req.stack.layers() {
            self.ensure_blob(layer)?;
        }
        let image = self
            .store
            .write_image(&config, &req.stack.descriptors(), self.opts.manifest_format)
            .context("writing the image manifest")?;
        for tag in req.tags {
            let r = Reference::parse(tag).with_context(|| format!("tag {tag:?}"))?;
            self.store
                .tag_image(&r, &image.manifest_digest)
                .with_context(|| format!("tagging the image as {tag}"))?;
        }
        Ok(image)
    }
}

/// The config JSON bytes for `req`, created at `created` (Unix seconds).
pub(crate) fn config_json(req: &ImageRequest<'_>, created: i64) -> anyhow::Result<Vec<u8>> {
    let created = time::OffsetDateTime::from_unix_timestamp(created)
        .context("the creation time is out of range")?
        .format(&time::format_description::well_known::Rfc3339)
        .context("formatting the creation time")?;
    let mut root: Map<String, Value> = match req.base_config {
        None => Map::new(),
        Some(raw) => match serde_json::from_slice(raw).context("reading the base image config")? {
            Value::Object(m) => m,
            _ => anyhow::bail!("the base image config is not a JSON object"),
        },
    };
    root.remove("container_config");
    root.remove("container");
    root.insert("architecture".into(), json!(req.platform.architecture));
    root.insert("os".into(), json!(req.platform.os));
    match &req.platform.variant {
        Some(v) => root.insert("variant".into(), json!(v)),
        None => root.remove("variant"),
    };
    root.insert("created".into(), json!(created));
    if let Some(a) = req.author {
        root.insert("author".into(), json!(a));
    }

    let mut cfg = match root.remove("config") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let ours = match serde_json::to_value(req.config).context("serializing the stage config")? {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for key in CONFIG_KEYS {
        match ours.get(*key) {
            Some(v) => cfg.insert((*key).to_string(), v.clone()),
            None => cfg.remove(*key),
        };
    }
    root.insert("config".into(), Value::Object(cfg));

    let base_layers = match root.get("rootfs").and_then(|r| r.get("diff_ids")) {
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    };
    let new_layers = req.steps.iter().filter(|s| !s.empty).count();
    if base_layers + new_layers != req.stack.len() {
        anyhow::bail!(
            "internal: the base has {base_layers} layers and the steps made {new_layers}, but the final root filesystem has {}",
            req.stack.len()
        );
    }
    root.insert(
        "rootfs".into(),
        json!({"type": "layers", "diff_ids": req.stack.diff_ids()}),
    );

    let mut history = match root.remove("history") {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    let mut steps = req.steps.iter();
    for h in req.history {
        let empty = if h.empty_layer {
            true
        } else {
            let step = steps.next().ok_or_else(|| {
                anyhow::anyhow!(
                    "the stage's history has more layer entries than it has steps ({}); \
                     history entry {:?} has no step",
                    req.steps.len(),
                    h.created_by
                )
            })?;
            step.empty
        };
        let mut e = Map::new();
        e.insert("created".into(), json!(created));
        e.insert("created_by".into(), json!(h.created_by));
        if !h.comment.is_empty() {
            e.insert("comment".into(), json!(h.comment));
        }
        if empty {
            e.insert("empty_layer".into(), json!(true));
        }
        history.push(Value::Object(e));
    }
    if steps.next().is_some() {
        anyhow::bail!(
            "the stage has {} steps but fewer history entries for them",
            req.steps.len()
        );
    }
    root.insert("history".into(), Value::Array(history));
    serde_json::to_vec(&Value::Object(root)).context("serializing the image config")
}

#[cfg(test)]
mod tests {
    use super::*;
    use cache::digest::Digest;
    use cache::image::Descriptor;

    fn hist(by: &str, empty: bool) -> History {
        History {
            created_by: by.into(),
            comment: "buildkit.dockerfile.v0".into(),
            empty_layer: empty,
        }
    }

    #[test]
    fn overlays_the_stage_config_and_lines_history_up_with_layers() {
        let base_diff = Digest::of(b"base");
        let base = json!({
            "architecture": "amd64", "os": "linux", "created": "2020-01-01T00:00:00Z",
            "docker_version": "24.0.0",
            "container_config": {"Cmd": ["old"]},
            "config": {"Hostname": "", "Cmd": ["sh"], "Env": ["PATH=/bin"], "OnBuild": null},
            "rootfs": {"type": "layers", "diff_ids": [base_diff]},
            "history": [{"created_by": "ADD rootfs"}]
        })
        .to_string();
        let base_stack = LayerStack::from_image(
            &[Descriptor::new("x", base_diff.clone(), 1)],
            std::slice::from_ref(&base_diff),
            None,
        )
        .expect("stack");
        let run_diff = Digest::of(b"run");
        let after_run = base_stack.with_layer(Descriptor::new("x", run_diff.clone(), 1), run_diff);
        let steps = vec![
            LayerResult {
                stack: after_run.clone(),
                layer: after_run.layers().last().cloned(),
                snapshot_dir: None,
                empty: false,
            },
            LayerResult::unchanged(&after_run),
        ];
        let mut config = ImageConfig {
            cmd: vec!["app".into()],
            shell: vec!["/bin/bash".into(), "-c".into()],
            healthcheck: Some(frontend::Healthcheck {
                test: vec!["NONE".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        config.env_set("PATH", "/bin");
        let history = [
            hist("RUN make", false),
            hist("ENV A=b", true),
            hist("WORKDIR /app", false),
        ];
        let platform = Platform::native();
        let req = ImageRequest {
            base_config: Some(base.as_bytes()),
            config: &config,
            history: &history,
            author: Some("me"),
            platform: &platform,
            steps: &steps,
            stack: &after_run,
            tags: &[],
        };
        let out: Value =
            serde_json::from_slice(&config_json(&req, 0).expect("json")).expect("parse");
        assert_eq!(out["created"], "1970-01-01T00:00:00Z");
        assert_eq!(out["docker_version"], "24.0.0");
        assert_eq!(out["author"], "me");
        assert!(out.get("container_config").is_none());
        assert_eq!(out["config"]["Hostname"], "");
        assert_eq!(out["config"]["Cmd"], json!(["app"]));
        assert_eq!(out["config"]["Shell"], json!(["/bin/bash", "-c"]));
        assert_eq!(out["config"]["Healthcheck"]["Test"], json!(["NONE"]));
        assert!(out["config"].get("OnBuild").is_none());
        assert_eq!(out["rootfs"]["diff_ids"].as_array().map(Vec::len), Some(2));
        let h = out["history"].as_array().expect("history");
        assert_eq!(h.len(), 4);
        assert_eq!(h[0]["created_by"], "ADD rootfs");
        assert!(h[1].get("empty_layer").is_none());
        assert_eq!(h[2]["empty_layer"], true);
        assert_eq!(h[3]["created_by"], "WORKDIR /app");
        assert_eq!(h[3]["empty_layer"], true, "the WORKDIR changed nothing");

        // One step too few for the history: refused, not misaligned.
        let short = ImageRequest {
            steps: &steps[..1],
            ..req
        };
        assert!(config_json(&short, 0).is_err());
    }
}
