//! The merged view of a stack of lower layers, without mounting it.
//!
//! Both snapshotters need to ask "what is at this path below the step?": the
//! overlay diff to tell an added path from a modified one and a real deletion
//! from a stray whiteout, the native snapshotter to build its working tree and
//! to find what the step deleted. Answering it by reading the layer
//! directories with overlayfs' own rules (topmost layer wins, a whiteout hides
//! the path, a non-directory hides everything below it, an opaque directory
//! hides the same directory in the layers below) keeps the two snapshotters
//! in agreement with what the kernel shows the step.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::Metadata;
use std::io;
use std::path::{Component, Path, PathBuf};

use super::DiffError;
use super::overlay_form::{is_opaque_dir, is_whiteout};

/// A stack of layer directories in overlay form, topmost first (the order of
/// overlayfs' `lowerdir=` and of [`crate::RootfsSpec::Overlay`]'s `lowers`).
#[derive(Debug, Clone, Default)]
pub struct LowerView {
    layers: Vec<PathBuf>,
}

/// A visible object of the merged view.
#[derive(Debug, Clone)]
pub struct LowerEntry {
    /// Index into the layer stack (0 = topmost) of the layer that provides it.
    pub layer: usize,
    /// Its host path inside that layer.
    pub path: PathBuf,
    /// Its `lstat` metadata.
    pub metadata: Metadata,
}

/// How one layer answers for one path.
enum InLayer {
    /// The path is not in this layer; `opaque` if an ancestor directory in
    /// this layer is opaque, which hides the layers below.
    Missing {
        opaque: bool,
    },
    /// This layer hides the path (whiteout, or a non-directory ancestor).
    Hidden,
    Found(PathBuf, Metadata),
}

impl LowerView {
    /// `layers` topmost first. An empty stack is an empty file system.
    pub fn new(layers: Vec<PathBuf>) -> Self {
        LowerView { layers }
    }

    pub fn layers(&self) -> &[PathBuf] {
        &self.layers
    }

    /// What the merged view shows at `rel` (relative, no `..`), if anything.
    /// The empty path is the root directory.
    pub fn lookup(&self, rel: &Path) -> Result<Option<LowerEntry>, DiffError> {
        for (i, layer) in self.layers.iter().enumerate() {
            match Self::in_layer(layer, rel)? {
                InLayer::Found(path, metadata) => {
                    if is_whiteout(&path, &metadata)? {
                        return Ok(None);
                    }
                    return Ok(Some(LowerEntry {
                        layer: i,
                        path,
                        metadata,
                    }));
                }
                InLayer::Hidden | InLayer::Missing { opaque: true } => return Ok(None),
                InLayer::Missing { opaque: false } => {}
            }
        }
        Ok(None)
    }

    /// The visible children of the directory at `rel`, by name. Empty when
    /// `rel` is not a visible directory.
    pub fn read_dir(&self, rel: &Path) -> Result<BTreeMap<OsString, LowerEntry>, DiffError> {
        let mut visible = BTreeMap::new();
        // Names decided by a higher layer (shown or whited out).
        let mut decided = std::collections::HashSet::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let (dir, md) = match Self::in_layer(layer, rel)? {
                InLayer::Found(dir, md) => (dir, md),
                InLayer::Hidden | InLayer::Missing { opaque: true } => break,
                InLayer::Missing { opaque: false } => continue,
            };
            if !md.is_dir() || is_whiteout(&dir, &md)? {
                break;
            }
            let rd = std::fs::read_dir(&dir).map_err(|e| DiffError::io("list", &dir, e))?;
            for item in rd {
                let item = item.map_err(|e| DiffError::io("list", &dir, e))?;
                let name = item.file_name();
                if !decided.insert(name.clone()) {
                    continue;
                }
                let path = item.path();
                let metadata = std::fs::symlink_metadata(&path)
                    .map_err(|e| DiffError::io("stat", &path, e))?;
                if is_whiteout(&path, &metadata)? {
                    continue;
                }
                visible.insert(
                    name,
                    LowerEntry {
                        layer: i,
                        path,
                        metadata,
                    },
                );
            }
            if is_opaque_dir(&dir)? || Self::opaque_ancestor(layer, rel)? {
                break;
            }
        }
        // A child that is a directory in a higher layer and a file in a lower
        // one is the higher layer's directory: `decided` already ensured the
        // topmost occurrence wins.
        Ok(visible)
    }

    /// Walks `rel` down one layer directory.
    fn in_layer(layer: &Path, rel: &Path) -> Result<InLayer, DiffError> {
        let mut cur = layer.to_path_buf();
        let mut opaque = false;
        let comps: Vec<_> = normal_components(rel)?;
        if comps.is_empty() {
            return match std::fs::symlink_metadata(&cur) {
                Ok(md) => Ok(InLayer::Found(cur, md)),
                Err(e) => Err(DiffError::io("stat layer", &cur, e)),
            };
        }
        let last = comps.len() - 1;
        for (j, comp) in comps.iter().enumerate() {
            cur.push(comp);
            let md = match std::fs::symlink_metadata(&cur) {
                Ok(md) => md,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Ok(InLayer::Missing { opaque });
                }
                Err(e) => return Err(DiffError::io("stat", &cur, e)),
            };
            if j == last {
                return Ok(InLayer::Found(cur, md));
            }
            if !md.is_dir() || is_whiteout(&cur, &md)? {
                return Ok(InLayer::Hidden);
            }
            if is_opaque_dir(&cur)? {
                opaque = true;
            }
        }
        Ok(InLayer::Missing { opaque })
    }

    /// Whether a proper ancestor of `rel` is opaque in `layer`.
    fn opaque_ancestor(layer: &Path, rel: &Path) -> Result<bool, DiffError> {
        let comps = normal_components(rel)?;
        let mut cur = layer.to_path_buf();
        for comp in comps.iter().take(comps.len().saturating_sub(1)) {
            cur.push(comp);
            if is_opaque_dir(&cur)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The components of a relative path; refuses `..` and absolute paths so a
/// lookup never leaves the layer.
fn normal_components(rel: &Path) -> Result<Vec<&std::ffi::OsStr>, DiffError> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => {
                return Err(DiffError::Unsupported {
                    path: rel.to_path_buf(),
                    what: "expected a relative path without `..`".into(),
                });
            }
        }
    }
    Ok(out)
}
