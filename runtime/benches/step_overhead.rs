//! Per-step overhead of a RUN: sandbox setup + `true` + teardown (+ the empty
//! overlay diff), median over N steps, for a Dir and an Overlay rootfs in both
//! id-mapping modes, next to `buildah run` of the same step measured in the
//! same process run.
//!
//! Run as the unprivileged user (not root):
//!   cargo bench -p runtime --bench step_overhead --no-run
//!   runuser -u builder -- <bench binary>            # STEP_BENCH_N=100 by default
//! buildah is skipped when `buildah` or the image is missing
//! (STEP_BENCH_IMAGE, default 127.0.0.1:5000/library/busybox).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use runtime::diff::{LowerView, diff_overlay_upper};
use runtime::sandbox::{RunSpec, Sandbox, SandboxOptions, UsernsMode};
use runtime::{RootfsSpec, sandbox::userns::remove_tree};

fn busybox_tree(dir: &Path) {
    fs::create_dir_all(dir.join("bin")).expect("mkdir bin");
    fs::create_dir_all(dir.join("etc")).expect("mkdir etc");
    fs::copy("/bin/busybox", dir.join("bin/busybox"))
        .expect("busybox-static must be at /bin/busybox");
    for a in ["sh", "true"] {
        symlink("busybox", dir.join("bin").join(a)).expect("symlink");
    }
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
}

/// CPU time (user + system) of this process and its reaped descendants:
/// the cost of a step independent of how busy the machine is.
fn cpu_now() -> Duration {
    let get = |who| {
        // SAFETY: rusage is plain data filled by the kernel.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid out pointer.
        unsafe { libc::getrusage(who, &mut ru) };
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        tv(ru.ru_utime) + tv(ru.ru_stime)
    };
    get(libc::RUSAGE_SELF) + get(libc::RUSAGE_CHILDREN)
}

/// Wall and CPU time of one measured step.
struct Sample {
    wall: Duration,
    cpu: Duration,
}

struct Stats {
    median: f64,
    p90: f64,
    min: f64,
    mean: f64,
    cpu_median: f64,
}

fn stats(samples: Vec<Sample>) -> Stats {
    let mut cpu: Vec<Duration> = samples.iter().map(|s| s.cpu).collect();
    cpu.sort();
    let mut v: Vec<Duration> = samples.iter().map(|s| s.wall).collect();
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Stats {
        median: ms(v[v.len() / 2]),
        p90: ms(v[v.len() * 9 / 10]),
        min: ms(v[0]),
        mean: v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64,
        cpu_median: ms(cpu[cpu.len() / 2]),
    }
}

fn row(name: &str, s: &Stats) {
    println!(
        "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
        s.median, s.p90, s.min, s.mean, s.cpu_median
    );
}

fn step(sb: &Sandbox, rootfs: RootfsSpec) {
    let spec = RunSpec::new(rootfs, vec!["true".into()]);
    let out = sb
        .run(&spec, &mut |_, _| {})
        .unwrap_or_else(|e| panic!("step failed: {e}"));
    assert!(out.exit.success(), "true exited with {}", out.exit);
}

fn bench_sandbox(n: usize, tmp: &Path, lower: &Path, mode: UsernsMode) {
    let sb = Sandbox::new(SandboxOptions {
        isolation: Default::default(),
        userns: mode,
        state_dir: tmp.join("state"),
        cache_dir: None,
    })
    .unwrap_or_else(|e| panic!("sandbox: {e}"));
    let label = if sb.mapping().expect("user-namespace isolation").is_range() {
        "subuid range"
    } else {
        "single id"
    };
    let warm = 5;
    let mut dir = Vec::new();
    for i in 0..n + warm {
        let (t, c) = (Instant::now(), cpu_now());
        step(&sb, RootfsSpec::Dir(lower.to_path_buf()));
        if i >= warm {
            dir.push(Sample {
                wall: t.elapsed(),
                cpu: cpu_now() - c,
            });
        }
    }
    row(&format!("strata, Dir rootfs, {label}"), &stats(dir));
    let mut ov = Vec::new();
    let mut ov_diff = Vec::new();
    for i in 0..n + warm {
        let (t, c) = (Instant::now(), cpu_now());
        let (upper, work) = (tmp.join(format!("u{i}")), tmp.join(format!("w{i}")));
        fs::create_dir(&upper).expect("upper");
        fs::create_dir(&work).expect("work");
        step(
            &sb,
            RootfsSpec::Overlay {
                lowers: vec![lower.to_path_buf()],
                upper: upper.clone(),
                work: work.clone(),
            },
        );
        let before_diff = Sample {
            wall: t.elapsed(),
            cpu: cpu_now() - c,
        };
        let changes =
            diff_overlay_upper(&upper, &LowerView::new(vec![lower.to_path_buf()])).expect("diff");
        assert!(changes.is_empty(), "`true` changed the rootfs: {changes:?}");
        remove_tree(&upper).expect("rm upper");
        remove_tree(&work).expect("rm work");
        if i >= warm {
            ov.push(before_diff);
            ov_diff.push(Sample {
                wall: t.elapsed(),
                cpu: cpu_now() - c,
            });
        }
    }
    row(
        &format!("strata, Overlay rootfs, {label} (setup+run+teardown)"),
        &stats(ov),
    );
    row(
        &format!("strata, Overlay rootfs, {label} (+ empty diff + remove upper/work)"),
        &stats(ov_diff),
    );
}

fn bench_buildah(n: usize, image: &str) {
    let ok = |c: &mut Command| c.output().ok().filter(|o| o.status.success());
    if ok(Command::new("buildah").arg("--version")).is_none() {
        println!("| buildah | not installed | | | |");
        return;
    }
    if ok(Command::new("buildah").args(["pull", "--tls-verify=false", "-q", image])).is_none() {
        println!(
            "| buildah | `buildah pull {image}` failed (is HOME the user's real home, with ~/.config/containers?) | | | |"
        );
        return;
    }
    let Some(out) = ok(Command::new("buildah").args(["from", "--pull=never", image])) else {
        println!("| buildah | `buildah from {image}` failed | | | |");
        return;
    };
    let ctr = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut v = Vec::new();
    for i in 0..n + 3 {
        let (t, c) = (Instant::now(), cpu_now());
        let o = ok(Command::new("buildah").args(["run", "--isolation=oci", &ctr, "true"]));
        assert!(o.is_some(), "buildah run failed");
        if i >= 3 {
            v.push(Sample {
                wall: t.elapsed(),
                cpu: cpu_now() - c,
            });
        }
    }
    let _ = ok(Command::new("buildah").args(["rm", &ctr]));
    row("buildah run --isolation=oci (same step)", &stats(v));
}

fn main() {
    let n: usize = std::env::var("STEP_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let image = std::env::var("STEP_BENCH_IMAGE")
        .unwrap_or_else(|_| "127.0.0.1:5000/library/busybox".into());
    // SAFETY: getuid cannot fail.
    if unsafe { libc::getuid() } == 0 {
        eprintln!("run this benchmark as an unprivileged user (e.g. runuser -u builder -- …)");
        std::process::exit(2);
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let lower = tmp.path().join("lower");
    busybox_tree(&lower);
    println!(
        "step = `true` in a busybox rootfs, N = {n} (after warm-up), times in ms (CPU = user+system of all processes of the step)\n"
    );
    println!("| what | median | p90 | min | mean | CPU median |");
    println!("|---|---|---|---|---|---|");
    // STEP_BENCH_ONLY=single|subuid|buildah narrows the run (for profiling).
    let only = std::env::var("STEP_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "single" {
        bench_sandbox(n, tmp.path(), &lower, UsernsMode::Single);
    }
    if only.is_empty() || only == "subuid" {
        bench_sandbox(n, tmp.path(), &lower, UsernsMode::Subuid);
    }
    if only.is_empty() || only == "buildah" {
        bench_buildah(n, &image);
    }
}
