//! `strata images`: the local image store as `docker images` shows it, and
//! the lookups the other image verbs share (finding an image by name or ID,
//! printing sizes and ages).

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use cache::digest::Digest;
use cache::image::Image;
use cache::platform::Platform;
use cache::reference::Reference;
use cache::store::Store;
use clap::Args;

use super::GlobalOpts;

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Show only this repository (`busybox`) or name:tag (`busybox:1.36`).
    pub reference: Option<String>,
    /// Print image IDs only.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print full image IDs.
    #[arg(long)]
    pub no_trunc: bool,
    /// Show the manifest digest of each name.
    #[arg(long)]
    pub digests: bool,
    /// Print with a template as Docker does: `{{.Repository}}:{{.Tag}}`,
    /// `table {{.ID}}\t{{.Size}}` or `json`. Fields: .Repository, .Tag,
    /// .Digest, .ID, .CreatedSince, .CreatedAt, .Size.
    #[arg(long, value_name = "TEMPLATE")]
    pub format: Option<String>,
}

/// The fields `--format` knows, with their `table` headers (Docker's).
const FORMAT_FIELDS: [(&str, &str); 7] = [
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("ID", "IMAGE ID"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
];

/// `1735689600` → `2025-01-01 00:00:00 +0000 UTC`, Docker's CreatedAt.
pub(super) fn created_at(unix: i64) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second] +0000 UTC"
    );
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| "N/A".into())
}

/// Opens the store at the root the global options name.
pub(super) fn open_store(g: &GlobalOpts) -> anyhow::Result<Store> {
    let root = g.root()?;
    Store::open(&root).with_context(|| format!("cannot open the store at {}", root.display()))
}

/// A local image found by name, digest or image ID.
pub(super) struct Found {
    /// The digest the name points to (a manifest or an index).
    pub top: Digest,
    pub image: Image,
    /// The name, when it was found by one.
    pub name: Option<Reference>,
}

/// Finds a local image: a name (`busybox`, `host/app:tag`, `name@sha256:…`)
/// or an image ID (full `sha256:…`, or at least 4 leading hex digits of it,
/// as Docker allows).
pub(super) fn find_image(store: &Store, s: &str, platform: &Platform) -> anyhow::Result<Found> {
    if let Some(found) = find_by_id(store, s, platform)? {
        return Ok(found);
    }
    let r = Reference::parse(s)
        .with_context(|| format!("{s:?} is neither an image name nor an image ID"))?;
    match store.resolve_digest(&r)? {
        Some(top) => {
            let image = store
                .image(&top, platform)
                .with_context(|| format!("image {} is damaged in the store", r.familiar()))?;
            Ok(Found {
                top,
                image,
                name: Some(r),
            })
        }
        None => bail!(
            "no image {} in the store at {} (see `strata images`; pull or load it first)",
            r.familiar(),
            store.root().display()
        ),
    }
}

fn find_by_id(store: &Store, s: &str, platform: &Platform) -> anyhow::Result<Option<Found>> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    let is_id = hex.len() >= 4
        && hex.len() <= 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    if !is_id {
        return Ok(None);
    }
    let mut matches: Vec<Found> = Vec::new();
    for t in store.tags().list()? {
        let Ok(image) = store.image(&t.manifest, platform) else {
            continue;
        };
        if image.id().hex().starts_with(hex) && !matches.iter().any(|m| m.image.id() == image.id())
        {
            matches.push(Found {
                top: t.manifest.clone(),
                image,
                name: None,
            });
        }
    }
    match matches.len() {
        0 => Ok(None),
        1 => Ok(matches.pop()),
        n => bail!("image ID prefix {s} is ambiguous: {n} images start with it; give more digits"),
    }
}

/// A size as Docker prints it (decimal units, 3 significant digits).
pub(super) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else if v < 10.0 {
        format!("{v:.2}{}", UNITS[u])
    } else if v < 100.0 {
        format!("{v:.1}{}", UNITS[u])
    } else {
        format!("{v:.0}{}", UNITS[u])
    }
}

/// "3 days ago" from a Unix time.
pub(super) fn ago(unix: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let s = (now - unix).max(0);
    let (n, unit) = match s {
        0..=59 => return "Less than a minute ago".into(),
        60..=3599 => (s / 60, "minute"),
        3600..=86_399 => (s / 3600, "hour"),
        86_400..=1_209_599 => (s / 86_400, "day"),
        1_209_600..=5_183_999 => (s / 604_800, "week"),
        5_184_000..=63_071_999 => (s / 2_592_000, "month"),
        _ => (s / 31_536_000, "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

pub fn run(g: &GlobalOpts, args: ImagesArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(g)?;
    let filter = args
        .reference
        .as_deref()
        .map(|f| {
            let explicit_tag = f.rsplit('/').next().is_some_and(|last| last.contains(':'));
            Reference::parse(f).map(|r| (r, explicit_tag))
        })
        .transpose()?;
    let platform = Platform::host();
    let format = args
        .format
        .as_deref()
        .map(|f| {
            let names: Vec<&str> = FORMAT_FIELDS.iter().map(|(n, _)| *n).collect();
            super::format::Format::parse(f, &names)
        })
        .transpose()?;
    let mut created_ats: Vec<String> = Vec::new();
    let mut rows: Vec<[String; 6]> = Vec::new();
    for t in store.tags().list()? {
        let r = t.reference()?;
        if let Some((f, explicit_tag)) = &filter
            && (f.name() != r.name() || (*explicit_tag && f.tag() != r.tag()))
        {
            continue;
        }
        let (id, created, size) = match store.image(&t.manifest, &platform) {
            Ok(img) => {
                created_ats.push(
                    img.config
                        .created_unix()
                        .map_or("N/A".to_string(), created_at),
                );
                (
                    img.id().to_string(),
                    img.config.created_unix().map_or("N/A".to_string(), ago),
                    human_size(img.size()),
                )
            }
            Err(e) => {
                eprintln!("warning: {}: {e}", r.familiar());
                created_ats.push("N/A".into());
                (
                    "<damaged>".to_string(),
                    "N/A".to_string(),
                    "N/A".to_string(),
                )
            }
        };
        let id = if args.no_trunc || id.starts_with('<') {
            id
        } else {
            id.trim_start_matches("sha256:").chars().take(12).collect()
        };
        rows.push([
            r.familiar_name(),
            r.tag().unwrap_or("<none>").to_string(),
            t.manifest.to_string(),
            id,
            created,
            size,
        ]);
    }
    if let Some(format) = format {
        let maps: Vec<std::collections::BTreeMap<&'static str, String>> = rows
            .iter()
            .zip(&created_ats)
            .map(|(r, at)| {
                std::collections::BTreeMap::from([
                    ("Repository", r[0].clone()),
                    ("Tag", r[1].clone()),
                    ("Digest", r[2].clone()),
                    ("ID", r[3].clone()),
                    ("CreatedSince", r[4].clone()),
                    ("CreatedAt", at.clone()),
                    ("Size", r[5].clone()),
                ])
            })
            .collect();
        let headers = FORMAT_FIELDS.iter().copied().collect();
        for line in format.render(&maps, &headers) {
            println!("{line}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.quiet {
        let mut seen = Vec::new();
        for row in &rows {
            if !seen.contains(&row[3]) {
                println!("{}", row[3]);
                seen.push(row[3].clone());
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut header = vec!["REPOSITORY", "TAG"];
    if args.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    let table: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| {
            let mut v = vec![r[0].clone(), r[1].clone()];
            if args.digests {
                v.push(r[2].clone());
            }
            v.extend([r[3].clone(), r[4].clone(), r[5].clone()]);
            v
        })
        .collect();
    print_table(&header, &table);
    Ok(ExitCode::SUCCESS)
}

/// Prints left-aligned columns separated by at least three spaces.
pub(super) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(74_800_000), "74.8MB");
        assert_eq!(human_size(123_400_000), "123MB");
    }
}
