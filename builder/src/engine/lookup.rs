//! Looking a destination path up in a stack of layer directories (the merged
//! view overlayfs would show), following symlinks the way a process in the
//! container would, but never out of the root.
//!
//! COPY and WORKDIR need this: Docker copies `file` *into* `/dest` when
//! `/dest` is an existing directory, creates only the parents that are
//! missing, and writes through symlinked parents (`/lib -> usr/lib` on
//! Debian): a layer entry `lib/x` over a symlink `lib` would replace the
//! symlink with a directory and break the image. Runs inside the user
//! namespace (layer directories may be readable only there).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use runtime::diff::LowerView;

/// What a resolved path is in the merged view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    Missing,
    Dir,
    /// A file, device, or (when not following the last component) a symlink.
    Other,
}

/// Symlink hops before giving up, as Linux's `MAXSYMLINKS`.
const MAX_HOPS: usize = 40;

/// Resolves `path` (absolute or relative to the root; `..` stays inside the
/// root) in `view`. Returns the path with every symlink resolved, relative to
/// the root, and what it is. Components after the first missing one are
/// taken literally. `follow_last`: resolve a symlink in the last component
/// too (a destination directory), else report it as [`Found::Other`].
pub(crate) fn resolve(
    view: &LowerView,
    path: &Path,
    follow_last: bool,
) -> Result<(PathBuf, Found), String> {
    let mut queue: VecDeque<OsString> = normal_components(path);
    let mut cur = PathBuf::new();
    let mut hops = 0;
    while let Some(name) = queue.pop_front() {
        if name == ".." {
            cur.pop();
            continue;
        }
        let candidate = cur.join(&name);
        let last = queue.is_empty();
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
        if ft.is_symlink() && (!last || follow_last) {
            hops += 1;
            if hops > MAX_HOPS {
                return Err(format!(
                    "/{}: too many levels of symbolic links",
                    candidate.display()
                ));
            }
            let target = std::fs::read_link(&entry.path)
                .map_err(|e| format!("reading symlink /{}: {e}", candidate.display()))?;
            if target.is_absolute() {
                cur = PathBuf::new();
            }
            for c in normal_components(&target).into_iter().rev() {
                queue.push_front(c);
            }
            continue;
        }
        if ft.is_dir() {
            cur = candidate;
            continue;
        }
        if last {
            return Ok((candidate, Found::Other));
        }
        return Err(format!(
            "/{} is not a directory, so /{} cannot be created under it",
            candidate.display(),
            path.display()
        ));
    }
    Ok((cur, Found::Dir))
}

/// `.` dropped, `..` kept (as the literal name `..`), root dropped.
fn normal_components(p: &Path) -> VecDeque<OsString> {
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
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[test]
    fn follows_symlinks_inside_the_root_and_reports_missing_tails() {
        let t = tempfile::tempdir().expect("tmp");
        let low = t.path().join("low");
        let top = t.path().join("top");
        fs::create_dir_all(low.join("usr/lib")).expect("mkdir");
        fs::write(low.join("file"), "x").expect("write");
        fs::create_dir_all(&top).expect("mkdir");
        symlink("usr/lib", top.join("lib")).expect("symlink");
        symlink("/../../usr", top.join("escape")).expect("symlink");
        let view = LowerView::new(vec![top, low]);

        let r = |p: &str, f| resolve(&view, Path::new(p), f).expect(p);
        assert_eq!(
            r("/lib/x/y", true),
            (PathBuf::from("usr/lib/x/y"), Found::Missing)
        );
        assert_eq!(r("/lib", true), (PathBuf::from("usr/lib"), Found::Dir));
        assert_eq!(r("/lib", false), (PathBuf::from("lib"), Found::Other));
        assert_eq!(r("/file", true), (PathBuf::from("file"), Found::Other));
        assert_eq!(r("/", true), (PathBuf::new(), Found::Dir));
        assert_eq!(
            r("/escape/lib", true),
            (PathBuf::from("usr/lib"), Found::Dir)
        );
        assert_eq!(
            r("/usr/../lib", true),
            (PathBuf::from("usr/lib"), Found::Dir)
        );
        assert!(resolve(&view, Path::new("/file/sub"), true).is_err());
    }
}
