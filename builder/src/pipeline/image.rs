//! The final image config: the stage's config (which already starts from
//! the base image's), rootfs diff IDs, and history (the base image's, then
//! every parent stage's, then the target stage's), in Docker's format so
//! Healthcheck, OnBuild, Shell and StopSignal are kept.

use serde_json::{Value, json};

use crate::ops::Layer;

/// One history entry with whether it made a layer.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub created_by: String,
    pub comment: String,
    pub empty_layer: bool,
    /// RFC 3339 time of the step (or of the step before a metadata entry).
    pub created: String,
}

/// Builds the config JSON bytes.
pub fn config_json(
    config: &frontend::ImageConfig,
    author: Option<&str>,
    base_history: &[Value],
    history: &[HistoryEntry],
    layers: &[Layer],
    created: &str,
) -> anyhow::Result<Vec<u8>> {
    let platform = crate::platform::host();
    let mut hist: Vec<Value> = base_history.to_vec();
    for h in history {
        let mut e = json!({"created": h.created, "created_by": h.created_by});
        if !h.comment.is_empty() {
            e["comment"] = json!(h.comment);
        }
        if h.empty_layer {
            e["empty_layer"] = json!(true);
        }
        hist.push(e);
    }
    let mut v = json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "created": created,
        "config": serde_json::to_value(config)?,
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()},
        "history": hist,
    });
    if let Some(a) = author {
        v["author"] = json!(a);
    }
    if let Some(var) = &platform.variant {
        v["variant"] = json!(var);
    }
    Ok(serde_json::to_vec(&v)?)
}

/// RFC 3339 creation time: `epoch` when given, else now.
pub fn created_at(epoch: Option<i64>) -> String {
    let t = epoch
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or_else(time::OffsetDateTime::now_utc);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn env_epoch() -> Option<i64> {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
}

/// The build's `SOURCE_DATE_EPOCH`: the build arg (or a global ARG
/// default) as the frontend resolved it, else the environment variable,
/// as BuildKit takes either.
pub fn source_date_epoch(
    from_args: Option<&frontend::SourceDateEpoch>,
) -> anyhow::Result<Option<i64>> {
    match from_args {
        Some(frontend::SourceDateEpoch::Seconds { seconds }) => Ok(Some(*seconds)),
        Some(frontend::SourceDateEpoch::Context) => Err(crate::not_supported(
            "SOURCE_DATE_EPOCH=context; give the time in seconds",
        )),
        Some(frontend::SourceDateEpoch::Stage { .. }) => Err(crate::not_supported(
            "SOURCE_DATE_EPOCH from a stage; give the time in seconds",
        )),
        None => Ok(env_epoch()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keeps_docker_fields_and_marks_empty_layers() {
        let cfg = frontend::ImageConfig {
            healthcheck: Some(frontend::Healthcheck {
                test: vec!["CMD".into(), "true".into()],
                ..Default::default()
            }),
            on_build: vec!["RUN echo".into()],
            shell: vec!["/bin/sh".into(), "-c".into()],
            stop_signal: "SIGTERM".into(),
            ..Default::default()
        };
        let layer = Layer {
            desc: cache::image::Descriptor::new(
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                cache::digest::Digest::of(b"blob"),
                4,
            ),
            diff_id: cache::digest::Digest::of(b"tar"),
            origin: None,
        };
        let history = [
            HistoryEntry {
                created_by: "ENV A=1".into(),
                comment: String::new(),
                empty_layer: true,
                created: "t1".into(),
            },
            HistoryEntry {
                created_by: "RUN x".into(),
                comment: String::new(),
                empty_layer: false,
                created: "t2".into(),
            },
        ];
        let base = vec![json!({"created": "t0", "created_by": "base"})];
        let bytes = config_json(
            &cfg,
            None,
            &base,
            &history,
            std::slice::from_ref(&layer),
            "t2",
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["config"]["Healthcheck"]["Test"], json!(["CMD", "true"]));
        assert_eq!(v["config"]["OnBuild"], json!(["RUN echo"]));
        assert_eq!(v["config"]["Shell"], json!(["/bin/sh", "-c"]));
        assert_eq!(v["config"]["StopSignal"], "SIGTERM");
        assert_eq!(v["rootfs"]["diff_ids"], json!([layer.diff_id.to_string()]));
        assert_eq!(v["history"].as_array().unwrap().len(), 3);
        assert_eq!(v["history"][1]["empty_layer"], true);
        assert!(v["history"][2].get("empty_layer").is_none());
        assert_eq!(v["created"], "t2");
    }
}
