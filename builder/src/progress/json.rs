//! `--progress json`: one JSON object per line, for tools. Every event has
//! `time` (RFC 3339 with nanoseconds, UTC) and `unix_nanos`, so parallel
//! steps can be checked to overlap.

use std::io::Write;
use std::sync::Mutex;
use std::time::SystemTime;

use serde_json::{Value, json};

use super::{Event, EventKind, Sink, Summary};

/// Writes JSON lines.
pub struct JsonSink {
    out: Mutex<Box<dyn Write + Send>>,
}

impl JsonSink {
    pub fn new(out: Box<dyn Write + Send>) -> JsonSink {
        JsonSink {
            out: Mutex::new(out),
        }
    }

    fn write(&self, v: Value) {
        let mut out = crate::lock(&self.out);
        let _ = writeln!(out, "{v}");
    }
}

/// RFC 3339 UTC with nanoseconds, and unix nanoseconds.
pub fn timestamps(at: SystemTime) -> (String, i128) {
    let odt = time::OffsetDateTime::from(at);
    let text = odt
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    (text, odt.unix_timestamp_nanos())
}

impl Sink for JsonSink {
    fn event(&self, e: &Event) {
        let (time, nanos) = timestamps(e.at);
        let mut v = json!({"time": time, "unix_nanos": nanos, "step": e.step});
        let obj = v.as_object_mut().expect("object literal");
        let (kind, extra) = match &e.kind {
            EventKind::Started { name } => ("started", json!({"name": name})),
            EventKind::Cached { name } => ("cached", json!({"name": name})),
            EventKind::Output { line } => ("output", json!({"line": line})),
            EventKind::Explain { reason } => ("cache_miss", json!({"reason": reason})),
            EventKind::Bytes { bytes } => ("bytes", json!({"bytes": bytes})),
            EventKind::Finished => ("finished", json!({})),
            EventKind::Failed { error } => ("failed", json!({"error": error})),
        };
        obj.insert("event".into(), kind.into());
        if let Value::Object(m) = extra {
            obj.extend(m);
        }
        self.write(v);
    }

    fn finish(&self, s: &Summary) {
        let (time, nanos) = timestamps(SystemTime::now());
        self.write(json!({
            "time": time, "unix_nanos": nanos, "event": "summary",
            "elapsed_seconds": s.elapsed.as_secs_f64(), "steps_run": s.steps_run,
            "steps_cached": s.steps_cached, "image_digest": s.image_digest,
            "image_size": s.image_size, "failed": s.failed,
        }));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_and_nanos() {
        let at = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let (t, n) = timestamps(at);
        assert_eq!(t, "2023-11-14T22:13:20.123456789Z");
        assert_eq!(n, 1_700_000_000_123_456_789);
    }
}
