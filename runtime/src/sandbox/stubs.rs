//! Mount points the sandbox needs in the rootfs, created so that they never
//! become part of a layer.
//!
//! A step needs `/proc`, `/dev`, `/sys`, `/etc/hosts`, `/etc/resolv.conf`,
//! `/etc/hostname` and its RUN mount targets to exist. An image may lack them,
//! and creating them in the merged overlay would put them (and copied-up
//! parents like `/etc`) into the upper dir, i.e. into the layer.
//!
//! * Overlay rootfs: the stubs go into a small extra *bottom* lower layer
//!   private to the step. Lower layers supply entries only where the image has
//!   none, and a directory's attributes come from the topmost layer that has
//!   it, so the image's `/etc` keeps its mode and owner while `/etc/hosts`
//!   appears. Nothing is written to the upper dir.
//! * Dir rootfs: the stubs are created in the tree (confined to it), and after
//!   the step every stub that is still empty is removed and the parents'
//!   timestamps restored, so a metadata-comparing differ sees no change.
//!
//! [`sandbox_mount_points`] lists the candidates, for a differ that wants to
//! double-check.

use std::fs;
use std::path::{Path, PathBuf};

use crate::sandbox::inroot::{self, Created};
use crate::sandbox::run_mounts::{RunMount, mount_targets};
use crate::sandbox::sys;

/// A path (absolute, inside the rootfs) the sandbox mounts over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPoint {
    pub path: String,
    pub dir: bool,
}

/// Fixed mount points of every sandbox.
const FIXED: [(&str, bool); 6] = [
    ("/dev", true),
    ("/proc", true),
    ("/sys", true),
    ("/etc/hosts", false),
    ("/etc/resolv.conf", false),
    ("/etc/hostname", false),
];

/// Every path the sandbox mounts over for a step with these RUN mounts. With
/// the overlay rootfs none of them reaches the upper dir unless the step
/// itself writes there; with a Dir rootfs the sandbox removes the ones it
/// created. A differ may exclude these paths as a second line of defence.
pub fn sandbox_mount_points(mounts: &[RunMount]) -> Vec<MountPoint> {
    let mut out: Vec<MountPoint> = FIXED
        .iter()
        .map(|(p, d)| MountPoint {
            path: (*p).into(),
            dir: *d,
        })
        .collect();
    for (t, dir) in mount_targets(mounts) {
        out.push(MountPoint {
            path: format!("/{}", inroot::clean(&t).join("/")),
            dir,
        });
    }
    out
}

/// Creates the stub layer for an overlay rootfs in the empty dir `layer`.
pub(crate) fn build_stub_layer(layer: &Path, points: &[MountPoint]) -> Result<(), String> {
    for p in points {
        let rel = inroot::clean(&p.path);
        if rel.is_empty() {
            continue;
        }
        let full = rel.iter().fold(layer.to_path_buf(), |acc, c| acc.join(c));
        let dir = if p.dir {
            full.as_path()
        } else {
            full.parent().unwrap_or(layer)
        };
        fs::create_dir_all(dir).map_err(|e| format!("creating stub {}: {e}", dir.display()))?;
        if !p.dir && !full.exists() {
            fs::File::create(&full)
                .map_err(|e| format!("creating stub {}: {e}", full.display()))?;
        }
    }
    Ok(())
}

/// Stubs created in a Dir rootfs, to remove after the step.
#[derive(Debug, Default)]
pub(crate) struct DirStubs {
    created: Vec<PathBuf>,
    /// Pre-existing parents whose times creating a stub changed, with their
    /// entry names before the step.
    parents: Vec<(
        PathBuf,
        libc::timespec,
        libc::timespec,
        Vec<std::ffi::OsString>,
    )>,
}

fn times_of(p: &Path) -> Option<(libc::timespec, libc::timespec)> {
    let c = sys::cpath(p).ok()?;
    let st = sys::lstat(&c).ok()?;
    Some((
        libc::timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec,
        },
    ))
}

fn entry_names(dir: &Path) -> Vec<std::ffi::OsString> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

pub(crate) fn create_in_dir(root: &Path, points: &[MountPoint]) -> Result<DirStubs, String> {
    let fd = inroot::open_root(root)?;
    let mut stubs = DirStubs::default();
    for p in points {
        let rel = inroot::clean(&p.path);
        if rel.is_empty() || inroot::resolve(&fd, &rel)?.is_some() {
            continue;
        }
        // Remember the times of the deepest existing ancestor before touching it.
        let mut k = rel.len() - 1;
        let parent = loop {
            if let Some(p) = inroot::resolve(&fd, &rel[..k])? {
                break p;
            }
            k -= 1;
        };
        if let Some((a, m)) = times_of(&parent)
            && !stubs.parents.iter().any(|(q, ..)| *q == parent)
        {
            let names = entry_names(&parent);
            stubs.parents.push((parent, a, m, names));
        }
        let mut created = Created::default();
        let res = inroot::ensure(&fd, &rel, p.dir, &mut created);
        stubs.created.extend(created.paths);
        res?;
    }
    Ok(stubs)
}

impl DirStubs {
    /// Removes stubs that are still empty (deepest first), then restores the
    /// parents' times. Best effort: a stub the step filled stays, as it
    /// should (the step wrote there).
    pub(crate) fn remove(self) {
        for p in self.created.iter().rev() {
            match fs::symlink_metadata(p) {
                Ok(m) if m.is_dir() => {
                    let _ = fs::remove_dir(p);
                }
                Ok(m) if m.is_file() && m.len() == 0 => {
                    let _ = fs::remove_file(p);
                }
                _ => {}
            }
        }
        for (p, a, m, names) in self.parents.iter().rev() {
            // Restore only when the directory holds what it held before: if
            // the step added or removed entries, the new mtime is its change.
            if entry_names(p) != *names {
                continue;
            }
            if let Ok(c) = sys::cpath(p) {
                sys::set_times_nofollow(&c, *a, *m);
            }
        }
    }
}
