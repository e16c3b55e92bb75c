//! The build context as `RUN --mount=type=bind` (with no `from=`) shows
//! it: without what `.dockerignore` excludes, as BuildKit's local source
//! sends it. With no ignore rules the context directory is bound as it is;
//! otherwise a view is made once per build in the store's scratch space —
//! directories created, files hard-linked (copied across filesystems),
//! symlinks recreated. A read-write bind is still an overlay over it, so
//! nothing written in the step reaches the user's files.

use std::path::Path;

use anyhow::Context as _;

use super::dockerignore::Matcher;
use super::select::{CopySpec, EntryKind, select};

/// Builds the filtered view of `context` under `scratch`.
pub fn filtered_view(
    context: &Path,
    ignore: &Matcher,
    scratch: &Path,
) -> anyhow::Result<tempfile::TempDir> {
    let view = tempfile::Builder::new()
        .prefix("context-view-")
        .tempdir_in(scratch)
        .with_context(|| format!("making a context view in {}", scratch.display()))?;
    let sel = select(context, ignore, &CopySpec::new(vec![".".into()], "/"))?;
    for e in &sel.entries {
        if e.rel.is_empty() {
            continue;
        }
        let to = view.path().join(&e.rel);
        let from = context.join(&e.rel);
        let made = match &e.kind {
            EntryKind::Dir => std::fs::create_dir_all(&to),
            EntryKind::Symlink(target) => std::os::unix::fs::symlink(target, &to),
            EntryKind::Fifo => rustix::fs::mknodat(
                rustix::fs::CWD,
                &to,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(e.host_mode),
                0,
            )
            .map_err(std::io::Error::from),
            EntryKind::File => {
                std::fs::hard_link(&from, &to).or_else(|_| std::fs::copy(&from, &to).map(|_| ()))
            }
        };
        made.with_context(|| format!("adding {} to the context view", e.rel))?;
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_files_are_left_out_and_exceptions_kept() {
        let ctx = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        for (p, c) in [
            ("a.txt", "a"),
            ("x.log", "x"),
            ("keep.log", "k"),
            ("d/s.txt", "s"),
        ] {
            let f = ctx.path().join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, c).unwrap();
        }
        std::os::unix::fs::symlink("a.txt", ctx.path().join("link")).unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(ctx.path().join("pipe"))
            .status()
            .unwrap();
        assert!(fifo.success());
        let ignore = Matcher::new(&["*.log", "!keep.log"]).unwrap();
        let view = filtered_view(ctx.path(), &ignore, scratch.path()).unwrap();
        let v = view.path();
        assert_eq!(std::fs::read_to_string(v.join("a.txt")).unwrap(), "a");
        assert_eq!(std::fs::read_to_string(v.join("d/s.txt")).unwrap(), "s");
        assert!(v.join("keep.log").exists());
        assert!(!v.join("x.log").exists());
        assert_eq!(
            std::fs::read_link(v.join("link")).unwrap(),
            Path::new("a.txt")
        );
        use std::os::unix::fs::FileTypeExt as _;
        let pipe = std::fs::symlink_metadata(v.join("pipe")).unwrap();
        assert!(pipe.file_type().is_fifo());
    }
}
