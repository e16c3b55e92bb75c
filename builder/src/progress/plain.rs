//! `--progress plain`: BuildKit's CI log format. A step's header
//! (`#5 [2/3] RUN make`), its output lines prefixed with the step and the
//! seconds since it started (`#5 0.123 hello`), then `#5 DONE 1.2s`,
//! `#5 CACHED` or `#5 ERROR: …`. When parallel steps interleave, the header
//! is repeated before a step's lines resume, so every block is readable on
//! its own.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::SystemTime;

use super::{Event, EventKind, Sink, Summary};

struct State {
    out: Box<dyn Write + Send>,
    started: HashMap<usize, (SystemTime, String)>,
    last_step: Option<usize>,
}

/// Writes plain progress lines.
pub struct PlainSink {
    state: Mutex<State>,
}

impl PlainSink {
    pub fn new(out: Box<dyn Write + Send>) -> PlainSink {
        PlainSink {
            state: Mutex::new(State {
                out,
                started: HashMap::new(),
                last_step: None,
            }),
        }
    }
}

impl Sink for PlainSink {
    fn event(&self, e: &Event) {
        let mut st = crate::lock(&self.state);
        let st = &mut *st;
        let n = e.step;
        // Progress is best effort: a closed stderr must not fail the build.
        let _ = match &e.kind {
            EventKind::Started { name } => {
                st.started.insert(n, (e.at, name.clone()));
                writeln!(st.out, "\n#{n} {name}")
            }
            EventKind::Cached { name } => writeln!(st.out, "\n#{n} {name}\n#{n} CACHED"),
            EventKind::Output { line } => {
                let (t0, name) = st.started.get(&n).cloned().unwrap_or((e.at, String::new()));
                let secs = e.at.duration_since(t0).unwrap_or_default().as_secs_f64();
                let header = if st.last_step != Some(n) && !name.is_empty() {
                    format!("#{n} {name}\n")
                } else {
                    String::new()
                };
                writeln!(st.out, "{header}#{n} {secs:.3} {line}")
            }
            EventKind::Explain { reason } => writeln!(st.out, "#{n} cache miss: {reason}"),
            EventKind::Bytes { bytes } => {
                writeln!(st.out, "#{n} {} transferred", super::human_size(*bytes))
            }
            EventKind::Finished => {
                let secs = st
                    .started
                    .get(&n)
                    .map(|(t0, _)| e.at.duration_since(*t0).unwrap_or_default().as_secs_f64())
                    .unwrap_or(0.0);
                writeln!(st.out, "#{n} DONE {secs:.1}s")
            }
            EventKind::Failed { error } => writeln!(st.out, "#{n} ERROR: {error}"),
        };
        st.last_step = Some(n);
    }

    fn finish(&self, summary: &Summary) {
        let mut st = crate::lock(&self.state);
        let _ = writeln!(st.out, "\n{}", summary.line());
        let _ = st.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn output_lines_are_prefixed_and_cache_hits_marked() {
        let buf = Buf::default();
        let sink = PlainSink::new(Box::new(buf.clone()));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let ev = |step, dt: u64, kind| Event {
            step,
            at: t0 + Duration::from_millis(dt),
            kind,
        };
        sink.event(&ev(
            5,
            0,
            EventKind::Started {
                name: "[2/3] RUN echo hello".into(),
            },
        ));
        sink.event(&ev(
            6,
            0,
            EventKind::Cached {
                name: "[1/3] COPY a /".into(),
            },
        ));
        sink.event(&ev(
            5,
            123,
            EventKind::Output {
                line: "hello".into(),
            },
        ));
        sink.event(&ev(5, 200, EventKind::Finished));
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("#6 CACHED"), "{text}");
        assert!(
            text.contains("#5 [2/3] RUN echo hello\n#5 0.123 hello\n"),
            "{text}"
        );
        assert!(text.contains("#5 DONE 0.2s"), "{text}");
    }
}
