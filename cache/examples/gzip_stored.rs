//! Measures the layer writer's gzip on a real file (a tar of already
//! compressed files, binaries, text…): with the incompressible-member
//! probe (`LayerSink`, what strata writes) against the same 8 MiB members
//! all deflated at level 6 (what it wrote before). Prints wall time and
//! output size of each. For BENCHMARKS.md:
//!
//!   cargo run --release -p cache --example gzip_stored -- FILE.tar

use std::io::{Read, Write};
use std::time::Instant;

use cache::layer::{Compression, GZIP_MEMBER_SIZE, LayerSink, MediaFlavor};
use rayon::prelude::*;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: gzip_stored FILE");
        std::process::exit(2);
    };
    let mut data = Vec::new();
    std::fs::File::open(&path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let t = Instant::now();
    let mut sink =
        LayerSink::new(Vec::new(), Compression::default(), MediaFlavor::Oci, 1).expect("sink");
    sink.write_all(&data).expect("write");
    let (_, probed) = sink.finish().expect("finish");
    let probed_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let full: usize = data
        .par_chunks(GZIP_MEMBER_SIZE)
        .map(|c| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(c).expect("write");
            e.finish().expect("finish").len()
        })
        .sum();
    let full_s = t.elapsed().as_secs_f64();
    let mb = data.len() as f64 / 1e6;
    println!(
        "{path}: {mb:.1} MB in; with probe {probed_s:.2} s -> {:.1} MB; all level 6 {full_s:.2} s -> {:.1} MB",
        probed.len() as f64 / 1e6,
        full as f64 / 1e6
    );
}
