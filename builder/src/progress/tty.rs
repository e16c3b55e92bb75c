//! `--progress tty`: a live view redrawn in place, like BuildKit's. A
//! header `[+] Building 3.1s (7/10)` tops the live part; finished steps
//! fold into one line each (`=> #4 [2/3] RUN make   1.2s`) and scroll up;
//! each running step shows its elapsed time, the bytes it moved (pulls,
//! pushes, cache exports) and its last few output lines. A ticker thread
//! redraws ten times a second so elapsed times move even when nothing
//! prints. Only the live part is cut at the terminal width (it is erased by
//! line count); lines that scroll into the history, the summary with the
//! image id among them, are printed whole.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::{Event, EventKind, Sink, Summary, human_size};

const TAIL: usize = 4;

struct Running {
    name: String,
    since: Instant,
    bytes: Option<u64>,
    tail: VecDeque<String>,
}

struct View {
    started: Instant,
    /// Steps the build shows, and how many are done (run or cached).
    total: usize,
    done_steps: usize,
    running: BTreeMap<usize, Running>,
    /// Lines drawn below the folded history last time (to erase them).
    drawn: usize,
    done: bool,
    width: usize,
}

/// The live terminal view.
pub struct TtySink {
    view: Arc<Mutex<View>>,
    ticker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl TtySink {
    pub fn stderr() -> TtySink {
        let width = terminal_width();
        let view = Arc::new(Mutex::new(View {
            started: Instant::now(),
            total: 0,
            done_steps: 0,
            running: BTreeMap::new(),
            drawn: 0,
            done: false,
            width,
        }));
        let v = Arc::clone(&view);
        let ticker = std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(100));
                let mut view = crate::lock(&v);
                if view.done {
                    return;
                }
                redraw(&mut view, &[]);
            }
        });
        TtySink {
            view,
            ticker: Mutex::new(Some(ticker)),
        }
    }
}

fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize struct we own; fd 2 may be anything.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(2, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 20 {
        ws.ws_col as usize
    } else {
        100
    }
}

fn clip(s: &str, width: usize) -> String {
    s.chars().take(width.saturating_sub(1)).collect()
}

/// `[+] Building 3.1s (7/10)`, BuildKit's header.
fn header(view: &View, finished: bool) -> String {
    let mut h = format!("[+] Building {:.1}s", view.started.elapsed().as_secs_f64());
    // Before the plan is known (resolving bases) there is nothing to count.
    if view.total > 0 || view.done_steps > 0 {
        h.push_str(&format!(
            " ({}/{})",
            view.done_steps,
            view.total.max(view.done_steps)
        ));
    }
    if finished {
        h.push_str(" FINISHED");
    }
    h
}

/// A step's line: name, bytes moved, elapsed time.
fn step_line(prefix: &str, step: usize, r: &Running) -> String {
    let bytes = r
        .bytes
        .map(|b| format!(" {}", human_size(b)))
        .unwrap_or_default();
    format!(
        "{prefix}#{step} {}{bytes} {:.1}s",
        r.name,
        r.since.elapsed().as_secs_f64()
    )
}

/// Erases the live part, prints `permanent` lines whole (they scroll into
/// the history), then draws the header and the running steps again.
fn redraw(view: &mut View, permanent: &[String]) {
    let mut out = String::new();
    if view.drawn > 0 {
        out.push_str(&format!("\x1b[{}F\x1b[J", view.drawn));
    }
    for l in permanent {
        out.push_str(l);
        out.push('\n');
    }
    let mut n = 0;
    if !view.done {
        out.push_str(&clip(&header(view, false), view.width));
        out.push('\n');
        n += 1;
        for (step, r) in &view.running {
            out.push_str(&clip(&step_line(" => ", *step, r), view.width));
            out.push('\n');
            n += 1;
            for l in &r.tail {
                out.push_str("\x1b[2m");
                out.push_str(&clip(&format!("    {l}"), view.width));
                out.push_str("\x1b[0m\n");
                n += 1;
            }
        }
    }
    view.drawn = n;
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(out.as_bytes());
    let _ = err.flush();
}

impl Sink for TtySink {
    fn planned(&self, more: usize) {
        crate::lock(&self.view).total += more;
    }

    fn event(&self, e: &Event) {
        let mut view = crate::lock(&self.view);
        let mut permanent = Vec::new();
        match &e.kind {
            EventKind::Started { name } => {
                view.running.insert(
                    e.step,
                    Running {
                        name: name.clone(),
                        since: Instant::now()
                            - SystemTime::now().duration_since(e.at).unwrap_or_default(),
                        bytes: None,
                        tail: VecDeque::new(),
                    },
                );
            }
            EventKind::Cached { name } => {
                view.done_steps += 1;
                permanent.push(format!(" => CACHED #{} {name}", e.step));
            }
            EventKind::Output { line } => {
                if let Some(r) = view.running.get_mut(&e.step) {
                    if r.tail.len() == TAIL {
                        r.tail.pop_front();
                    }
                    r.tail.push_back(line.clone());
                }
            }
            EventKind::Bytes { bytes } => {
                if let Some(r) = view.running.get_mut(&e.step) {
                    r.bytes = Some(*bytes);
                }
            }
            EventKind::Explain { reason } => {
                permanent.push(format!("    #{} cache miss: {reason}", e.step))
            }
            EventKind::Finished => {
                if let Some(r) = view.running.remove(&e.step) {
                    view.done_steps += 1;
                    permanent.push(step_line(" => ", e.step, &r));
                }
            }
            EventKind::Failed { error } => {
                if let Some(r) = view.running.remove(&e.step) {
                    permanent.push(format!(" => ERROR #{} {}", e.step, r.name));
                    permanent.extend(r.tail.iter().map(|l| format!("    {l}")));
                }
                permanent.push(format!("    {error}"));
            }
        }
        redraw(&mut view, &permanent);
    }

    fn finish(&self, summary: &Summary) {
        {
            let mut view = crate::lock(&self.view);
            view.done = true;
            view.running.clear();
            let head = header(&view, !summary.failed);
            redraw(&mut view, &[head, summary.line()]);
        }
        if let Some(t) = crate::lock(&self.ticker).take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_counts_steps_as_buildkit_does() {
        let view = View {
            started: Instant::now(),
            total: 10,
            done_steps: 7,
            running: BTreeMap::new(),
            drawn: 0,
            done: false,
            width: 80,
        };
        let h = header(&view, false);
        assert!(h.starts_with("[+] Building 0."), "{h}");
        assert!(h.ends_with("s (7/10)"), "{h}");
        assert!(header(&view, true).ends_with("s (7/10) FINISHED"));
    }

    #[test]
    fn step_lines_show_bytes() {
        let r = Running {
            name: "[1/3] FROM busybox".into(),
            since: Instant::now(),
            bytes: Some(2_500_000),
            tail: VecDeque::new(),
        };
        let l = step_line(" => ", 1, &r);
        assert!(l.starts_with(" => #1 [1/3] FROM busybox 2.5 MB 0."), "{l}");
    }
}
