//! A file layer's diff_id, known before anything is written.
//!
//! A COPY/ADD/WORKDIR layer directory is written from entries whose
//! metadata is all decided beforehand; only the files' bytes come from the
//! disk. So the tar that `write_dir` will make of the directory can be
//! made from the entries themselves ([`FileLayer::dir_entries`]) and hashed
//! without writing a file ([`FileLayer::predict`]). Two things follow
//! (`super::commit::Executor::commit_files`):
//!
//! * the same files made again (`--no-cache`, or a COPY under a changed
//!   step) find `snapshots/layer-<diff_id>` and write nothing;
//! * a new layer is not read back to be hashed when the write provably
//!   applied everything the entries say (`FileLayer::write` reports it: no
//!   xattr, owner or device node left out, no default ACL adding xattrs)
//!   and no source file changed between the prediction and the write
//!   ([`Sources`]). Otherwise the directory itself is hashed, as before.
//!
//! The prediction and `write_dir` must agree byte for byte; the tests below
//! compare them on a context with every kind of entry.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use cache::digest::Digest;
use cache::layer::{Content, Entry, EntryKind};

use super::commit::{FileLayer, dir_tar_options};
use super::dest::DirMeta;
use crate::context::select::StatKey;

impl FileLayer {
    /// Clamps every mtime later than `epoch` (`SOURCE_DATE_EPOCH`) to it,
    /// before writing: the directory then needs no clamping walk.
    pub(super) fn clamp_mtimes(&mut self, epoch: i64) {
        for e in &mut self.entries {
            e.meta.mtime = e.meta.mtime.min(epoch);
        }
        for p in &mut self.parents {
            p.mtime = p.mtime.min(epoch);
        }
    }

    /// The entries of the tar that the directory [`FileLayer::write`]
    /// makes will hold, as `write_dir` reads them back: the entries with
    /// the metadata the disk keeps (a symlink is 0777 with no xattrs; the
    /// xattrs `write_dir` skips are dropped), plus every parent directory
    /// the write creates (the image's metadata for the existing ones,
    /// unpack's 0755, root, time 0 for the others). `None` when it cannot
    /// be known before writing: ADD's archives, a path with `..`.
    pub(super) fn dir_entries(&self) -> Option<Vec<Entry>> {
        if !self.archives.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(self.entries.len());
        let mut named = HashSet::new();
        for e in &self.entries {
            // The root itself is not written (unpack skips it).
            let Some(path) = cache::layer::clean_path(&e.path).ok()? else {
                continue;
            };
            let mut e = e.clone();
            e.path = path.clone();
            if matches!(e.kind, EntryKind::Symlink(_)) {
                e.meta.mode = 0o777;
                e.meta.xattrs.clear();
            }
            e.meta.xattrs.retain(|(k, _)| kept_xattr(k));
            named.insert(path);
            out.push(e);
        }
        let metas: HashMap<PathBuf, &DirMeta> = self
            .parents
            .iter()
            .filter_map(|m| Some((cache::layer::clean_path(Path::new(&m.path)).ok()??, m)))
            .collect();
        let mut implied = BTreeSet::new();
        for p in &named {
            for a in p.ancestors().skip(1) {
                if !a.as_os_str().is_empty() && !named.contains(a) {
                    implied.insert(a.to_path_buf());
                }
            }
        }
        for a in implied {
            out.push(match metas.get(&a) {
                Some(m) => Entry::dir(a)
                    .mode(m.mode)
                    .owner(m.uid, m.gid)
                    .mtime(m.mtime),
                None => Entry::dir(a).mode(0o755).owner(0, 0).mtime(0),
            });
        }
        Some(out)
    }

    /// The diff_id and tar size the layer directory of these files will
    /// have (mtimes already clamped), computed from the sources without
    /// writing anything: the tar of [`FileLayer::dir_entries`] streamed
    /// through SHA-256. `None` when it cannot be known, or a source cannot
    /// be read here (the write, in the layer namespace, may still read it).
    pub(super) fn predict(&self) -> Option<(Digest, u64)> {
        let entries = self.dir_entries()?;
        let d = cache::layer::write_layer(entries, &dir_tar_options(), std::io::sink()).ok()?;
        Some((d.diff_id, d.size))
    }

    /// Whether every xattr is a `user.` one: those read back exactly as
    /// written. Others (`security.capability`, converted by the kernel in
    /// a user namespace) keep the prediction for finding an existing layer,
    /// where the digest proves equality, but not for naming a new one.
    pub(super) fn only_user_xattrs(&self) -> bool {
        self.entries
            .iter()
            .all(|e| e.meta.xattrs.iter().all(|(k, _)| k.starts_with("user.")))
    }
}

/// Whether `write_dir` puts an xattr of a written file into the tar (it
/// skips overlay bookkeeping, ownership records and SELinux labels).
fn kept_xattr(name: &str) -> bool {
    name != cache::layer::ROOTLESS_XATTR
        && !name.starts_with("user.overlay.")
        && !name.starts_with("trusted.overlay.")
        && name != "security.selinux"
}

/// Whether `dir` has a default ACL, which gives every file written in it
/// an ACL xattr the entries do not have.
pub(super) fn has_default_acl(dir: &Path) -> bool {
    matches!(xattr::get(dir, "system.posix_acl_default"), Ok(Some(_)))
}

/// The stat of every source file of a layer, taken before the prediction
/// reads them: if all are the same after the write, the write copied the
/// bytes the prediction hashed.
#[derive(Debug)]
pub struct Sources(Vec<(PathBuf, Option<StatKey>)>);

impl Sources {
    pub(super) fn of(files: &FileLayer) -> Sources {
        Sources(
            files
                .entries
                .iter()
                .filter_map(|e| match &e.kind {
                    EntryKind::File(Content::Path(p)) => Some((p.clone(), stat(p))),
                    _ => None,
                })
                .collect(),
        )
    }

    /// Whether no source file changed (size, times, inode, mode) since
    /// [`Sources::of`].
    pub(super) fn unchanged(&self) -> bool {
        self.0
            .iter()
            .all(|(p, before)| before.is_some() && stat(p) == *before)
    }
}

fn stat(p: &Path) -> Option<StatKey> {
    std::fs::symlink_metadata(p).ok().map(|m| StatKey::of(&m))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::context::checksum::Overrides;
    use crate::context::dockerignore::Matcher;
    use crate::context::select::{CopySpec, select};
    use crate::ops::archive::ArchiveAdd;
    use crate::ops::commit::seal;
    use crate::ops::file::{copy_entries, with_dirs};

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A context with every kind a COPY writes: nested and odd-mode
    /// directories, setuid/read-only files, an empty file, a long name
    /// (PAX), symlinks, a hardlink pair, xattrs on a file and a directory.
    fn context() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir_all(p.join("src/deep/er")).unwrap();
        std::fs::create_dir_all(p.join("shared")).unwrap();
        std::fs::write(p.join("src/a.txt"), "alpha\n").unwrap();
        std::fs::write(p.join("src/deep/er/b.bin"), vec![7u8; 70_000]).unwrap();
        std::fs::write(p.join("src/empty"), "").unwrap();
        std::fs::write(p.join("src/suid"), "#!/bin/sh\n").unwrap();
        std::fs::write(p.join("src/ro"), "read only").unwrap();
        std::fs::write(p.join(format!("src/{}", "n".repeat(120))), "long").unwrap();
        std::os::unix::fs::symlink("a.txt", p.join("src/link")).unwrap();
        std::os::unix::fs::symlink("/nowhere/at/all", p.join("src/dangling")).unwrap();
        std::fs::hard_link(p.join("src/a.txt"), p.join("src/deep/hard")).unwrap();
        xattr::set(p.join("src/a.txt"), "user.note", b"kept").unwrap();
        xattr::set(p.join("src/deep"), "user.dir", b"d").unwrap();
        chmod(&p.join("src/suid"), 0o4755);
        chmod(&p.join("src/ro"), 0o444);
        chmod(&p.join("src/deep/er"), 0o2750);
        chmod(&p.join("shared"), 0o1777);
        d
    }

    /// `COPY src shared <<motd /srv/app/` into an image that has `/srv`
    /// (0750, a 2020 mtime) but not `/srv/app`.
    fn layer(ctx: &Path, ov: &Overrides) -> FileLayer {
        let spec = CopySpec::new(vec!["src".into(), "shared".into()], "/srv/app/");
        let sel = select(ctx, &Matcher::default(), &spec).unwrap();
        let inline = [frontend::InlineFile {
            path: "motd".into(),
            content: "hello\n".into(),
            mode: 0o640,
        }];
        let (entries, _) = copy_entries(ctx, &sel, ov, false, false, &inline, "/srv/app/").unwrap();
        FileLayer {
            entries: with_dirs(entries, &["/srv/app".into()], ov.uid, ov.gid),
            archives: Vec::new(),
            parents: vec![DirMeta {
                path: "srv".into(),
                mode: 0o750,
                uid: 0,
                gid: 0,
                mtime: 1_600_000_000,
            }],
        }
    }

    /// What `commit_files` predicts before writing is byte for byte what
    /// the written directory makes, with and without an epoch and with
    /// `--chmod`, and the write reports that it applied everything.
    #[test]
    fn predicted_diff_id_is_the_written_directorys() {
        let ctx = context();
        let chmod = Overrides {
            chmod: Some(crate::context::chmod::Chmod::Octal(0o751)),
            ..Default::default()
        };
        for (ov, epoch) in [
            (Overrides::default(), None),
            (Overrides::default(), Some(1_000_000)),
            (chmod, None),
        ] {
            let mut files = layer(ctx.path(), &ov);
            if let Some(e) = epoch {
                files.clamp_mtimes(e);
            }
            let predicted = files.predict().expect("a prediction");
            let out = tempfile::tempdir().unwrap();
            files.write(out.path()).unwrap();
            // Sealed without the epoch: the clamped entries need none.
            let written = seal(out.path(), None).unwrap();
            assert_eq!(predicted, written, "{ov:?} epoch {epoch:?}");
            // An unclamped write, sealed with the epoch, is the same layer.
            if let Some(e) = epoch {
                let again = tempfile::tempdir().unwrap();
                layer(ctx.path(), &ov).write(again.path()).unwrap();
                assert_eq!(seal(again.path(), Some(e)).unwrap(), predicted);
                let _ = runtime::sandbox::userns::remove_tree(again.path());
            }
            // Read-only directories stay removable for the tempdir.
            let _ = runtime::sandbox::userns::remove_tree(out.path());
        }
    }

    /// A different file gives a different prediction, and an ADD archive
    /// gives none (its members are only known by unpacking it).
    #[test]
    fn prediction_follows_content_and_skips_archives() {
        let ctx = context();
        let before = layer(ctx.path(), &Overrides::default()).predict();
        std::fs::write(ctx.path().join("src/deep/er/b.bin"), vec![8u8; 70_000]).unwrap();
        let after = layer(ctx.path(), &Overrides::default()).predict();
        assert!(before.is_some() && after.is_some());
        assert_ne!(before, after);
        let mut l = layer(ctx.path(), &Overrides::default());
        l.archives.push(ArchiveAdd {
            path: ctx.path().join("src/a.txt"),
            into: PathBuf::from("srv/app"),
            owner: None,
        });
        assert_eq!(l.predict(), None);
    }

    /// A source rewritten between the prediction and the write is noticed,
    /// so the new layer is hashed from its directory instead.
    #[test]
    fn a_source_changed_after_the_prediction_is_noticed() {
        let ctx = context();
        let files = layer(ctx.path(), &Overrides::default());
        let sources = Sources::of(&files);
        assert!(sources.unchanged());
        std::fs::write(ctx.path().join("src/ro2"), "x").unwrap();
        assert!(sources.unchanged(), "a file the layer does not hold");
        let f = ctx.path().join("src/deep/er/b.bin");
        std::fs::write(&f, vec![9u8; 70_001]).unwrap();
        assert!(!sources.unchanged());
    }
}
