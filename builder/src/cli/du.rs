//! `strata du`: how much the store uses, by kind, and what `prune` frees.

use std::process::ExitCode;

use cache::gc::{Usage, disk_usage};
use clap::Args;

use super::GlobalOpts;
use super::images::{human_size, open_store, print_table};

#[derive(Debug, Args)]
pub struct DuArgs {
    /// Print machine-readable JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &GlobalOpts, args: DuArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(g)?;
    let du = disk_usage(&store)?;
    let rows: Vec<(&str, Usage, u64)> = vec![
        ("indexes", du.indexes, 0),
        ("manifests", du.manifests, 0),
        ("configs", du.configs, 0),
        ("layers", du.layers, 0),
        ("unreferenced blobs", du.unreferenced, du.unreferenced.bytes),
        ("snapshots", du.snapshots, du.reclaimable_snapshots.bytes),
        ("cache entries", du.cache_entries, 0),
    ];
    if args.json {
        let v: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|(k, u, r)| {
                (
                    k.replace(' ', "_"),
                    serde_json::json!({"count": u.count, "bytes": u.bytes, "reclaimable": r}),
                )
            })
            .collect();
        println!("{}", serde_json::Value::Object(v));
        return Ok(ExitCode::SUCCESS);
    }
    let total: u64 = rows.iter().map(|(_, u, _)| u.bytes).sum();
    let reclaimable: u64 = rows.iter().map(|(_, _, r)| r).sum();
    let mut table: Vec<Vec<String>> = rows
        .iter()
        .map(|(k, u, r)| {
            vec![
                k.to_string(),
                u.count.to_string(),
                human_size(u.bytes),
                human_size(*r),
            ]
        })
        .collect();
    table.push(vec![
        "total".into(),
        String::new(),
        human_size(total),
        human_size(reclaimable),
    ]);
    print_table(&["TYPE", "COUNT", "SIZE", "RECLAIMABLE"], &table);
    println!("{} image names", du.tags);
    Ok(ExitCode::SUCCESS)
}
