//! What a chroot-isolated step finds in its root besides the image: /dev,
//! /proc, /etc/hosts, /etc/resolv.conf, /etc/hostname and its RUN mounts,
//! all placed as plain files because nothing can be mounted, and all taken
//! away again after the step so that none of it reaches the layer.
//!
//! Each target is resolved inside the tree (symlinks of the image stay in
//! it); whatever the image has at that path is moved aside into a stash
//! directory beside the tree and moved back afterwards, and the parent
//! directory's times are restored when the step left its entries as they
//! were. A cache mount's directory is moved in and moved back (steps that
//! use one cache take turns), a bind source is copied in, a secret is
//! written with its mode and owner, a tmpfs is an empty 1777 directory.
//!
//! * /dev: a fresh directory with null, zero, full, random, urandom and tty
//!   made with mknod where the kernel allows it. Where it does not (no
//!   CAP_MKNOD, or a user namespace), they are plain files: null, full and
//!   tty empty, zero a sparse 1 GiB file of zeros, random and urandom 1 MiB
//!   of random bytes. Then the usual fd/stdin/stdout/stderr/ptmx symlinks
//!   and pts and shm (1777) directories.
//! * /proc: a procfs cannot be mounted, so /proc is a directory holding
//!   copies of a few system-wide files of the caller's /proc, taken when the
//!   step starts (cpuinfo, meminfo, …); there is no /proc/self and no
//!   process directories.
//!
//! Restoring runs after every process of the step is dead, so nothing
//! races it; still, a step may have replaced a target's parent by a
//! symlink, so every path is checked component by component (no symlink
//! followed) before anything is removed, and a step that moved a mount point
//! away fails rather than leaving a secret in the layer.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::sandbox::inroot::{self, Created};
use crate::sandbox::run_mounts::{PreparedKind, PreparedMount};
use crate::snapshot::copy::copy_tree;

/// System-wide /proc files copied for the step (relative to /proc).
const PROC_FILES: [&str; 12] = [
    "cpuinfo",
    "meminfo",
    "version",
    "stat",
    "loadavg",
    "uptime",
    "filesystems",
    "cmdline",
    "sys/kernel/osrelease",
    "sys/kernel/ostype",
    "sys/kernel/ngroups_max",
    "sys/kernel/pid_max",
];

/// Device nodes of /dev: name, major, minor.
const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// What to put at a target.
pub(crate) enum Content<'a> {
    /// A regular file with this content, mode and owner.
    File(&'a [u8], u32, u32, u32),
    /// An empty directory with this mode.
    EmptyDir(u32),
    /// A copy of a file or directory tree of the host.
    Copy(&'a Path),
    /// A directory moved in, and moved back to the same place afterwards
    /// (a cache mount); `init` = mode, uid, gid for a fresh one.
    MoveIn(&'a Path, Option<(u32, u32, u32)>),
    /// A hardlink to a host file (the ssh agent socket).
    Link(&'a Path),
    Dev {
        mknod: bool,
    },
    Proc,
}

/// One placed target.
struct Slot {
    /// The target's path in the tree, relative, as placed.
    rel: PathBuf,
    /// Where the image's own object waits meanwhile.
    stashed: Option<PathBuf>,
    /// Where a moved-in directory goes back to.
    move_back: Option<PathBuf>,
}

/// Everything placed for one step; [`Placed::restore`] undoes it.
pub(crate) struct Placed {
    tree: PathBuf,
    stash: PathBuf,
    slots: Vec<Slot>,
    created: Vec<PathBuf>,
    /// Existing parents: (path, atime, mtime, entry names before).
    parents: Vec<(PathBuf, libc::timespec, libc::timespec, Vec<OsString>)>,
}

impl Placed {
    /// Starts placing into `tree`; displaced objects go to `stash` (a new
    /// directory on the tree's file system, outside the tree).
    pub(crate) fn new(tree: &Path, stash: PathBuf) -> Result<Placed, String> {
        fs::create_dir(&stash).map_err(|e| format!("creating {}: {e}", stash.display()))?;
        // Resolved paths come back canonical; so must the tree's be.
        let tree = fs::canonicalize(tree).map_err(|e| format!("{}: {e}", tree.display()))?;
        Ok(Placed {
            tree,
            stash,
            slots: Vec::new(),
            created: Vec::new(),
            parents: Vec::new(),
        })
    }

    /// Places `content` at the in-container path `target`.
    pub(crate) fn place(&mut self, target: &str, content: Content<'_>) -> Result<(), String> {
        let rel = inroot::clean(target);
        let Some((last, parents)) = rel.split_last() else {
            return Err(format!("{target:?} names the root directory"));
        };
        let fd = inroot::open_root(&self.tree)?;
        self.remember_parent(&fd, parents)?;
        let mut created = Created::default();
        let parent = inroot::ensure(&fd, parents, true, &mut created);
        self.created.extend(created.paths);
        let at = parent?.join(last);
        let rel_at = at
            .strip_prefix(&self.tree)
            .map_err(|_| format!("{target} resolves outside the root"))?
            .to_path_buf();
        let stashed = if fs::symlink_metadata(&at).is_ok() {
            let s = self.stash.join(self.slots.len().to_string());
            fs::rename(&at, &s).map_err(|e| format!("moving {} aside: {e}", at.display()))?;
            Some(s)
        } else {
            None
        };
        let move_back = match content {
            Content::MoveIn(src, _) => Some(src.to_path_buf()),
            _ => None,
        };
        let slot = Slot {
            rel: rel_at,
            stashed,
            move_back: None,
        };
        self.slots.push(slot);
        create(&at, content).map_err(|e| format!("placing {target}: {e}"))?;
        if let Some(slot) = self.slots.last_mut() {
            slot.move_back = move_back;
        }
        Ok(())
    }

    /// Records the deepest existing directory on the way to a target,
    /// whose times placing the target changes.
    fn remember_parent(&mut self, fd: &std::os::fd::OwnedFd, rel: &[&str]) -> Result<(), String> {
        let mut k = rel.len();
        let parent = loop {
            if let Some(p) = inroot::resolve(fd, &rel[..k])? {
                break p;
            }
            if k == 0 {
                return Ok(());
            }
            k -= 1;
        };
        if self.parents.iter().any(|(q, ..)| *q == parent) {
            return Ok(());
        }
        let md = fs::symlink_metadata(&parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        let ts = |s: i64, n: i64| libc::timespec {
            tv_sec: s,
            tv_nsec: n,
        };
        let names = entry_names(&parent);
        self.parents.push((
            parent,
            ts(md.atime(), md.atime_nsec()),
            ts(md.mtime(), md.mtime_nsec()),
            names,
        ));
        Ok(())
    }

    /// Takes everything away again, newest first, and moves the image's own
    /// objects back. Call only when no process of the step is left.
    pub(crate) fn restore(mut self) -> Result<(), String> {
        let mut first_err = None;
        for slot in std::mem::take(&mut self.slots).into_iter().rev() {
            if let Err(e) = self.restore_slot(&slot) {
                first_err.get_or_insert(e);
            }
        }
        for p in self.created.iter().rev() {
            // Still empty: ours. Not empty: the step wrote there, which is
            // its change.
            if fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) && real_path(&self.tree, p) {
                let _ = fs::remove_dir(p);
            }
        }
        for (p, a, m, names) in self.parents.iter().rev() {
            if entry_names(p) == *names && real_path(&self.tree, p) {
                set_times(p, *a, *m);
            }
        }
        let _ = fs::remove_dir(&self.stash);
        first_err.map_or(Ok(()), Err)
    }

    fn restore_slot(&self, slot: &Slot) -> Result<(), String> {
        let at = self.tree.join(&slot.rel);
        if !real_path(&self.tree, at.parent().unwrap_or(&self.tree)) {
            return Err(format!(
                "the step replaced a parent directory of /{} (a mount point) by a symlink or \
                 removed it; that is not possible in chroot isolation",
                slot.rel.display()
            ));
        }
        if let Some(back) = &slot.move_back {
            if fs::symlink_metadata(&at).is_ok_and(|m| m.is_dir()) {
                fs::rename(&at, back)
                    .map_err(|e| format!("moving the cache back to {}: {e}", back.display()))?;
            } else {
                return Err(format!(
                    "the step removed the cache mount at /{}; that is not possible in chroot \
                     isolation",
                    slot.rel.display()
                ));
            }
        } else if fs::symlink_metadata(&at).is_ok() {
            crate::sandbox::userns::remove_tree(&at)
                .map_err(|e| format!("removing {}: {e}", at.display()))?;
        }
        if let Some(s) = &slot.stashed {
            fs::rename(s, &at).map_err(|e| format!("restoring {}: {e}", at.display()))?;
        }
        Ok(())
    }
}

/// Whether every component of `path` below `tree` is a real directory
/// (no symlink), so that removing below it cannot leave the tree.
fn real_path(tree: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(tree) else {
        return false;
    };
    let mut cur = tree.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            _ => return false,
        }
    }
    true
}

fn entry_names(dir: &Path) -> Vec<OsString> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn set_times(p: &Path, a: libc::timespec, m: libc::timespec) {
    if let Ok(c) = crate::sandbox::sys::cpath(p) {
        crate::sandbox::sys::set_times_nofollow(&c, a, m);
    }
}

fn io(e: std::io::Error) -> String {
    e.to_string()
}

fn chown(p: &Path, uid: u32, gid: u32) -> Result<(), String> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).map_err(io)
}

fn chmod(p: &Path, mode: u32) -> Result<(), String> {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).map_err(io)
}

/// Creates `content` at `at` (which does not exist).
fn create(at: &Path, content: Content<'_>) -> Result<(), String> {
    match content {
        Content::File(bytes, mode, uid, gid) => {
            fs::write(at, bytes).map_err(io)?;
            chown(at, uid, gid)?;
            chmod(at, mode)
        }
        Content::EmptyDir(mode) => {
            fs::create_dir(at).map_err(io)?;
            chmod(at, mode)
        }
        Content::Copy(src) => copy_tree(src, at).map_err(|e| e.to_string()),
        Content::MoveIn(src, init) => {
            fs::rename(src, at).map_err(|e| format!("moving in {}: {e}", src.display()))?;
            if let Some((mode, uid, gid)) = init {
                chown(at, uid, gid)?;
                chmod(at, mode)?;
            }
            Ok(())
        }
        Content::Link(src) => fs::hard_link(src, at).map_err(|e| {
            format!(
                "not possible in chroot isolation: the ssh agent socket {} cannot be linked into \
                 the step's root ({e}); put it on the same file system as the store",
                src.display()
            )
        }),
        Content::Dev { mknod } => make_dev(at, mknod),
        Content::Proc => make_proc(at),
    }
}

fn make_dev(dev: &Path, mknod: bool) -> Result<(), String> {
    fs::create_dir(dev).map_err(io)?;
    chmod(dev, 0o755)?;
    for (name, major, minor) in DEVICES {
        let p = dev.join(name);
        let made = mknod
            && rustix::fs::mknodat(
                rustix::fs::CWD,
                &p,
                rustix::fs::FileType::CharacterDevice,
                rustix::fs::Mode::from_raw_mode(0o666),
                rustix::fs::makedev(major, minor),
            )
            .is_ok();
        if !made {
            stand_in(&p, name)?;
        }
        chmod(&p, 0o666)?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(name)).map_err(io)?;
    }
    for (name, mode) in [("pts", 0o755), ("shm", 0o1777)] {
        fs::create_dir(dev.join(name)).map_err(io)?;
        chmod(&dev.join(name), mode)?;
    }
    Ok(())
}

/// A plain file standing in for a device node that cannot be made.
fn stand_in(p: &Path, name: &str) -> Result<(), String> {
    let f = fs::File::create(p).map_err(io)?;
    match name {
        "zero" => f.set_len(1 << 30).map_err(io),
        "random" | "urandom" => {
            let mut buf = vec![0u8; 1 << 20];
            crate::sandbox::sys::getrandom(&mut buf).map_err(|e| format!("getrandom: {e}"))?;
            fs::write(p, &buf).map_err(io)
        }
        _ => Ok(()),
    }
}

fn make_proc(proc_dir: &Path) -> Result<(), String> {
    fs::create_dir(proc_dir).map_err(io)?;
    for rel in PROC_FILES {
        let Ok(bytes) = fs::read(Path::new("/proc").join(rel)) else {
            continue;
        };
        let p = proc_dir.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(io)?;
        }
        fs::write(&p, bytes).map_err(io)?;
        chmod(&p, 0o444)?;
    }
    chmod(proc_dir, 0o555)
}

/// The content of a prepared RUN mount, or why chroot isolation cannot
/// give it.
pub(crate) fn mount_content(m: &PreparedMount) -> Result<Content<'_>, String> {
    match &m.kind {
        // A cache mount: its own directory in the store, moved in and back.
        PreparedKind::Bind {
            source,
            init,
            cache: true,
            ..
        } => Ok(Content::MoveIn(source, *init)),
        PreparedKind::Bind { source, .. } => {
            use std::os::unix::fs::FileTypeExt;
            let md =
                fs::symlink_metadata(source).map_err(|e| format!("{}: {e}", source.display()))?;
            if md.file_type().is_socket() {
                Ok(Content::Link(source))
            } else {
                Ok(Content::Copy(source))
            }
        }
        PreparedKind::Layered { layers, source, .. } => match layers.as_slice() {
            [dir] if source.is_empty() => Ok(Content::Copy(dir)),
            _ => Err(
                "not possible in chroot isolation: a bind mount of stacked layers (internal: the \
                 snapshotter should hand over a directory)"
                    .into(),
            ),
        },
        PreparedKind::Tmpfs { .. } => Ok(Content::EmptyDir(0o1777)),
        PreparedKind::Secret {
            value,
            mode,
            uid,
            gid,
        } => Ok(Content::File(&value.0, *mode, *uid, *gid)),
    }
}
