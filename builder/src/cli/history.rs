//! `strata history IMAGE`: the image's history as `docker history` prints
//! it, newest step first: IMAGE (the image ID on the newest row,
//! `<missing>` below it, as Docker shows pulled images), CREATED, CREATED
//! BY, SIZE (the compressed size of the layer the step made; Docker shows
//! the unpacked size, which the store does not keep) and COMMENT.

use std::process::ExitCode;

use clap::Args;

use super::GlobalOpts;
use super::images::{ago, find_image, human_size, open_store, print_table};

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The image: a name or an image ID.
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Do not shorten IDs and commands.
    #[arg(long)]
    pub no_trunc: bool,
    /// Print only the IMAGE column.
    #[arg(short, long)]
    pub quiet: bool,
}

/// One history row, oldest first as the config lists them.
struct Row {
    created: Option<i64>,
    created_by: String,
    size: u64,
    comment: String,
}

fn rows(img: &cache::image::Image) -> anyhow::Result<Vec<Row>> {
    let config: serde_json::Value = serde_json::from_slice(img.config.raw())?;
    let mut layers = img.layers().iter();
    let mut out = Vec::new();
    for h in config["history"].as_array().into_iter().flatten() {
        let empty = h["empty_layer"].as_bool().unwrap_or(false);
        let size = if empty {
            0
        } else {
            layers.next().map_or(0, |l| l.size)
        };
        out.push(Row {
            created: h["created"]
                .as_str()
                .and_then(|c| {
                    time::OffsetDateTime::parse(c, &time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .map(|t| t.unix_timestamp()),
            created_by: h["created_by"].as_str().unwrap_or("").to_string(),
            size,
            comment: h["comment"].as_str().unwrap_or("").to_string(),
        });
    }
    Ok(out)
}

/// Docker's shortening of CREATED BY: 45 characters, the last three `...`.
fn truncate(s: &str, no_trunc: bool) -> String {
    if no_trunc || s.chars().count() <= 45 {
        return s.to_string();
    }
    let mut t: String = s.chars().take(42).collect();
    t.push_str("...");
    t
}

pub fn run(g: &GlobalOpts, args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(g)?;
    let found = find_image(&store, &args.image, &cache::platform::Platform::host())?;
    let id = found.image.id().to_string();
    let id = if args.no_trunc {
        id
    } else {
        id.trim_start_matches("sha256:").chars().take(12).collect()
    };
    let mut table = Vec::new();
    for (i, r) in rows(&found.image)?.into_iter().rev().enumerate() {
        let image = if i == 0 {
            id.clone()
        } else {
            "<missing>".into()
        };
        table.push(vec![
            image,
            r.created.map_or("N/A".into(), ago),
            truncate(&r.created_by, args.no_trunc),
            if r.size == 0 {
                "0B".into()
            } else {
                human_size(r.size)
            },
            r.comment,
        ]);
    }
    if args.quiet {
        for row in &table {
            println!("{}", row[0]);
        }
        return Ok(ExitCode::SUCCESS);
    }
    print_table(
        &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
        &table,
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_by_is_cut_as_docker_cuts_it() {
        let long = "RUN /bin/sh -c apt-get update && apt-get install -y build-essential";
        assert_eq!(
            truncate(long, false),
            "RUN /bin/sh -c apt-get update && apt-get i..."
        );
        assert_eq!(truncate(long, true), long);
        assert_eq!(truncate("COPY a /a", false), "COPY a /a");
    }
}
