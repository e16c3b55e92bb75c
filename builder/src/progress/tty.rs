//! `--progress tty`: a live view redrawn in place, like BuildKit's. Finished
//! steps fold into one line each (`=> [2/3] RUN make   1.2s`) and scroll
//! up; each running step shows its elapsed time and its last few output
//! lines. A ticker thread redraws ten times a second so elapsed times move
//! even when nothing prints.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::{Event, EventKind, Sink, Summary};

const TAIL: usize = 4;

struct Running {
    name: String,
    since: Instant,
    tail: VecDeque<String>,
}

struct View {
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
            running: BTreeMap::new(),
            drawn: 0,
            done: false,
            width,
        }));
        let v = Arc::clone(&view);
        let ticker = std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(100));
                let mut view = v.lock().unwrap_or_else(|p| p.into_inner());
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

/// Erases the live part, prints `permanent` lines (they scroll into the
/// history), then draws the running steps again.
fn redraw(view: &mut View, permanent: &[String]) {
    let mut out = String::new();
    if view.drawn > 0 {
        out.push_str(&format!("\x1b[{}F\x1b[J", view.drawn));
    }
    for l in permanent {
        out.push_str(&clip(l, view.width));
        out.push('\n');
    }
    let mut n = 0;
    for (step, r) in &view.running {
        let secs = r.since.elapsed().as_secs_f64();
        out.push_str(&clip(
            &format!("=> #{step} {} {secs:.1}s", r.name),
            view.width,
        ));
        out.push('\n');
        n += 1;
        for l in &r.tail {
            out.push_str("\x1b[2m");
            out.push_str(&clip(&format!("   {l}"), view.width));
            out.push_str("\x1b[0m\n");
            n += 1;
        }
    }
    view.drawn = n;
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(out.as_bytes());
    let _ = err.flush();
}

impl Sink for TtySink {
    fn event(&self, e: &Event) {
        let mut view = self.view.lock().unwrap_or_else(|p| p.into_inner());
        let mut permanent = Vec::new();
        match &e.kind {
            EventKind::Started { name } => {
                view.running.insert(
                    e.step,
                    Running {
                        name: name.clone(),
                        since: Instant::now()
                            - SystemTime::now().duration_since(e.at).unwrap_or_default(),
                        tail: VecDeque::new(),
                    },
                );
            }
            EventKind::Cached { name } => permanent.push(format!("=> CACHED #{} {name}", e.step)),
            EventKind::Output { line } => {
                if let Some(r) = view.running.get_mut(&e.step) {
                    if r.tail.len() == TAIL {
                        r.tail.pop_front();
                    }
                    r.tail.push_back(line.clone());
                }
            }
            EventKind::Explain { reason } => {
                permanent.push(format!("   #{} cache miss: {reason}", e.step))
            }
            EventKind::Finished => {
                if let Some(r) = view.running.remove(&e.step) {
                    permanent.push(format!(
                        "=> #{} {} {:.1}s",
                        e.step,
                        r.name,
                        r.since.elapsed().as_secs_f64()
                    ));
                }
            }
            EventKind::Failed { error } => {
                if let Some(r) = view.running.remove(&e.step) {
                    permanent.push(format!("=> ERROR #{} {}", e.step, r.name));
                    permanent.extend(r.tail.iter().map(|l| format!("   {l}")));
                }
                permanent.push(format!("   {error}"));
            }
        }
        redraw(&mut view, &permanent);
    }

    fn finish(&self, summary: &Summary) {
        {
            let mut view = self.view.lock().unwrap_or_else(|p| p.into_inner());
            view.done = true;
            view.running.clear();
            redraw(&mut view, &[summary.line()]);
        }
        if let Some(t) = self.ticker.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}
