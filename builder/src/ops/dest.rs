//! Where a COPY, ADD or WORKDIR lands in the image below it.
//!
//! A layer is applied over the image, so its entries must name the paths
//! the image really has. The destination is therefore resolved in the
//! merged view of the step's lower layers the way a process in the
//! container would see it: through symlinks (usrmerge's `/bin -> usr/bin`,
//! a link a RUN made), never out of the root. Without that, an entry
//! `bin/f` turns the image's `/bin` symlink into a directory holding only
//! `f`. Docker's rules that need the view follow from it:
//!
//! * an existing directory is copied *into*, with or without a trailing
//!   `/` (`COPY f /bin` must not replace `/bin` with a file);
//! * missing parent directories are entries of the layer (0755, owned by
//!   the `--chown` user or root), as BuildKit creates them;
//! * WORKDIR creates only the directories that are missing, leaving the
//!   owner and mode of existing ones alone.
//!
//! The view is read in a user-namespace child, where the shared layer
//! directories are readable whoever owns their files.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use anyhow::anyhow;
use runtime::diff::LowerView;
use serde::{Deserialize, Serialize};

use super::Layer;
use super::exec::Executor;

/// Symlink hops before giving up, as Linux's `MAXSYMLINKS`.
const MAX_HOPS: usize = 40;

/// A destination as the image below the step shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dest {
    /// Absolute, every symlink of the image resolved; ends with `/` when
    /// it is a directory to copy into (it exists as one, or was written
    /// with a trailing `/`).
    pub path: String,
    /// The directories the step must create for it, shallowest first
    /// (absolute, no trailing `/`): the missing ancestors of what it
    /// writes, and the destination itself when it is a missing directory.
    pub missing: Vec<String>,
    /// The directories on the way that the image has, as it has them: a
    /// layer directory holds its files' parents, and they must carry the
    /// image's mode, owner and time, or the layer would change them.
    #[serde(default)]
    pub parents: Vec<DirMeta>,
}

/// An existing directory of the image: relative path and metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirMeta {
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
}

impl Dest {
    /// `dest` taken literally, for an image with nothing in it.
    fn literal(dest: &str, into_dir: bool) -> anyhow::Result<Dest> {
        plan(&LowerView::new(Vec::new()), dest, into_dir).map_err(|e| anyhow!("{e}"))
    }
}

impl Executor<'_> {
    /// Resolves `dest` in the image made of `layers` (bottom first).
    /// `into_dir`: the destination is a directory whatever the image holds
    /// (WORKDIR), as a trailing `/` says too.
    ///
    /// On a host where user namespaces are unavailable the layers cannot
    /// be unpacked to look at, so `dest` is taken literally, as if the
    /// image were empty.
    pub fn resolve_dest(
        &self,
        layers: &[Layer],
        dest: &str,
        into_dir: bool,
    ) -> anyhow::Result<Dest> {
        if layers.is_empty() {
            return Dest::literal(dest, into_dir);
        }
        let Ok((sandbox, _)) = self.get() else {
            return Dest::literal(dest, into_dir);
        };
        let lowers = self.lowers(layers)?;
        let json = sandbox
            .as_owner(|| -> Result<String, String> {
                let d = plan(&LowerView::new(lowers), dest, into_dir)?;
                serde_json::to_string(&d).map_err(|e| e.to_string())
            })
            .map_err(|e| anyhow!("{e}"))?;
        serde_json::from_str(&json).map_err(|e| anyhow!("internal: resolving {dest}: {e}"))
    }
}

/// What a resolved path is in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Missing,
    Dir,
    /// Anything else: a file, a device, a fifo.
    Other,
}

/// The [`Dest`] of `dest` in `view`.
fn plan(view: &LowerView, dest: &str, into_dir: bool) -> Result<Dest, String> {
    let (rel, found) = resolve(view, Path::new(dest))?;
    let into_dir = into_dir || dest.ends_with('/') || dest.ends_with("/.");
    if found == Found::Other && into_dir {
        return Err(format!(
            "{dest}: /{} exists in the image and is not a directory",
            rel.display()
        ));
    }
    let is_dir = into_dir || found == Found::Dir;
    let mut path = format!("/{}", rel.display());
    if is_dir && !rel.as_os_str().is_empty() {
        path.push('/');
    }
    // Resolution left existing directories up to the first missing
    // component; everything from there down is to be created.
    let made = if is_dir {
        Some(rel.as_path())
    } else {
        rel.parent()
    };
    let mut missing = Vec::new();
    let mut parents = Vec::new();
    let mut acc = PathBuf::new();
    for c in made.into_iter().flat_map(Path::components) {
        acc.push(c);
        if missing.is_empty()
            && let Some(found) = view
                .lookup(&acc)
                .map_err(|e| format!("looking up /{}: {e}", acc.display()))?
        {
            use std::os::unix::fs::MetadataExt as _;
            let md = &found.metadata;
            parents.push(DirMeta {
                path: acc.display().to_string(),
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                mtime: md.mtime(),
            });
            continue;
        }
        missing.push(format!("/{}", acc.display()));
    }
    Ok(Dest {
        path,
        missing,
        parents,
    })
}

/// Resolves `path` in `view` through symlinks (the last component too),
/// confined to the root: `..` and absolute link targets stop at `/`.
/// Returns the resolved path relative to the root and what is there;
/// components after the first missing one are taken literally.
fn resolve(view: &LowerView, path: &Path) -> Result<(PathBuf, Found), String> {
    let mut queue = components(path);
    let mut cur = PathBuf::new();
    let mut hops = 0;
    while let Some(name) = queue.pop_front() {
        if name == ".." {
            cur.pop();
            continue;
        }
        let candidate = cur.join(&name);
        let entry = view
            .lookup(&candidate)
            .map_err(|e| format!("looking up /{}: {e}", candidate.display()))?;
        let Some(entry) = entry else {
            let mut rest = candidate;
            for c in queue {
                if c == ".." {
                    rest.pop();
                } else {
                    rest.push(c);
                }
            }
            return Ok((rest, Found::Missing));
        };
        let ft = entry.metadata.file_type();
        if ft.is_symlink() {
            hops += 1;
            if hops > MAX_HOPS {
                return Err(format!(
                    "/{}: too many levels of symbolic links",
                    candidate.display()
                ));
            }
            let target = std::fs::read_link(&entry.path)
                .map_err(|e| format!("reading the symlink /{}: {e}", candidate.display()))?;
            if target.is_absolute() {
                cur = PathBuf::new();
            }
            for c in components(&target).into_iter().rev() {
                queue.push_front(c);
            }
        } else if ft.is_dir() {
            cur = candidate;
        } else if queue.is_empty() {
            return Ok((candidate, Found::Other));
        } else {
            return Err(format!(
                "/{} is not a directory, so nothing can be created under it ({})",
                candidate.display(),
                path.display()
            ));
        }
    }
    Ok((cur, Found::Dir))
}

/// The names of `p`: `.` and the root dropped, `..` kept as the name `..`.
fn components(p: &Path) -> VecDeque<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::*;

    /// Two layers: a usrmerge-like bottom and a top with links of a RUN.
    fn view() -> (tempfile::TempDir, LowerView) {
        let t = tempfile::tempdir().expect("tmp");
        let (low, top) = (t.path().join("low"), t.path().join("top"));
        fs::create_dir_all(low.join("usr/bin")).expect("mkdir");
        fs::create_dir_all(low.join("etc")).expect("mkdir");
        fs::write(low.join("etc/file"), "x").expect("write");
        symlink("usr/bin", low.join("bin")).expect("symlink");
        fs::create_dir_all(&top).expect("mkdir");
        symlink("/usr", top.join("lnk")).expect("symlink");
        symlink("/../../../etc", top.join("escape")).expect("symlink");
        symlink("loop", top.join("loop")).expect("symlink");
        let v = LowerView::new(vec![top, low]);
        (t, v)
    }

    fn d(path: &str, missing: &[&str]) -> Dest {
        Dest {
            path: path.into(),
            missing: missing.iter().map(|s| s.to_string()).collect(),
            parents: Vec::new(),
        }
    }

    /// Without the existing parents' metadata (host-dependent).
    fn bare(mut d: Dest) -> Dest {
        d.parents.clear();
        d
    }

    #[test]
    fn destinations_follow_the_images_symlinks_inside_the_root() {
        let (_t, v) = view();
        let p = |dest: &str, into_dir| bare(plan(&v, dest, into_dir).expect(dest));
        // An existing directory is copied into, slash or not.
        assert_eq!(p("/bin", false), d("/usr/bin/", &[]));
        assert_eq!(p("/bin/", false), d("/usr/bin/", &[]));
        assert_eq!(p("/etc", false), d("/etc/", &[]));
        // A file name under a symlinked directory lands in its target.
        assert_eq!(p("/bin/tool", false), d("/usr/bin/tool", &[]));
        assert_eq!(p("/lnk/f2", false), d("/usr/f2", &[]));
        // Absolute targets and `..` stay inside the root.
        assert_eq!(p("/escape/new", false), d("/etc/new", &[]));
        assert_eq!(p("/usr/../bin", false), d("/usr/bin/", &[]));
        // An existing file is replaced.
        assert_eq!(p("/etc/file", false), d("/etc/file", &[]));
        assert_eq!(p("/", false), d("/", &[]));
    }

    #[test]
    fn missing_directories_are_listed_shallowest_first() {
        let (_t, v) = view();
        let p = |dest: &str, into_dir| bare(plan(&v, dest, into_dir).expect(dest));
        assert_eq!(p("/a/b/f", false), d("/a/b/f", &["/a", "/a/b"]));
        assert_eq!(p("/a/b/", false), d("/a/b/", &["/a", "/a/b"]));
        assert_eq!(
            p("/lnk/src/app", true),
            d("/usr/src/app/", &["/usr/src", "/usr/src/app"])
        );
        assert_eq!(
            p("/bin/x/y", true),
            d("/usr/bin/x/y/", &["/usr/bin/x", "/usr/bin/x/y"])
        );
        assert_eq!(p("/usr", true), d("/usr/", &[]));
        // An empty image: everything is missing.
        let empty = Dest::literal("/opt/app/", false).expect("literal");
        assert_eq!(empty, d("/opt/app/", &["/opt", "/opt/app"]));
    }

    #[test]
    fn non_directories_in_the_way_and_loops_are_errors() {
        let (_t, v) = view();
        let err = plan(&v, "/etc/file/x", false).expect_err("under a file");
        assert!(err.contains("/etc/file is not a directory"), "{err}");
        let err = plan(&v, "/etc/file", true).expect_err("file as a directory");
        assert!(err.contains("not a directory"), "{err}");
        let err = plan(&v, "/loop/x", false).expect_err("loop");
        assert!(err.contains("too many levels"), "{err}");
    }
}
