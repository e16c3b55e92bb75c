//! SIGKILL `strata save` at random moments (until at least 20 kills landed
//! while it was running): the store stays clean (`strata store verify`),
//! the output path never holds a partial archive (it is absent or loads
//! completely), and the next `strata save` to the same path succeeds and
//! loads. Needs the local registry for the images (CI runs it with
//! `--include-ignored`; a missing registry fails the test).

use std::path::Path;
use std::process::{Output, Stdio};

mod support;
use support::kill_clock::{KillClock, fastest_of};
use support::{Scratch, registry, strata_cmd};

/// Saves that must be killed while still running.
const CRASHES: usize = 20;
/// Upper bound on attempts (a kill after the save finished is not a crash).
const MAX_RUNS: usize = 60;

fn run_ok(root: &Path, args: &[&str], context: &str) -> Output {
    let out = strata_cmd(root, args).output().expect("run strata");
    assert!(
        out.status.success(),
        "{context}: strata {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The archive loads completely into a fresh root, with both names.
fn loads_completely(archive: &Path, names: &[String], context: &str) {
    let fresh = Scratch::new("load");
    let a = archive.to_string_lossy().into_owned();
    run_ok(&fresh.0, &["load", "-i", &a], context);
    let images = run_ok(&fresh.0, &["images"], context);
    let listing = String::from_utf8_lossy(&images.stdout).into_owned();
    for n in names {
        let repo = n.rsplit_once(':').map_or(n.as_str(), |(r, _)| r);
        assert!(
            listing.contains(repo),
            "{context}: {repo} missing after load:\n{listing}"
        );
    }
    run_ok(&fresh.0, &["store", "verify"], context);
}

#[test]
#[ignore = "needs the .ci/test.sh environment (registry on 127.0.0.1:5000)"]
fn sigkill_during_save_never_leaves_a_partial_archive_or_a_broken_store() {
    let reg = registry();
    let names = vec![
        format!("{reg}/library/debian:bookworm-slim"),
        format!("{reg}/library/busybox:latest"),
    ];
    let root = Scratch::new("root");
    for n in &names {
        run_ok(
            &root.0,
            &["pull", n],
            "setup pull (is the registry up? bash .ci/registry.sh)",
        );
    }
    let out_dir = Scratch::new("out");
    let reference = out_dir.0.join("reference.tar");
    let mut save_args: Vec<String> = vec![
        "save".into(),
        "-o".into(),
        reference.to_string_lossy().into_owned(),
    ];
    save_args.extend(names.iter().cloned());
    let args: Vec<&str> = save_args.iter().map(String::as_str).collect();
    run_ok(&root.0, &args, "reference save");
    loads_completely(&reference, &names, "reference save");
    let took = fastest_of(3, || {
        run_ok(&root.0, &args, "undisturbed save");
    });
    let mut clock = KillClock::new(vec![took]);
    let seed = clock.seed();
    eprintln!(
        "crash seed {seed} (set STRATA_CRASH_SEED to replay); an undisturbed save took {took:?}"
    );
    let mut killed_in_flight = 0;
    let mut run = 0;
    while killed_in_flight < CRASHES && run < MAX_RUNS {
        run += 1;
        let dest = out_dir.0.join(format!("run-{run}.tar"));
        save_args[2] = dest.to_string_lossy().into_owned();
        let args: Vec<&str> = save_args.iter().map(String::as_str).collect();
        let delay = clock.delay(0);
        let mut child = strata_cmd(&root.0, &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn strata save");
        std::thread::sleep(delay);
        let in_flight = child.try_wait().expect("try_wait").is_none();
        // Child::kill sends SIGKILL on Unix.
        let _ = child.kill();
        let _ = child.wait();
        if in_flight {
            killed_in_flight += 1;
        } else {
            clock.ended_before(0, delay);
        }
        let context = format!("run {run} (seed {seed}, killed after {delay:?})");
        run_ok(&root.0, &["store", "verify"], &context);
        // Either no archive at all, or a whole one.
        if dest.exists() {
            loads_completely(
                &dest,
                &names,
                &format!("{context}, archive left by the killed save"),
            );
        }
        // The next save to the same path succeeds; check every few runs
        // that it loads (each load re-reads ~30 MB).
        run_ok(&root.0, &args, &context);
        if run % 5 == 0 {
            loads_completely(
                &dest,
                &names,
                &format!("{context}, the save after the crash"),
            );
        }
        let _ = std::fs::remove_file(&dest);
    }
    eprintln!(
        "{killed_in_flight} of {run} saves were killed while running (kill bounds at the end {:?})",
        clock.bounds()
    );
    assert!(
        killed_in_flight >= CRASHES,
        "only {killed_in_flight} of {run} saves were still running when killed (kill bound at the end {:?}); the test did not test enough crashes",
        clock.bounds()
    );
    run_ok(&root.0, &["store", "verify"], "after all runs");
}
