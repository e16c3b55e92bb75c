//! Parse + lower throughput over the real-world Dockerfile corpus.
//!
//! Every file of `corpus/real-world` is parsed and lowered (with the empty
//! resolver) once per iteration; criterion reports the throughput in bytes
//! of Dockerfile text per second. The corpus is located through
//! `STRATA_SHARED`, else `../../shared` next to the repository; a missing
//! corpus aborts the benchmark with a message instead of measuring nothing.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use frontend::{BuildOptions, EmptyResolver};

fn corpus() -> Vec<(String, String)> {
    let shared = std::env::var_os("STRATA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")));
    let dir = shared.join("corpus/real-world");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "real-world corpus not found at {}: {e}; set STRATA_SHARED",
            dir.display()
        )
    });
    let mut files: Vec<(String, String)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "Dockerfile"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable corpus file");
            (p.display().to_string(), text)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no Dockerfiles in {}", dir.display());
    files
}

fn bench(c: &mut Criterion) {
    let files = corpus();
    let bytes: usize = files.iter().map(|(_, t)| t.len()).sum();
    let opts = BuildOptions::default();
    // Every file must lower, or the number would flatter a failure path.
    for (name, text) in &files {
        let df = frontend::parse(name, text).expect("corpus parses");
        frontend::lower(&df, &opts, &EmptyResolver).expect("corpus lowers");
    }
    let mut group = c.benchmark_group("real-world");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("parse+lower", |b| {
        b.iter(|| {
            for (name, text) in &files {
                let df = frontend::parse(name, black_box(text)).expect("parses");
                black_box(frontend::lower(&df, &opts, &EmptyResolver).expect("lowers"));
            }
        })
    });
    group.bench_function("parse", |b| {
        b.iter(|| {
            for (name, text) in &files {
                black_box(frontend::parse(name, black_box(text)).expect("parses"));
            }
        })
    });
    let parsed: Vec<_> = files
        .iter()
        .map(|(name, text)| frontend::parse(name, text).expect("parses"))
        .collect();
    group.bench_function("lower", |b| {
        b.iter(|| {
            for df in &parsed {
                black_box(frontend::lower(black_box(df), &opts, &EmptyResolver).expect("lowers"));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
