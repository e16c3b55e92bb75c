//! `strata prune`: remove blobs and snapshots that no tag and no cache entry
//! uses; with `--all` drop the build cache too, with `--keep-storage` drop
//! the least recently used cache entries until the store fits.

use std::process::ExitCode;

use anyhow::{Context, bail};
use cache::gc::{PruneOptions, PruneReport, prune};
use cache::store::Store;
use clap::Args;
use runtime::sandbox::{IsolationRequest, Sandbox, SandboxOptions, UsernsMode};

use super::GlobalOpts;
use super::images::human_size;

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove every build cache entry as well (image names stay).
    #[arg(short, long)]
    pub all: bool,
    /// Keep at most this much (for example 10GB, 512MiB, 2000000), dropping
    /// the least recently used cache entries first.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub keep_storage: Option<u64>,
    /// Accepted for Docker compatibility; strata never asks for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

/// Parses `10GB`, `1.5GiB`, `512m`, `2000000`.
pub(super) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 10GB, 512MiB, 2000000)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?} (use B, kB, MB, GB, KiB, MiB, GiB)"
            ));
        }
    };
    Ok((n * mult) as u64)
}

pub fn run(g: &GlobalOpts, args: PruneArgs) -> anyhow::Result<ExitCode> {
    let root = g.root()?;
    let store = match Store::open_exclusive(&root) {
        Ok(s) => s,
        Err(cache::error::Error::Busy(m)) => bail!("{m}"),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot open the store at {}", root.display()));
        }
    };
    let mut report = prune(
        &store,
        &PruneOptions {
            all: args.all,
            keep_storage: args.keep_storage,
        },
    )?;
    remove_leftovers(&root, &mut report);
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "Deleted {} blobs, {} snapshots, {} cache entries",
        report.blobs_removed, report.snapshots_removed, report.cache_entries_removed
    );
    println!("Total reclaimed space: {}", human_size(report.bytes_freed));
    Ok(ExitCode::SUCCESS)
}

/// Removes the snapshots prune could not delete as the invoking user
/// (unpacked layers hold files of subordinate ids) from inside the build's
/// user namespace, where those files are ours. What still fails, or a host
/// without user namespaces, is reported as a warning.
fn remove_leftovers(root: &std::path::Path, report: &mut PruneReport) {
    if report.leftovers.is_empty() {
        return;
    }
    let sandbox = Sandbox::new(SandboxOptions {
        isolation: IsolationRequest::Auto,
        userns: UsernsMode::Auto,
        state_dir: root.join("tmp/run"),
        cache_dir: None,
    });
    for left in std::mem::take(&mut report.leftovers) {
        let removed = match &sandbox {
            Ok(sb) => sb
                .as_owner(|| runtime::sandbox::userns::remove_tree(&left.path))
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!(
                "{} (and no user namespace to retry in: {e})",
                left.error
            )),
        };
        match removed {
            Ok(()) => {
                report.snapshots_removed += 1;
                report.bytes_freed += left.bytes;
            }
            Err(e) => report.warnings.push(format!(
                "could not remove snapshot {}: {e}",
                left.path.display()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2000"), Ok(2000));
        assert_eq!(parse_size("10GB"), Ok(10_000_000_000));
        assert_eq!(parse_size("1.5GiB"), Ok(1_610_612_736));
        assert_eq!(parse_size("512m"), Ok(512_000_000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }
}
