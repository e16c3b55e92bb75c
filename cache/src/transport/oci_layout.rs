//! OCI image layouts: a directory (or a tar of one) with `oci-layout`,
//! `index.json` and `blobs/<alg>/<hex>` (image-spec `image-layout.md`).
//!
//! Export writes one descriptor per image in `index.json`, annotated with
//! `org.opencontainers.image.ref.name` = the tag (what `skopeo oci:DIR:tag`
//! and `umoci --image DIR:tag` look up) and `io.containerd.image.name` = the
//! full name. Import copies an image's closure into the store, verifying
//! every blob, and picks the platform's manifest from an index.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use super::archive_tar::ArchiveContents;
use super::closure::{BlobProvider, import_closure};
use super::model::{LoadedImage, ManifestEntry, OCI_LAYOUT_FILE, SaveItem, index_entry, new_index};
use super::write_tar::{TarOut, clean_partials, new_partial, partial_file};
use crate::cas::{BlobStore, sync_dir};
use crate::digest::{Digest, Sha256};
use crate::error::{Error, IoContext, Result, invalid};
use crate::image::descriptor::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use crate::image::{Descriptor, Index, MAX_MANIFEST_SIZE, ParsedManifest, media_type, to_oci};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::store::Store;

fn check_unique_tags(items: &[SaveItem]) -> Result<()> {
    let mut seen: BTreeMap<&str, &Reference> = BTreeMap::new();
    for it in items {
        if let Some(n) = &it.name
            && let Some(t) = n.tag()
            && let Some(prev) = seen.insert(t, n)
            && prev.name() != n.name()
        {
            return Err(invalid(format!(
                "{prev} and {n} would both be `{t}` in the OCI layout, which names images by tag only; export them to separate layouts"
            )));
        }
    }
    Ok(())
}

/// Layout readers skip Docker-typed manifests, so exports use OCI ones.
fn as_oci(store: &Store, items: &[SaveItem]) -> Result<Vec<SaveItem>> {
    items
        .iter()
        .map(|it| {
            Ok(SaveItem {
                name: it.name.clone(),
                image: to_oci(store.blobs(), &it.image)?,
            })
        })
        .collect()
}

/// Writes `items` into the layout directory `dir` (created if needed; an
/// existing layout keeps its other images, same-tag entries are replaced).
pub fn export_dir(store: &Store, items: &[SaveItem], dir: &Path) -> Result<()> {
    check_unique_tags(items)?;
    super::fetch_absent_layers(store, items, &super::StoredOnly)?;
    let items = &as_oci(store, items)?;
    let blob_dir = dir.join("blobs/sha256");
    fs::create_dir_all(&blob_dir).ctx("create layout directory", &blob_dir)?;
    clean_partials(&blob_dir);
    let index_path = dir.join("index.json");
    let mut index = match fs::read(&index_path) {
        Ok(b) => serde_json::from_slice::<Index>(&b).map_err(|e| {
            invalid(format!(
                "{} is not a valid OCI index ({e}); choose an empty directory",
                index_path.display()
            ))
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => new_index(),
        Err(e) => return Err(e).ctx("read", &index_path),
    };
    for item in items {
        let img = &item.image;
        copy_blob(store.blobs(), &img.manifest.config.digest, &blob_dir)?;
        for l in img.layers() {
            copy_blob(store.blobs(), &l.digest, &blob_dir)?;
        }
        // The manifest last: a reader never sees a manifest whose blobs are
        // not there yet.
        copy_blob(store.blobs(), &img.manifest_digest, &blob_dir)?;
        let desc = index_entry(item);
        if let Some(t) = desc.annotations.get(ANNOTATION_REF_NAME) {
            index
                .manifests
                .retain(|d| d.annotations.get(ANNOTATION_REF_NAME) != Some(t));
        }
        if !index.manifests.contains(&desc) {
            index.manifests.push(desc);
        }
    }
    write_file_atomic(dir, "oci-layout", OCI_LAYOUT_FILE)?;
    let bytes = serde_json::to_vec(&index).map_err(|e| invalid(e.to_string()))?;
    write_file_atomic(dir, "index.json", &bytes)
}

/// Writes `items` as an OCI layout tar (an "oci-archive") at `dest`.
pub fn export_tar(store: &Store, items: &[SaveItem], dest: &Path) -> Result<()> {
    export_tar_with(store, items, dest, &super::StoredOnly)
}

/// [`export_tar`], streaming the layers `made` produces instead of reading
/// them from the store.
pub fn export_tar_with(
    store: &Store,
    items: &[SaveItem],
    dest: &Path,
    made: &dyn super::LayerSource,
) -> Result<()> {
    check_unique_tags(items)?;
    super::fetch_absent_layers(store, items, made)?;
    let items = &as_oci(store, items)?;
    let mut out = TarOut::default();
    let mut index = new_index();
    for item in items {
        let img = &item.image;
        out.blob(&img.manifest_digest, img.manifest_raw.len() as u64);
        out.blob(&img.manifest.config.digest, img.manifest.config.size);
        for l in img.layers() {
            out.blob(&l.digest, l.size);
        }
        let desc = index_entry(item);
        if !index.manifests.contains(&desc) {
            index.manifests.push(desc);
        }
    }
    out.bytes(
        "index.json",
        serde_json::to_vec(&index).map_err(|e| invalid(e.to_string()))?,
    );
    out.bytes("oci-layout", OCI_LAYOUT_FILE.to_vec());
    out.write_to(store.blobs(), made, dest)
}

fn write_file_atomic(dir: &Path, name: &str, data: &[u8]) -> Result<()> {
    let dest = dir.join(name);
    let mut tmp = partial_file(dir)?;
    tmp.write_all(data).ctx("write", &dest)?;
    tmp.as_file().sync_all().ctx("write", &dest)?;
    tmp.persist(&dest)
        .map_err(|e| e.error)
        .ctx("replace", &dest)?;
    sync_dir(dir)
}

/// Copies a store blob into a layout's blob dir, verifying it on the way.
fn copy_blob(blobs: &BlobStore, digest: &Digest, blob_dir: &Path) -> Result<()> {
    let dest = blob_dir.join(digest.hex());
    if fs::metadata(&dest).is_ok_and(|m| m.len() == blobs.size(digest).unwrap_or(u64::MAX)) {
        return Ok(());
    }
    let mut src = blobs.open(digest)?;
    let mut tmp = new_partial(blob_dir)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).ctx("read blob", &blobs.path(digest)),
        };
        h.update(&buf[..n]);
        tmp.write_all(&buf[..n]).ctx("write blob", &dest)?;
    }
    let actual = h.finalize();
    if &actual != digest {
        return Err(Error::DigestMismatch {
            what: format!(
                "store blob {} (run `strata store verify`)",
                blobs.path(digest).display()
            ),
            expected: digest.clone(),
            actual,
        });
    }
    tmp.as_file().sync_all().ctx("write blob", &dest)?;
    tmp.persist(&dest)
        .map_err(|e| e.error)
        .ctx("write blob", &dest)?;
    Ok(())
}

/// Blobs of a layout directory.
struct LayoutDir<'a> {
    dir: &'a Path,
}

impl BlobProvider for LayoutDir<'_> {
    fn fetch(&self, blobs: &BlobStore, desc: &Descriptor) -> Result<()> {
        if blobs.has(&desc.digest) {
            return Ok(());
        }
        let p = self
            .dir
            .join("blobs")
            .join(desc.digest.algorithm())
            .join(desc.digest.hex());
        let f = File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::NotFound(format!(
                    "OCI layout {} lacks blob {} ({})",
                    self.dir.display(),
                    desc.digest,
                    desc.media_type
                ))
            } else {
                Error::Io {
                    op: "open",
                    path: p.clone(),
                    cause: e,
                }
            }
        })?;
        let (_, size) = blobs
            .put_stream(f, Some(&desc.digest))
            .map_err(|e| match e {
                Error::DigestMismatch {
                    expected, actual, ..
                } => Error::DigestMismatch {
                    what: format!("OCI layout blob {}", p.display()),
                    expected,
                    actual,
                },
                other => other,
            })?;
        check_size(desc, size, &self.what())
    }

    fn what(&self) -> String {
        format!("OCI layout {}", self.dir.display())
    }
}

/// Blobs a scanned archive already put in the store.
struct ArchiveBlobs<'a> {
    contents: &'a ArchiveContents,
}

impl BlobProvider for ArchiveBlobs<'_> {
    fn fetch(&self, blobs: &BlobStore, desc: &Descriptor) -> Result<()> {
        if !blobs.has(&desc.digest) {
            return Err(Error::NotFound(format!(
                "{} lacks blob {} ({})",
                self.contents.what(),
                desc.digest,
                desc.media_type
            )));
        }
        check_size(desc, blobs.size(&desc.digest)?, &self.what())
    }

    fn what(&self) -> String {
        self.contents.what().to_string()
    }
}

fn check_size(desc: &Descriptor, size: u64, what: &str) -> Result<()> {
    if size != desc.size {
        return Err(invalid(format!(
            "{what}: blob {} is {size} bytes but its descriptor says {}",
            desc.digest, desc.size
        )));
    }
    Ok(())
}

/// The names a layout descriptor carries: the containerd full name, or a
/// `ref.name` that is itself a full reference (not a bare tag).
fn names_of(desc: &Descriptor) -> Vec<Reference> {
    if let Some(r) = desc
        .annotations
        .get(ANNOTATION_IMAGE_NAME)
        .and_then(|n| Reference::parse(n).ok())
        .filter(|r| r.tag().is_some())
    {
        return vec![r.without_digest()];
    }
    desc.annotations
        .get(ANNOTATION_REF_NAME)
        .filter(|n| n.contains(':') || n.contains('/'))
        .and_then(|n| Reference::parse(n).ok())
        .filter(|r| r.tag().is_some())
        .map(|r| vec![r.without_digest()])
        .unwrap_or_default()
}

fn parse_index(bytes: &[u8], what: &str) -> Result<Index> {
    match ParsedManifest::parse(bytes, Some(media_type::OCI_INDEX), what)? {
        ParsedManifest::Index(i) => Ok(i),
        ParsedManifest::Image(_) => {
            Err(invalid(format!("{what}: index.json is not an image index")))
        }
    }
}

fn check_layout_file(bytes: &[u8], what: &str) -> Result<()> {
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("{what}: malformed oci-layout file: {e}")))?;
    match v.get("imageLayoutVersion").and_then(|v| v.as_str()) {
        Some("1.0.0") => Ok(()),
        other => Err(invalid(format!(
            "{what}: oci-layout has imageLayoutVersion {other:?}; only \"1.0.0\" is supported"
        ))),
    }
}

/// Picks the descriptors of `index` that `tag` selects.
fn select<'a>(index: &'a Index, tag: Option<&str>, what: &str) -> Result<Vec<&'a Descriptor>> {
    let Some(tag) = tag else {
        return if index.manifests.len() == 1 {
            Ok(vec![&index.manifests[0]])
        } else {
            Err(invalid(format!(
                "{what} holds {} images; name one with :TAG (it has: {})",
                index.manifests.len(),
                ref_names(index)
            )))
        };
    };
    let found: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| {
            d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) == Some(tag)
                || names_of(d).iter().any(|n| n.tag() == Some(tag))
        })
        .collect();
    if found.is_empty() {
        return Err(Error::NotFound(format!(
            "{what} has no image tagged {tag:?} (it has: {})",
            ref_names(index)
        )));
    }
    Ok(found)
}

fn ref_names(index: &Index) -> String {
    let v: Vec<&str> = index
        .manifests
        .iter()
        .filter_map(|d| d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str))
        .collect();
    if v.is_empty() {
        "no tagged images".into()
    } else {
        v.join(", ")
    }
}

/// Imports one image from a layout directory or an OCI archive tar at
/// `path` (the `oci-layout:PATH[:tag]` base image form). Nothing is tagged.
pub fn import_layout(
    store: &Store,
    path: &Path,
    tag: Option<&str>,
    platform: &Platform,
) -> Result<LoadedImage> {
    let what = format!("OCI layout {}", path.display());
    let meta = fs::metadata(path).ctx("open OCI layout", path)?;
    if meta.is_file() {
        let contents = ArchiveContents::scan(store.blobs(), path)?;
        let index = parse_index(
            &contents.read(store.blobs(), "index.json", MAX_MANIFEST_SIZE)?,
            &what,
        )?;
        let desc = one(select(&index, tag, &what)?, &what)?;
        let src = ArchiveBlobs {
            contents: &contents,
        };
        let image = import_closure(store, &src, desc, platform)?;
        return Ok(LoadedImage {
            names: names_of(desc),
            top_digest: desc.digest.clone(),
            image,
        });
    }
    check_layout_file(
        &fs::read(path.join("oci-layout")).ctx("read", &path.join("oci-layout"))?,
        &what,
    )?;
    let index = parse_index(
        &fs::read(path.join("index.json")).ctx("read", &path.join("index.json"))?,
        &what,
    )?;
    let desc = one(select(&index, tag, &what)?, &what)?;
    let image = import_closure(store, &LayoutDir { dir: path }, desc, platform)?;
    Ok(LoadedImage {
        names: names_of(desc),
        top_digest: desc.digest.clone(),
        image,
    })
}

/// Imports every image of a layout directory (for `strata load -i DIR`).
pub(crate) fn load_dir(store: &Store, dir: &Path, platform: &Platform) -> Result<Vec<LoadedImage>> {
    let what = format!("OCI layout {}", dir.display());
    let layout = dir.join("oci-layout");
    check_layout_file(&fs::read(&layout).ctx("read", &layout)?, &what)?;
    let index_path = dir.join("index.json");
    let index = parse_index(&fs::read(&index_path).ctx("read", &index_path)?, &what)?;
    let mut out: Vec<LoadedImage> = Vec::new();
    for desc in &index.manifests {
        let image = import_closure(store, &LayoutDir { dir }, desc, platform)?;
        let names = names_of(desc);
        match out.iter_mut().find(|l| l.top_digest == desc.digest) {
            Some(prev) => {
                for n in names {
                    if !prev.names.contains(&n) {
                        prev.names.push(n);
                    }
                }
            }
            None => out.push(LoadedImage {
                names,
                top_digest: desc.digest.clone(),
                image,
            }),
        }
    }
    Ok(out)
}

fn one<'a>(v: Vec<&'a Descriptor>, what: &str) -> Result<&'a Descriptor> {
    let mut uniq: Vec<&Descriptor> = Vec::new();
    for d in v {
        if !uniq.iter().any(|u| u.digest == d.digest) {
            uniq.push(d);
        }
    }
    match uniq.as_slice() {
        [d] => Ok(d),
        _ => Err(invalid(format!(
            "{what}: the tag names {} different images",
            uniq.len()
        ))),
    }
}

/// Imports every image of a scanned OCI archive (for `strata load`). Names
/// come from the descriptors' annotations, or else from a `manifest.json`
/// beside them (matched by config digest).
pub(crate) fn load_from_archive(
    store: &Store,
    contents: &ArchiveContents,
    platform: &Platform,
) -> Result<Vec<LoadedImage>> {
    let what = contents.what().to_string();
    check_layout_file(&contents.read(store.blobs(), "oci-layout", 4096)?, &what)?;
    let index = parse_index(
        &contents.read(store.blobs(), "index.json", MAX_MANIFEST_SIZE)?,
        &what,
    )?;
    let docker_entries: Vec<ManifestEntry> = if contents.has("manifest.json") {
        serde_json::from_slice::<Option<Vec<ManifestEntry>>>(&contents.read(
            store.blobs(),
            "manifest.json",
            MAX_MANIFEST_SIZE,
        )?)
        .ok()
        .flatten()
        .unwrap_or_default()
    } else {
        Vec::new()
    };
    let src = ArchiveBlobs { contents };
    let mut out: Vec<LoadedImage> = Vec::new();
    for desc in &index.manifests {
        let image = import_closure(store, &src, desc, platform)?;
        let mut names = names_of(desc);
        if names.is_empty() {
            let cfg = format!("blobs/sha256/{}", image.manifest.config.digest.hex());
            for e in docker_entries.iter().filter(|e| e.config == cfg) {
                for t in e.repo_tags.iter().flatten() {
                    if let Ok(r) = Reference::parse(t) {
                        names.push(r);
                    }
                }
            }
        }
        match out.iter_mut().find(|l| l.top_digest == desc.digest) {
            Some(prev) => {
                for n in names {
                    if !prev.names.contains(&n) {
                        prev.names.push(n);
                    }
                }
            }
            None => out.push(LoadedImage {
                names,
                top_digest: desc.digest.clone(),
                image,
            }),
        }
    }
    Ok(out)
}
