//! Where a built image goes besides the local store: a docker-archive
//! (`type=docker`), an OCI layout tar (`type=oci`), a registry, or the final
//! root filesystem (`type=local` as a directory, `type=tar` as a tarball).
//! Tarballs go to a file or, with `dest=-`, to standard output. Only these
//! outputs need every layer's bytes ([`needs_layer_bytes`]); each gets its
//! layers in the encoding it needs ([`encode`]).

pub mod encode;
pub mod load;
pub mod local_dir;
pub mod push;
mod stdout;

use std::path::Path;

use anyhow::{Context as _, anyhow};
use cache::image::Image;
use cache::reference::Reference;
use cache::store::Store;
use cache::transport::SaveItem;

use crate::ops::commit::DirLayers;
use crate::ops::exec::Executor;
use crate::options::{OutputKind, OutputSpec};
use crate::progress::Tasks;
use encode::Want;

/// The encoding an output's layers take unless `compression=` says: a
/// docker-archive and the local store keep the image as stored (layers
/// built here uncompressed, as `docker save` writes them); what goes to a
/// registry or an OCI consumer is gzip.
fn default_want(o: &OutputSpec) -> Want {
    match o.kind {
        OutputKind::Docker | OutputKind::Local | OutputKind::Tar => Want::AsStored,
        OutputKind::Image if !o.push => Want::AsStored,
        OutputKind::Image | OutputKind::Registry | OutputKind::Oci => Want::Gzip,
    }
}

/// Writes every requested output of `img`, each shown as a progress task.
pub fn export(
    store: &Store,
    executor: &Executor,
    img: &Image,
    layers: &[crate::ops::Layer],
    names: &[Reference],
    outputs: &[OutputSpec],
    tasks: &Tasks,
) -> anyhow::Result<()> {
    for o in outputs {
        // The local store needs no task; a push shows one per name.
        if matches!(o.kind, OutputKind::Image | OutputKind::Registry) {
            export_one(store, executor, img, layers, names, o, tasks)?;
            continue;
        }
        let task = tasks.start(match &o.dest {
            Some(d) => format!("exporting to {} {}", type_label(o.kind), d.display()),
            None => format!("exporting to {}", type_label(o.kind)),
        });
        let r = export_one(store, executor, img, layers, names, o, tasks);
        task.end(&r);
        r?;
    }
    Ok(())
}

fn type_label(k: OutputKind) -> &'static str {
    match k {
        OutputKind::Docker => "docker archive",
        OutputKind::Oci => "OCI archive",
        OutputKind::Tar => "tar",
        OutputKind::Local => "directory",
        OutputKind::Image => "image",
        OutputKind::Registry => "registry",
    }
}

/// Pushes `img` (whose layers are `layers`) as `r` in the encoding `want`,
/// as a progress task with the bytes it uploaded.
fn push_one(
    store: &Store,
    executor: &Executor,
    (img, layers): (&Image, &[crate::ops::Layer]),
    want: Want,
    r: &Reference,
    tasks: &Tasks,
) -> anyhow::Result<()> {
    use cache::transport::registry::BlobPushed;
    let task = tasks.start(format!("pushing {}", r.familiar()));
    let result = (|| {
        let to = push::Target { source: r, dest: r };
        push::push(store, executor, executor.registry()?, img, layers, want, to)
    })();
    if let Ok(pushed) = &result {
        let (img, report) = (&pushed.image, &pushed.report);
        let size_of = |d: &cache::digest::Digest| {
            img.layers()
                .iter()
                .chain(std::iter::once(&img.manifest.config))
                .find(|l| &l.digest == d)
                .map_or(0, |l| l.size)
        };
        let count =
            |f: &dyn Fn(&BlobPushed) -> bool| report.blobs.iter().filter(|(_, h)| f(h)).count();
        let sent: u64 = report
            .blobs
            .iter()
            .filter(|(_, h)| matches!(h, BlobPushed::Monolithic | BlobPushed::Chunked))
            .map(|(d, _)| size_of(d))
            .sum();
        task.bytes(sent);
        task.line(format!(
            "{} blobs uploaded ({} compressed while uploading), {} mounted, {} already there; manifest {}",
            count(&|h| matches!(h, BlobPushed::Monolithic | BlobPushed::Chunked)),
            pushed.streamed,
            count(&|h| matches!(h, BlobPushed::Mounted)),
            count(&|h| matches!(h, BlobPushed::Existed)),
            img.manifest_digest
        ));
    }
    task.end(&result);
    result.map(|_| ())
}

/// One output.
fn export_one(
    store: &Store,
    executor: &Executor,
    img: &Image,
    layers: &[crate::ops::Layer],
    names: &[Reference],
    o: &OutputSpec,
    tasks: &Tasks,
) -> anyhow::Result<()> {
    {
        let mut refs: Vec<Reference> = names.to_vec();
        if let Some(n) = &o.name {
            for part in n.split(',').filter(|p| !p.is_empty()) {
                refs.push(
                    Reference::parse(part).map_err(|e| anyhow!("--output name={part}: {e}"))?,
                );
            }
        }
        // This output's encoding: its own manifest over encoded layers
        // when that differs (the image ID stays the same).
        let want = Want::from_option(o.compression, default_want(o));
        let pushed = o.kind == OutputKind::Image && o.push || o.kind == OutputKind::Registry;
        if pushed {
            // Layers are encoded while they upload (the first push; the
            // others find them remembered).
            if refs.is_empty() {
                return Err(anyhow!(
                    "--output type=registry needs a name: add -t or name="
                ));
            }
            for r in &refs {
                push_one(store, executor, (img, layers), want, r, tasks)?;
            }
            return Ok(());
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
        let encoded = encode::encode(store, executor, img, layers, want, false)?;
        let converted = (encoded.manifest_digest != img.manifest_digest).then_some(encoded);
        let img = converted.as_ref().unwrap_or(img);
        let made = DirLayers { store, executor };
        let items: Vec<SaveItem> = items
            .into_iter()
            .map(|i| SaveItem {
                image: img.clone(),
                ..i
            })
            .collect();
        let dest = o.dest.as_deref();
        match o.kind {
            OutputKind::Docker => stdout::or_file(store, dest, |d| {
                cache::transport::docker_archive::save_with(store, &items, d, &made)
                    .with_context(|| format!("writing the docker archive {}", d.display()))
            })?,
            OutputKind::Oci => stdout::or_file(store, dest, |d| {
                cache::transport::oci_layout::export_tar_with(store, &items, d, &made)
                    .with_context(|| format!("writing the OCI layout {}", d.display()))
            })?,
            // Pushes went above; this is the local store.
            OutputKind::Image | OutputKind::Registry => {
                // `name=` names the image in the local store (-t names are
                // there already); they follow the output's encoding.
                for r in &refs {
                    store.tag_image(r, &img.manifest_digest)?;
                }
            }
            // `type=local,dest=-` streams the filesystem as a tar, as
            // BuildKit does.
            OutputKind::Local if dest != Some(Path::new("-")) => {
                local_dir::write_local(store, executor, layers, file_dest(dest)?)?;
            }
            OutputKind::Local | OutputKind::Tar => {
                stdout::or_file(store, dest, |d| {
                    write_rootfs_tar(store, executor, layers, d)
                })?;
            }
        }
    }
    Ok(())
}

/// Whether any output needs the bytes of every layer (an archive, a push,
/// a root filesystem, a re-encoding). The plain local-store output does
/// not: it records the image, and absent layers stay where they came from.
pub fn needs_layer_bytes(outputs: &[OutputSpec]) -> bool {
    outputs
        .iter()
        .any(|o| !(o.kind == OutputKind::Image && !o.push && o.compression.is_none()))
}

fn file_dest(dest: Option<&Path>) -> anyhow::Result<&Path> {
    dest.ok_or_else(|| anyhow!("--output: dest= is required (a path, or - for standard output)"))
}

/// Whether any output writes to standard output (then `-q` prints nothing
/// else there).
pub fn uses_stdout(outputs: &[OutputSpec]) -> bool {
    outputs.iter().any(|o| {
        o.dest.as_deref() == Some(Path::new("-"))
            && !matches!(o.kind, OutputKind::Image | OutputKind::Registry)
    })
}

/// `type=tar`: the merged root filesystem as one uncompressed tar, with the
/// image's owners, written under a temp name and renamed into place.
fn write_rootfs_tar(
    store: &Store,
    executor: &Executor,
    layers: &[crate::ops::Layer],
    dest: &Path,
) -> anyhow::Result<()> {
    let tree = crate::ops::file::materialize(store, executor, layers)?;
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing into {}", dir.display()))?;
    let opts = cache::layer::WriteOptions {
        compression: cache::layer::Compression::None,
        owners: cache::layer::OwnerSource::Xattr,
        ..Default::default()
    };
    cache::layer::write_dir(tree.path(), &opts, tmp.as_file())
        .context("writing the root filesystem tar")?;
    tmp.persist(dest)
        .map_err(|e| anyhow!("writing {}: {}", dest.display(), e.error))?;
    Ok(())
}
