//! `strata inspect IMAGE`: a local image as `docker image inspect` shows its
//! basics — a JSON array with one object per image: `Id`, `RepoTags`,
//! `RepoDigests`, `Created`, `Author`, `Config`, `Architecture`, `Os`,
//! `Size`, `RootFS`, plus `Descriptor` (the manifest, as Docker with the
//! containerd store shows it) and `Manifest` (its JSON). Docker's
//! daemon-side fields (`Container`, `GraphDriver`, `Metadata`) have no
//! meaning here and are left out.

use std::process::ExitCode;

use clap::Args;
use serde_json::{Value, json};

use super::GlobalOpts;
use super::images::{find_image, open_store};

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Images: names or image IDs (at least 4 hex digits).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
    /// Print with a template, as `docker inspect --format '{{.Id}}'`:
    /// top-level fields .Id, .Created, .Author, .Architecture, .Os, .Size;
    /// `json` prints each object on one line.
    #[arg(short, long, value_name = "TEMPLATE")]
    pub format: Option<String>,
}

/// The fields `--format` knows: the scalar top-level ones.
const FORMAT_FIELDS: [&str; 6] = ["Id", "Created", "Author", "Architecture", "Os", "Size"];

/// The inspect object of one image.
fn describe(store: &cache::store::Store, found: &super::images::Found) -> anyhow::Result<Value> {
    let img = &found.image;
    let config: Value = serde_json::from_slice(img.config.raw())?;
    let manifest: Value = serde_json::from_slice(&img.manifest_raw)?;
    let mut tags = Vec::new();
    let mut digests = Vec::new();
    for t in store.tags().list()? {
        if t.manifest != found.top && t.manifest != img.manifest_digest {
            continue;
        }
        let r = t.reference()?;
        if r.tag().is_some() {
            tags.push(r.familiar());
        }
        let d = format!("{}@{}", r.familiar_name(), t.manifest);
        if !digests.contains(&d) {
            digests.push(d);
        }
    }
    tags.sort();
    digests.sort();
    let top_media = if found.top == img.manifest_digest {
        img.manifest
            .media_type
            .clone()
            .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into())
    } else {
        "index".into()
    };
    Ok(json!({
        "Id": img.id().to_string(),
        "RepoTags": tags,
        "RepoDigests": digests,
        "Created": config.get("created").cloned().unwrap_or(Value::Null),
        "Author": config.get("author").cloned().unwrap_or(json!("")),
        "Config": config.get("config").cloned().unwrap_or(json!({})),
        "Architecture": config.get("architecture").cloned().unwrap_or(Value::Null),
        "Variant": config.get("variant").cloned().unwrap_or(Value::Null),
        "Os": config.get("os").cloned().unwrap_or(Value::Null),
        "Size": img.size(),
        "RootFS": {
            "Type": "layers",
            "Layers": img.config.diff_ids().iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        },
        "Descriptor": {
            "mediaType": top_media,
            "digest": found.top.to_string(),
        },
        "Manifest": manifest,
    }))
}

pub fn run(g: &GlobalOpts, args: InspectArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(g)?;
    let platform = cache::platform::Platform::host();
    let format = args
        .format
        .as_deref()
        .map(|f| super::format::Format::parse(f, &FORMAT_FIELDS))
        .transpose()?;
    let mut out = Vec::new();
    for name in &args.images {
        let found = find_image(&store, name, &platform)?;
        out.push(describe(&store, &found)?);
    }
    match format {
        None => println!("{}", serde_json::to_string_pretty(&out)?),
        Some(super::format::Format::Json) => {
            for v in &out {
                println!("{v}");
            }
        }
        Some(f) => {
            let rows: Vec<std::collections::BTreeMap<&'static str, String>> = out
                .iter()
                .map(|v| {
                    FORMAT_FIELDS
                        .iter()
                        .map(|k| {
                            let text = match &v[*k] {
                                Value::String(s) => s.clone(),
                                Value::Null => String::new(),
                                other => other.to_string(),
                            };
                            (*k, text)
                        })
                        .collect()
                })
                .collect();
            for line in f.render(&rows, &Default::default()) {
                println!("{line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
