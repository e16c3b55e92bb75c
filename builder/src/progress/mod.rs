//! Progress output: the solver emits [`Event`]s, a [`Sink`] shows them.
//!
//! Four sinks: `plain` for CI logs (BuildKit's `#N` lines), `json` (one
//! event per line, for tools), `tty` (a live view redrawn in place) and
//! `quiet`. `auto` picks `tty` when stderr is a terminal, else `plain`.
//! Sinks write to stderr so stdout stays free for `-q` and `--iidfile -`.

pub mod clip;
mod json;
mod plain;
mod tty;

use std::io::IsTerminal as _;
use std::time::{Duration, SystemTime};

pub use json::JsonSink;
pub use plain::PlainSink;
pub use tty::TtySink;

/// What happened to a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// The step started running (`name` is what progress shows, e.g.
    /// `[build 2/4] RUN make`).
    Started {
        name: String,
    },
    /// The step's key was found in the cache; it will not run.
    Cached {
        name: String,
    },
    /// One line the step's process printed.
    Output {
        line: String,
    },
    /// Why the step missed the cache (`--explain-cache`).
    Explain {
        reason: String,
    },
    /// Bytes a pull, push or cache export moved so far (a running total).
    Bytes {
        bytes: u64,
    },
    Finished,
    Failed {
        error: String,
    },
}

/// One progress event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// BuildKit-style step number (`#5`).
    pub step: usize,
    pub at: SystemTime,
    pub kind: EventKind,
}

impl Event {
    pub fn now(step: usize, kind: EventKind) -> Event {
        Event {
            step,
            at: SystemTime::now(),
            kind,
        }
    }
}

/// The end of a build, for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub elapsed: Duration,
    pub steps_run: usize,
    pub steps_cached: usize,
    /// The image id (config digest) or manifest digest, if an image was made.
    pub image_digest: Option<String>,
    /// Total compressed size of the image's layers, in bytes.
    pub image_size: Option<u64>,
    pub failed: bool,
}

impl Summary {
    /// One human line: `built in 3.2s: 4 steps run, 2 cached, image sha256:… (12.3 MB)`.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} in {:.1}s: {} step{} run, {} cached",
            if self.failed { "failed" } else { "built" },
            self.elapsed.as_secs_f64(),
            self.steps_run,
            if self.steps_run == 1 { "" } else { "s" },
            self.steps_cached
        );
        if let Some(d) = &self.image_digest {
            s.push_str(&format!(", image {d}"));
        }
        if let Some(z) = self.image_size {
            s.push_str(&format!(" ({})", human_size(z)));
        }
        s
    }
}

/// `1536` → `1.5 kB` (decimal units, as docker prints sizes).
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Something that shows progress. Called from many solver threads at once.
pub trait Sink: Send + Sync {
    fn event(&self, e: &Event);
    fn finish(&self, summary: &Summary);
    /// `more` entries will be shown (steps, then each task as it starts):
    /// the total of the tty's `(7/10)` header.
    fn planned(&self, _more: usize) {}
}

/// Work that is not a Dockerfile step — a push, a cache export, a base
/// image download — shown like one, numbered after the steps.
pub struct Tasks<'a> {
    sink: &'a dyn Sink,
    next: std::sync::atomic::AtomicUsize,
}

impl<'a> Tasks<'a> {
    /// Tasks numbered from `first` on.
    pub fn new(sink: &'a dyn Sink, first: usize) -> Tasks<'a> {
        Tasks {
            sink,
            next: std::sync::atomic::AtomicUsize::new(first),
        }
    }

    /// Starts a task called `name`.
    pub fn start(&self, name: impl Into<String>) -> Task<'_> {
        let step = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.sink.planned(1);
        self.sink
            .event(&Event::now(step, EventKind::Started { name: name.into() }));
        Task {
            sink: self.sink,
            step,
        }
    }
}

/// One running [`Tasks`] entry.
pub struct Task<'a> {
    sink: &'a dyn Sink,
    step: usize,
}

impl Task<'_> {
    /// A line of detail (`3 layers pushed, 1 mounted`).
    pub fn line(&self, line: impl Into<String>) {
        self.sink.event(&Event::now(
            self.step,
            EventKind::Output { line: line.into() },
        ));
    }

    /// The bytes moved so far.
    pub fn bytes(&self, bytes: u64) {
        self.sink
            .event(&Event::now(self.step, EventKind::Bytes { bytes }));
    }

    /// Ends the task, well or with `error`.
    pub fn end<T>(self, r: &anyhow::Result<T>) {
        let kind = match r {
            Ok(_) => EventKind::Finished,
            Err(e) => EventKind::Failed {
                error: crate::error_text(e),
            },
        };
        self.sink.event(&Event::now(self.step, kind));
    }
}

/// `--progress quiet` (and `-q`): nothing.
#[derive(Debug, Default)]
pub struct QuietSink;

impl Sink for QuietSink {
    fn event(&self, _e: &Event) {}
    fn finish(&self, _summary: &Summary) {}
}

/// `--progress` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Auto,
    Tty,
    Plain,
    Json,
    Quiet,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        Ok(match s {
            "auto" => Mode::Auto,
            "tty" => Mode::Tty,
            "plain" => Mode::Plain,
            "json" | "rawjson" => Mode::Json,
            "quiet" => Mode::Quiet,
            other => {
                return Err(format!(
                    "unknown progress mode {other:?}: use auto, tty, plain, json or quiet"
                ));
            }
        })
    }
}

/// The sink for a mode, writing to stderr.
pub fn sink_for(mode: Mode) -> Box<dyn Sink> {
    let mode = match mode {
        Mode::Auto if std::io::stderr().is_terminal() => Mode::Tty,
        Mode::Auto => Mode::Plain,
        m => m,
    };
    match mode {
        Mode::Tty => Box::new(TtySink::stderr()),
        Mode::Plain | Mode::Auto => Box::new(PlainSink::new(Box::new(std::io::stderr()))),
        Mode::Json => Box::new(JsonSink::new(Box::new(std::io::stderr()))),
        Mode::Quiet => Box::new(QuietSink),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_counts() {
        let s = Summary {
            elapsed: Duration::from_millis(3200),
            steps_run: 1,
            steps_cached: 2,
            image_digest: Some("sha256:ab".into()),
            image_size: Some(12_300_000),
            failed: false,
        };
        assert_eq!(
            s.line(),
            "built in 3.2s: 1 step run, 2 cached, image sha256:ab (12.3 MB)"
        );
    }

    #[test]
    fn modes_parse_and_refuse_unknowns() {
        assert_eq!("json".parse::<Mode>(), Ok(Mode::Json));
        assert!(
            "fancy"
                .parse::<Mode>()
                .unwrap_err()
                .contains("auto, tty, plain")
        );
    }
}
