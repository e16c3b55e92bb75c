//! Runs one command in a rootless sandbox, for trying the runtime by hand:
//!
//! ```text
//! run-step [--userns auto|single|subuid] [--network host|none] [--user U]
//!          [--overlay LOWER[:LOWER…] | --dir ROOTFS] -- CMD [ARG…]
//! ```
//!
//! With `--overlay`, a fresh upper/work pair is made in a temp dir and its
//! contents are listed afterwards. Prints the chosen id mapping and why.

use std::path::PathBuf;
use std::process::ExitCode;

use runtime::RootfsSpec;
use runtime::sandbox::{Network, OutputStream, RunSpec, Sandbox, SandboxOptions, UsernsMode};

fn usage(msg: &str) -> ExitCode {
    eprintln!("run-step: {msg}");
    eprintln!(
        "usage: run-step [--userns auto|single|subuid] [--network host|none] [--user U] \
         (--overlay LOWER[:LOWER...] | --dir ROOTFS) -- CMD [ARG...]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut userns, mut network, mut user) = (UsernsMode::Auto, Network::Host, None);
    let (mut overlay, mut dir) = (None, None);
    let mut argv = Vec::new();
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let res: Result<(), String> = match a.as_str() {
            "--userns" => val("--userns").and_then(|v| v.parse().map(|m| userns = m)),
            "--network" => val("--network").and_then(|v| v.parse().map(|n| network = n)),
            "--user" => val("--user").map(|v| user = Some(v)),
            "--overlay" => val("--overlay").map(|v| overlay = Some(v)),
            "--dir" => val("--dir").map(|v| dir = Some(PathBuf::from(v))),
            "--" => {
                argv.extend(args.by_ref());
                Ok(())
            }
            other => Err(format!("unknown argument {other:?}")),
        };
        if let Err(e) = res {
            return usage(&e);
        }
    }
    if argv.is_empty() {
        return usage("no command given");
    }
    let tmp = match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => return usage(&format!("temp dir: {e}")),
    };
    let rootfs = match (overlay, dir) {
        (Some(l), None) => {
            let (upper, work) = (tmp.path().join("upper"), tmp.path().join("work"));
            for d in [&upper, &work] {
                if let Err(e) = std::fs::create_dir(d) {
                    return usage(&format!("mkdir {}: {e}", d.display()));
                }
            }
            RootfsSpec::Overlay {
                lowers: l.split(':').map(PathBuf::from).collect(),
                upper,
                work,
            }
        }
        (None, Some(d)) => RootfsSpec::Dir(d),
        _ => return usage("give exactly one of --overlay and --dir"),
    };
    let sandbox = match Sandbox::new(SandboxOptions {
        isolation: Default::default(),
        userns,
        state_dir: tmp.path().join("state"),
        cache_dir: Some(tmp.path().join("cache")),
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("run-step: {e}");
            return ExitCode::from(1);
        }
    };
    eprintln!("run-step: {}", sandbox.mapping_reason());
    let mut spec = RunSpec::new(rootfs.clone(), argv);
    spec.network = network;
    spec.user = user;
    let res = sandbox.run(&spec, &mut |stream, line| {
        let line = String::from_utf8_lossy(line);
        match stream {
            OutputStream::Stdout => println!("{line}"),
            OutputStream::Stderr => eprintln!("{line}"),
        }
    });
    match res {
        Ok(out) => {
            eprintln!("run-step: {} in {:?}", out.exit, out.duration);
            if let Some(h) = out.hint {
                eprintln!("run-step: hint: {h}");
            }
            if let RootfsSpec::Overlay { upper, .. } = &rootfs {
                for e in walk(upper) {
                    eprintln!("run-step: upper: {e}");
                }
                let _ = runtime::remove_tree_in_userns(
                    sandbox.mapping().expect("user-namespace isolation"),
                    tmp.path(),
                );
            }
            if out.exit.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("run-step: {e}");
            ExitCode::from(1)
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap_or(&p).display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}
