//! Where a built image goes besides the local store: a docker-archive
//! (`type=docker`), an OCI layout tar (`type=oci`), or a registry.

use std::path::Path;

use anyhow::{Context as _, anyhow};
use cache::image::Image;
use cache::reference::Reference;
use cache::store::Store;
use cache::transport::docker_archive::SaveItem;

use crate::options::{OutputKind, OutputSpec};

/// Writes every requested output of `img`.
pub fn export(
    store: &Store,
    img: &Image,
    names: &[Reference],
    outputs: &[OutputSpec],
) -> anyhow::Result<()> {
    for o in outputs {
        let mut refs: Vec<Reference> = names.to_vec();
        if let Some(n) = &o.name {
            for part in n.split(',').filter(|p| !p.is_empty()) {
                refs.push(
                    Reference::parse(part).map_err(|e| anyhow!("--output name={part}: {e}"))?,
                );
            }
        }
        let items: Vec<SaveItem> = if refs.is_empty() {
            vec![SaveItem {
                name: None,
                image: img.clone(),
            }]
        } else {
            refs.iter()
                .map(|r| SaveItem {
                    name: Some(r.clone()),
                    image: img.clone(),
                })
                .collect()
        };
        if o.compression.is_some() {
            return Err(crate::not_supported(
                "--output compression= (layers are gzip)",
            ));
        }
        let dest = o.dest.as_deref();
        match o.kind {
            OutputKind::Docker => {
                let d = file_dest(dest)?;
                cache::transport::docker_archive::save(store, &items, d)
                    .with_context(|| format!("writing the docker archive {}", d.display()))?;
            }
            OutputKind::Oci => {
                let d = file_dest(dest)?;
                cache::transport::oci_layout::export_tar(store, &items, d)
                    .with_context(|| format!("writing the OCI layout {}", d.display()))?;
            }
            OutputKind::Image if !o.push => {}
            OutputKind::Image | OutputKind::Registry => {
                if refs.is_empty() {
                    return Err(anyhow!(
                        "--output type=registry needs a name: add -t or name="
                    ));
                }
                let client = cache::transport::registry::RegistryClient::from_env()?;
                for r in &refs {
                    cache::transport::registry::push(&client, store, r, r)
                        .with_context(|| format!("pushing {r}"))?;
                }
            }
            OutputKind::Local => return Err(crate::not_supported("--output type=local")),
            OutputKind::Tar => return Err(crate::not_supported("--output type=tar")),
        }
    }
    Ok(())
}

fn file_dest(dest: Option<&Path>) -> anyhow::Result<&Path> {
    match dest {
        Some(p) if p == Path::new("-") => Err(crate::not_supported("--output dest=- (stdout)")),
        Some(p) => Ok(p),
        None => Err(anyhow!("--output: dest= is required")),
    }
}
