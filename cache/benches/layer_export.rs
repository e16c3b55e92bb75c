//! The strata side of `export_vs_tar.sh` (a plain `main`, `harness = false`):
//!
//!   layer_export export DIR gzip|zstd|none OUT   write DIR as a layer blob
//!   layer_export hash FILE                       sha256 of a blob
//!
//! `export` prints the descriptor and writes it to `OUT.desc` so the script
//! can check the digests with independent tools. Arguments cargo adds
//! (`--bench`) are ignored.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use cache::digest::Sha256;
use cache::layer::{Compression, WriteOptions, write_dir};

fn export(dir: &str, comp: &str, out: &str) -> Result<(), String> {
    let compression = match comp {
        "gzip" => Compression::Gzip { level: 6 },
        "zstd" => Compression::Zstd { level: 3 },
        "none" => Compression::None,
        other => return Err(format!("unknown compression {other:?}: gzip, zstd or none")),
    };
    let opts = WriteOptions {
        compression,
        ..WriteOptions::default()
    };
    let file = File::create(out).map_err(|e| format!("creating {out}: {e}"))?;
    let start = Instant::now();
    let desc = write_dir(
        Path::new(dir),
        &opts,
        BufWriter::with_capacity(1 << 20, file),
    )
    .map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    let text = format!(
        "digest {}\ndiff_id {}\nsize {}\nuncompressed_size {}\nmedia_type {}\n",
        desc.digest, desc.diff_id, desc.size, desc.uncompressed_size, desc.media_type
    );
    std::fs::write(format!("{out}.desc"), &text).map_err(|e| format!("writing {out}.desc: {e}"))?;
    print!("{text}");
    println!(
        "seconds {secs:.3}\nMB/s {:.1}",
        desc.uncompressed_size as f64 / secs / 1e6
    );
    Ok(())
}

fn hash(path: &str) -> Result<(), String> {
    let f = File::open(path).map_err(|e| format!("opening {path}: {e}"))?;
    // The store's own read-and-hash loop (what `strata store verify` runs).
    let mut h = Sha256::new();
    h.update_from(f)
        .map_err(|e| format!("reading {path}: {e}"))?;
    println!("{}  {path}", h.finalize());
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let r = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["export", dir, comp, out] => export(dir, comp, out),
        ["hash", file] => hash(file),
        [] => {
            // `cargo bench` with no arguments: nothing to measure here; the
            // numbers come from export_vs_tar.sh.
            eprintln!("layer_export: run cache/benches/export_vs_tar.sh");
            return ExitCode::SUCCESS;
        }
        _ => Err("usage: layer_export export DIR gzip|zstd|none OUT | hash FILE".to_string()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("layer_export: {e}");
            ExitCode::FAILURE
        }
    }
}
