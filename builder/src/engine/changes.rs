//! A step's changes (the runtime's diff) as layer entries (the cache crate's
//! model), one change at a time, following the table in
//! `runtime::diff::Change`'s documentation:
//!
//! * `Added`/`Modified` → an entry of the same kind (file content read from
//!   the snapshot when the tar is written),
//! * `Deleted` → a whiteout,
//! * `Opaque` → the directory plus its opaque marker.
//!
//! A `user.rootlesscontainers` xattr is ownership an unpack under a single id
//! mapping could not apply (see `cache::layer::Record`); it goes back into
//! the header's uid/gid (and a device placeholder back into a device), never
//! into the image as an xattr.

use std::os::unix::ffi::OsStrExt;

use cache::layer::{Content, Entry, EntryKind, ROOTLESS_XATTR, Record};
use runtime::diff::{self, Change, ChangeKind, EntryType};

/// The layer entries for `changes`. Fails on an ownership record that does
/// not decode (a corrupt snapshot), never silently.
pub(crate) fn to_entries(changes: &[Change]) -> Result<Vec<Entry>, String> {
    let mut out = Vec::with_capacity(changes.len() + 1);
    for c in changes {
        match &c.kind {
            ChangeKind::Deleted => out.push(Entry::whiteout(&c.path)),
            ChangeKind::Added(e) | ChangeKind::Modified(e) => out.push(entry(&c.path, e)?),
            ChangeKind::Opaque(e) => {
                out.push(entry(&c.path, e)?);
                out.push(Entry::opaque(&c.path));
            }
        }
    }
    Ok(out)
}

fn entry(path: &std::path::Path, e: &diff::Entry) -> Result<Entry, String> {
    let mut kind = match &e.file {
        EntryType::File { source, .. } => EntryKind::File(Content::Path(source.clone())),
        EntryType::Dir => EntryKind::Dir,
        EntryType::Symlink { target } => EntryKind::Symlink(target.clone()),
        EntryType::Hardlink { target } => EntryKind::Hardlink(target.clone()),
        EntryType::CharDevice { major, minor } => EntryKind::CharDevice {
            major: *major,
            minor: *minor,
        },
        EntryType::BlockDevice { major, minor } => EntryKind::BlockDevice {
            major: *major,
            minor: *minor,
        },
        EntryType::Fifo => EntryKind::Fifo,
    };
    let (mut uid, mut gid) = (e.uid, e.gid);
    let mut xattrs = Vec::with_capacity(e.xattrs.len());
    for x in &e.xattrs {
        if x.name == ROOTLESS_XATTR.as_bytes() {
            let r = Record::decode(&x.value).map_err(|err| format!("{}: {err}", path.display()))?;
            uid = r.uid;
            gid = r.gid;
            if let (Some(mode), Some(rdev)) = (r.mode, r.rdev) {
                let (major, minor) = (libc::major(rdev), libc::minor(rdev));
                match mode & libc::S_IFMT {
                    libc::S_IFCHR => kind = EntryKind::CharDevice { major, minor },
                    libc::S_IFBLK => kind = EntryKind::BlockDevice { major, minor },
                    libc::S_IFIFO => kind = EntryKind::Fifo,
                    _ => {}
                }
            }
            continue;
        }
        let Ok(name) = std::str::from_utf8(&x.name) else {
            return Err(format!(
                "{}: xattr name {:?} is not UTF-8 and cannot go into a tar header",
                path.display(),
                std::ffi::OsStr::from_bytes(&x.name)
            ));
        };
        xattrs.push((name.to_string(), x.value.clone()));
    }
    let mut out = Entry::new(path, kind)
        .mode(e.mode)
        .owner(uid, gid)
        .mtime(e.mtime.secs);
    out.meta.xattrs = xattrs;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::diff::{Timestamp, Xattr};
    use std::path::PathBuf;

    fn meta(file: EntryType) -> diff::Entry {
        diff::Entry {
            file,
            mode: 0o640,
            uid: 1000,
            gid: 1001,
            mtime: Timestamp {
                secs: 1_700_000_000,
                nanos: 5,
            },
            xattrs: vec![],
        }
    }

    #[test]
    fn every_change_kind_maps_one_to_one() {
        let changes = vec![
            Change {
                path: PathBuf::from("a"),
                kind: ChangeKind::Opaque(meta(EntryType::Dir)),
            },
            Change {
                path: PathBuf::from("a/f"),
                kind: ChangeKind::Added(meta(EntryType::File {
                    size: 1,
                    source: PathBuf::from("/snap/upper/a/f"),
                })),
            },
            Change {
                path: PathBuf::from("gone"),
                kind: ChangeKind::Deleted,
            },
            Change {
                path: PathBuf::from("l"),
                kind: ChangeKind::Modified(meta(EntryType::Symlink {
                    target: PathBuf::from("a/f"),
                })),
            },
        ];
        let e = to_entries(&changes).expect("entries");
        assert_eq!(e.len(), 5);
        assert_eq!(e[0].kind, EntryKind::Dir);
        assert_eq!(e[1].kind, EntryKind::Opaque);
        assert_eq!(
            e[2].kind,
            EntryKind::File(Content::Path(PathBuf::from("/snap/upper/a/f")))
        );
        assert_eq!(
            (e[2].meta.mode, e[2].meta.uid, e[2].meta.gid),
            (0o640, 1000, 1001)
        );
        assert_eq!(e[2].meta.mtime, 1_700_000_000);
        assert_eq!(e[3].kind, EntryKind::Whiteout);
        assert_eq!(e[4].kind, EntryKind::Symlink(PathBuf::from("a/f")));
    }

    #[test]
    fn ownership_records_become_header_ids() {
        let mut m = meta(EntryType::File {
            size: 0,
            source: PathBuf::from("/s/dev"),
        });
        let rdev = libc::makedev(1, 3);
        m.xattrs = vec![
            Xattr {
                name: ROOTLESS_XATTR.as_bytes().to_vec(),
                value: Record {
                    uid: 7,
                    gid: 8,
                    mode: Some(libc::S_IFCHR | 0o666),
                    rdev: Some(rdev),
                }
                .encode(),
            },
            Xattr {
                name: b"user.keep".to_vec(),
                value: b"v".to_vec(),
            },
        ];
        let e = to_entries(&[Change {
            path: PathBuf::from("dev/null"),
            kind: ChangeKind::Added(m),
        }])
        .expect("entries");
        assert_eq!((e[0].meta.uid, e[0].meta.gid), (7, 8));
        assert_eq!(e[0].kind, EntryKind::CharDevice { major: 1, minor: 3 });
        assert_eq!(e[0].meta.xattrs, vec![("user.keep".into(), b"v".to_vec())]);
    }
}
