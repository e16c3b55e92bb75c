//! Parse + lower time of generated 100,000-instruction Dockerfiles.
//!
//! Every phase from text to graph must stay O(n log n) in the size of the
//! Dockerfile (issue 11: 8k ENV lines used to take 4 s, 100k never ended).
//! Each case repeats one kind of instruction (ENV, LABEL, ARG, RUN, COPY,
//! EXPOSE, WORKDIR, ...), or chains many stages, so that any per-instruction
//! work that grows with what came before shows up as a blow-up here.
//! `STRATA_BENCH_LINES` changes the number of instructions (default 100,000),
//! `STRATA_BENCH_ONLY=<case>` runs one case (for profiling).

use std::fmt::Write;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use frontend::{BuildOptions, EmptyResolver};

/// One generated case: a name and a Dockerfile of about `n` instructions.
fn cases(n: usize) -> Vec<(&'static str, String)> {
    let body = |line: &dyn Fn(&mut String, usize)| {
        let mut s = String::from("FROM scratch\n");
        for i in 0..n {
            line(&mut s, i);
        }
        s
    };
    vec![
        (
            "env",
            body(&|s, i| writeln!(s, "ENV V{i}=value{i}").unwrap()),
        ),
        (
            "env-same-key",
            body(&|s, i| writeln!(s, "ENV V=$V{i}").unwrap()),
        ),
        (
            "label",
            body(&|s, i| writeln!(s, "LABEL l{i}=\"value {i}\"").unwrap()),
        ),
        (
            "arg",
            body(&|s, i| writeln!(s, "ARG A{i}=${{A{i}:-x}}").unwrap()),
        ),
        ("global-arg", {
            let mut s = String::new();
            for i in 0..n {
                writeln!(s, "ARG G{i}={i}").unwrap();
            }
            s.push_str("FROM scratch\nARG G1\n");
            s
        }),
        (
            "run",
            body(&|s, i| writeln!(s, "RUN echo {i} >> /log").unwrap()),
        ),
        ("copy", body(&|s, i| writeln!(s, "COPY f{i} /d/").unwrap())),
        (
            "expose",
            body(&|s, i| writeln!(s, "EXPOSE {}/tcp", i % 65535 + 1).unwrap()),
        ),
        (
            "workdir",
            body(&|s, i| writeln!(s, "WORKDIR /w{}", i % 100).unwrap()),
        ),
        (
            "volume-user-cmd",
            body(&|s, i| match i % 3 {
                0 => writeln!(s, "VOLUME /v{i}").unwrap(),
                1 => writeln!(s, "USER u{i}").unwrap(),
                _ => writeln!(s, "CMD [\"run\", \"{i}\"]").unwrap(),
            }),
        ),
        ("stages-copy-from", {
            // Each stage copies from the one before: the target needs all.
            let mut s = String::from("FROM scratch AS s0\n");
            for i in 1..n / 2 {
                writeln!(s, "FROM scratch AS s{i}\nCOPY --from=s{} /a /a", i - 1).unwrap();
            }
            s
        }),
        ("stages-chain", {
            let mut s = String::from("FROM scratch AS s0\n");
            for i in 1..n {
                writeln!(s, "FROM s{} AS s{i}", i - 1).unwrap();
            }
            s
        }),
        (
            "mixed",
            body(&|s, i| match i % 6 {
                // 50 names each: every RUN carries the whole environment (as
                // BuildKit's LLB does), so the graph grows with RUNs x variables.
                0 => writeln!(s, "ENV E{}=v{i}", i % 50).unwrap(),
                1 => writeln!(s, "LABEL l{i}=v").unwrap(),
                2 => writeln!(s, "ARG A{}=x", i % 50).unwrap(),
                3 => writeln!(s, "RUN echo $E1 {i}").unwrap(),
                4 => writeln!(s, "COPY --chmod=644 a{i} b{i} /dst/").unwrap(),
                _ => writeln!(s, "EXPOSE {}", i % 60000 + 1).unwrap(),
            }),
        ),
        (
            "continuations",
            body(&|s, i| {
                writeln!(s, "RUN set -e; \\\n  echo {i} \\\n  # a comment\n  && true").unwrap()
            }),
        ),
    ]
}

/// CPU time of this thread so far (Linux: the first field of
/// `/proc/thread-self/schedstat`, nanoseconds on a CPU); NaN elsewhere.
fn thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(f64::NAN, |ns| ns as f64 / 1e9)
}

fn bench(c: &mut Criterion) {
    let n = std::env::var("STRATA_BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let opts = BuildOptions::default();
    let mut group = c.benchmark_group(format!("{n}-instructions"));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    let only = std::env::var("STRATA_BENCH_ONLY").ok();
    for (name, text) in cases(n) {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        // A case that fails would measure the error path, not the work.
        // Three passes are timed first and the best printed, wall and CPU
        // (the CPU time does not depend on what else the machine runs), so
        // a blow-up shows at once.
        let (mut wall, mut cpu) = (f64::MAX, f64::MAX);
        for _ in 0..3 {
            let (start, cpu_start) = (Instant::now(), thread_cpu_seconds());
            let df = frontend::parse(name, &text).expect("generated file parses");
            frontend::lower(&df, &opts, &EmptyResolver).expect("generated file lowers");
            wall = wall.min(start.elapsed().as_secs_f64());
            cpu = cpu.min(thread_cpu_seconds() - cpu_start);
        }
        eprintln!(
            "{name}: {} bytes, best of 3: {wall:.3} s wall, {cpu:.3} s CPU",
            text.len()
        );
        group.bench_function(format!("{name}/parse+lower"), |b| {
            b.iter(|| {
                let df = frontend::parse(name, black_box(&text)).expect("parses");
                black_box(frontend::lower(&df, &opts, &EmptyResolver).expect("lowers"));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
