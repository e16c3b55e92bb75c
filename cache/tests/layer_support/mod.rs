//! Helpers shared by the layer tests (compiled into each as a module).

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};

/// Deterministic bytes that compress somewhat, like real files.
pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 4 == 0 {
                (x & 0xff) as u8
            } else {
                b'a' + (x % 7) as u8
            }
        })
        .collect()
}

/// Runs a shell pipeline, failing the test with its stderr if it fails.
pub fn sh(script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .expect("running sh");
    assert!(
        out.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Makes a tree removable again (unpacked dirs may be read-only).
pub fn chmod_tree_writable(p: &Path) {
    let _ = Command::new("chmod").arg("-R").arg("u+rwx").arg(p).status();
}

/// One raw tar member, built byte by byte so that names the `tar` crate
/// refuses to write (`..`, absolute paths) can be put in a test layer.
pub fn raw_member(out: &mut Vec<u8>, name: &str, flag: u8, link: &str, data: &[u8]) {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |h: &mut [u8; 512], at: usize, width: usize, v: u64| {
        let s = format!("{v:0w$o}\0", w = width - 1);
        h[at..at + width].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, if flag == b'5' { 0o755 } else { 0o644 });
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, data.len() as u64);
    octal(&mut h, 136, 12, 0);
    h[156] = flag;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

pub fn raw_end(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0u8; 1024]);
}
