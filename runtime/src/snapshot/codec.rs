//! Snapshot results crossing the pipe out of the user namespace.
//!
//! The builder runs `prepare`, `diff` and `commit` inside the build's user
//! namespace (`run_in_userns`), whose results come back as bytes. These
//! impls let it write `run_in_userns(&mapping, || snapshotter.diff(&s, &ex))`
//! and get the typed value back.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ActiveSnapshot;
use crate::RootfsSpec;
use crate::diff::Change;
use crate::sandbox::userns::PipeCodec;

impl PipeCodec for Vec<Change> {
    fn encode(&self) -> Vec<u8> {
        // Serializing plain data into memory cannot fail; an empty payload
        // would be rejected by decode rather than mistaken for no changes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    fn decode(bytes: Vec<u8>) -> Option<Self> {
        serde_json::from_slice(&bytes).ok()
    }
}

/// A path as raw bytes.
type RawPath = Vec<u8>;

/// `RootfsSpec::Overlay` as raw paths: (lowers, upper, work).
type RawOverlay = (Vec<RawPath>, RawPath, RawPath);

/// `ActiveSnapshot` as plain serializable data (paths as bytes).
#[derive(Serialize, Deserialize)]
struct Wire {
    key: String,
    dir: Vec<u8>,
    lowers: Vec<Vec<u8>>,
    /// `Some((lowers, upper, work))` for overlay, else the directory.
    overlay: Option<RawOverlay>,
    dir_root: Option<Vec<u8>>,
}

fn bytes(p: &std::path::Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

fn path(b: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(b))
}

impl PipeCodec for ActiveSnapshot {
    fn encode(&self) -> Vec<u8> {
        let (overlay, dir_root) = match &self.rootfs {
            RootfsSpec::Overlay {
                lowers,
                upper,
                work,
            } => (
                Some((
                    lowers.iter().map(|p| bytes(p)).collect(),
                    bytes(upper),
                    bytes(work),
                )),
                None,
            ),
            RootfsSpec::Dir(d) => (None, Some(bytes(d))),
        };
        let wire = Wire {
            key: self.key.clone(),
            dir: bytes(&self.dir),
            lowers: self.lowers.iter().map(|p| bytes(p)).collect(),
            overlay,
            dir_root,
        };
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    fn decode(b: Vec<u8>) -> Option<Self> {
        let w: Wire = serde_json::from_slice(&b).ok()?;
        let rootfs = match (w.overlay, w.dir_root) {
            (Some((lowers, upper, work)), None) => RootfsSpec::Overlay {
                lowers: lowers.into_iter().map(path).collect(),
                upper: path(upper),
                work: path(work),
            },
            (None, Some(d)) => RootfsSpec::Dir(path(d)),
            _ => return None,
        };
        Some(ActiveSnapshot {
            key: w.key,
            dir: path(w.dir),
            lowers: w.lowers.into_iter().map(path).collect(),
            rootfs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{ChangeKind, Entry, EntryType, Timestamp, Xattr};

    #[test]
    fn changes_round_trip_with_non_utf8_paths() {
        let odd = path(b"dir/caf\xe9".to_vec());
        let changes = vec![
            Change {
                path: odd.clone(),
                kind: ChangeKind::Added(Entry {
                    file: EntryType::File {
                        size: 3,
                        source: PathBuf::from("/s/upper").join(&odd),
                    },
                    mode: 0o4755,
                    uid: 1000,
                    gid: 100,
                    mtime: Timestamp { secs: -5, nanos: 7 },
                    xattrs: vec![Xattr {
                        name: b"security.capability".to_vec(),
                        value: vec![0, 1, 255],
                    }],
                }),
            },
            Change {
                path: PathBuf::from("gone"),
                kind: ChangeKind::Deleted,
            },
        ];
        assert_eq!(Vec::<Change>::decode(changes.encode()), Some(changes));
        assert_eq!(Vec::<Change>::decode(b"not json".to_vec()), None);
    }

    #[test]
    fn active_snapshot_round_trips() {
        for rootfs in [
            RootfsSpec::Dir(PathBuf::from("/s/k/rootfs")),
            RootfsSpec::Overlay {
                lowers: vec![PathBuf::from("/s/a/layer"), PathBuf::from("/s/b/layer")],
                upper: PathBuf::from("/s/k/upper"),
                work: PathBuf::from("/s/k/work"),
            },
        ] {
            let a = ActiveSnapshot {
                key: "k".into(),
                dir: PathBuf::from("/s/k"),
                lowers: vec![PathBuf::from("/s/a/layer")],
                rootfs,
            };
            assert_eq!(ActiveSnapshot::decode(a.encode()), Some(a));
        }
    }
}
