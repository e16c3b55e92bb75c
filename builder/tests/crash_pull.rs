//! SIGKILL `strata pull` at random moments (at least 20 times) and check that
//! the store is still sound: every blob hashes to its name, nothing half
//! written sits among the blobs, and the next `strata pull` into the same
//! root succeeds with the right digest. Needs the local registry (CI runs
//! it with `--include-ignored`; a missing registry fails the test).

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use cache::digest::Digest;

mod support;
use support::kill_clock::{KillClock, fastest_of};
use support::{Scratch, registry, strata_cmd};

/// Pulls that must be killed while still running.
const CRASHES: usize = 20;
/// Upper bound on attempts (a kill after the pull finished is not a crash).
const MAX_RUNS: usize = 60;

fn run_ok(root: &Path, args: &[&str]) -> Output {
    let out = strata_cmd(root, args).output().expect("run strata");
    assert!(
        out.status.success(),
        "strata {args:?} failed after a crash ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `strata store verify` when it exists; until then (the verb is refused),
/// the same check done here: every file under
/// blobs/sha256 is named by a digest and hashes to it.
fn verify_store(root: &Path, context: &str) {
    let out = strata_cmd(root, &["store", "verify"])
        .output()
        .expect("run strata store verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let verb_missing =
        stderr.contains("not supported yet") || stderr.contains("unexpected argument 'verify'");
    if !verb_missing {
        assert!(
            out.status.success(),
            "{context}: strata store verify reports problems:\n{}{stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // Checked here in every case, so the test never depends on the verb alone.
    let dir = root.join("blobs/sha256");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return; // killed before the store was even laid out
    };
    for e in entries {
        let e = e.expect("read blobs dir");
        let name = e.file_name().to_string_lossy().into_owned();
        let want: Digest = format!("sha256:{name}").parse().unwrap_or_else(|_| {
            panic!(
                "{context}: stray file {name:?} among the blobs in {}",
                dir.display()
            )
        });
        let data = std::fs::read(e.path()).expect("read blob");
        assert_eq!(
            Digest::of(&data),
            want,
            "{context}: blob {name} does not hash to its name"
        );
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                v.extend(files_under(&p));
            } else {
                v.push(p);
            }
        }
    }
    v
}

fn digest_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Digest: ").map(str::to_string))
        .unwrap_or_default()
}

#[test]
#[ignore = "needs the .ci/test.sh environment (registry on 127.0.0.1:5000)"]
fn sigkill_during_pull_never_breaks_the_store() {
    let reg = registry();
    let images = [
        format!("{reg}/library/debian:bookworm-slim"),
        format!("{reg}/library/busybox:latest"),
    ];
    // Reference digests, and how long an undisturbed pull of each image
    // into a fresh root takes (the fastest of three).
    let mut want = Vec::new();
    let mut took = Vec::new();
    for img in &images {
        took.push(fastest_of(3, || {
            let fresh = Scratch::new("reference");
            let out = strata_cmd(&fresh.0, &["pull", img])
                .output()
                .expect("run strata");
            assert!(
                out.status.success(),
                "reference pull of {img} failed (is the registry up? bash .ci/registry.sh):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            want.push(digest_line(&out));
        }));
    }
    want.dedup();
    assert_eq!(want.len(), images.len(), "reference digests: {want:?}");

    let mut clock = KillClock::new(took.clone());
    let seed = clock.seed();
    eprintln!(
        "crash seed {seed} (set STRATA_CRASH_SEED to replay); undisturbed pulls took {took:?}"
    );
    let mut killed_in_flight = 0;
    let mut run = 0;
    while killed_in_flight < CRASHES && run < MAX_RUNS {
        run += 1;
        // A fresh root each run, so every kill lands in a real download; on
        // odd runs the other image is already there (tags, blobs), so kills
        // also hit a store in use.
        let root = Scratch::new("run");
        let which = run % 2;
        let img = &images[which];
        if run % 4 >= 2 {
            run_ok(&root.0, &["pull", &images[1 - which]]);
        }
        // Somewhere inside what an undisturbed pull of this image takes.
        let delay = clock.delay(which);
        let mut child = strata_cmd(&root.0, &["pull", img])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn strata pull");
        std::thread::sleep(delay);
        if child.try_wait().expect("try_wait").is_none() {
            killed_in_flight += 1;
        } else {
            clock.ended_before(which, delay);
        }
        // Child::kill sends SIGKILL on Unix.
        let _ = child.kill();
        let _ = child.wait();
        let context = format!("run {run} (seed {seed}, {img}, killed after {delay:?})");
        verify_store(&root.0, &context);
        // The next command succeeds and gets the right image.
        for (i, other) in images.iter().enumerate() {
            let out = run_ok(&root.0, &["pull", other]);
            assert_eq!(
                digest_line(&out),
                want[i],
                "{context}: wrong digest for {other}"
            );
        }
        verify_store(&root.0, &format!("{context}, after the follow-up pull"));
        // The killed pull's temp files were cleaned up by the next command.
        let leftovers = files_under(&root.0.join("tmp"));
        assert!(
            leftovers.is_empty(),
            "{context}: temp files left after the follow-up pull: {leftovers:?}"
        );
    }
    eprintln!(
        "{killed_in_flight} of {run} pulls were killed while running (kill bounds at the end {:?})",
        clock.bounds()
    );
    assert!(
        killed_in_flight >= CRASHES,
        "only {killed_in_flight} of {run} pulls were still running when killed (kill bounds at the end {:?}); the test did not test enough crashes",
        clock.bounds()
    );
}
