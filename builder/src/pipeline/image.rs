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
    let platform = frontend::Platform::native();
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

/// RFC 3339 creation time: `SOURCE_DATE_EPOCH` when set (reproducible
/// builds), else now.
pub fn created_now() -> String {
    let t = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or_else(time::OffsetDateTime::now_utc);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
