//! Unpacking a layer onto a directory, safely and without privilege.
//!
//! Every path is resolved from a file descriptor of the destination with
//! `openat2(RESOLVE_BENEATH)`, so no entry can reach outside it: `..`
//! components and hardlink targets with `..` are refused when the tar is
//! parsed, and a symlink that leads outside (`l -> /etc`, then `l/passwd`)
//! makes the kernel refuse the lookup. Symlinks that stay inside (such as
//! Debian's `lib -> usr/lib`) are followed as Docker does. The final
//! component is never followed: it is created with `*at` calls on the
//! parent and `O_NOFOLLOW`/`O_EXCL`.
//!
//! Whiteouts are either applied to what is already in the destination (to
//! stack layers into one directory) or kept in overlayfs form (a 0/0 char
//! device and `user.overlay.opaque=y`) so the result can be a lower dir.
//!
//! Ownership is applied with `chown` where the process may (inside a user
//! namespace with a full subuid mapping); where it may not (EPERM/EINVAL),
//! or when asked never to try, it is recorded in `user.rootlesscontainers`
//! (see `ownership.rs`), and device nodes that cannot be created become
//! empty placeholder files with the node recorded in the same xattr.

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{
    AtFlags, Dir, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;

use super::compress::Compression;
use super::entry::{Content, Entry, EntryKind, Meta};
use super::error::{LayerError, Result};
use super::ownership::{ROOTLESS_XATTR, Record};
use super::read::for_each_entry;
use super::whiteout::OVERLAY_OPAQUE_XATTR;
use crate::digest::Digest;

/// What to do with whiteouts and opaque markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhiteoutMode {
    /// Delete what they name from the destination (stacking layers).
    #[default]
    Apply,
    /// Keep them as overlayfs does: a 0/0 character device for a whiteout,
    /// `user.overlay.opaque=y` on an opaque directory (mount with
    /// `userxattr`).
    Overlay,
}

/// How to apply ownership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OwnershipMode {
    /// `chown` to the entry's ids; if the kernel refuses (EPERM, or EINVAL
    /// for an id outside the user namespace's mapping), record them in the
    /// `user.rootlesscontainers` xattr instead.
    #[default]
    Chown,
    /// Never `chown`: files stay owned by the current user (who stands for
    /// root) and any other owner is recorded in the xattr.
    Record,
}

/// How to unpack.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnpackOptions {
    pub whiteouts: WhiteoutMode,
    pub ownership: OwnershipMode,
}

/// What an unpack did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    pub compression: Compression,
    /// sha256 of the decompressed tar, computed while unpacking.
    pub diff_id: Digest,
    pub uncompressed_size: u64,
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Device nodes and fifos created as such.
    pub special: u64,
    pub whiteouts: u64,
    pub opaques: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
    /// Entries whose ownership went into a `user.rootlesscontainers` record.
    pub ownership_records: u64,
    /// Device nodes or fifos that became placeholder files (with a record).
    pub placeholders: u64,
    /// Symlinks whose ownership could neither be applied nor recorded
    /// (Linux allows no user xattrs on symlinks).
    pub ownership_lost: u64,
    /// xattrs not applied: not permitted (`trusted.*`, `security.*`
    /// unprivileged) or refused on purpose (`user.overlay.*` and
    /// `user.rootlesscontainers` from the tar could forge overlay state or
    /// ownership).
    pub xattrs_skipped: u64,
}

fn to_io(e: Errno) -> io::Error {
    io::Error::from(e)
}

fn is_dir(st: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}

fn ts(secs: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Removes `name` (a directory tree) under `dirfd`, making directories
/// writable as needed (we own them; their mode may forbid us).
fn remove_tree(dirfd: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dirfd, name, flags, Mode::empty()) {
        Err(Errno::ACCESS) => {
            rustix::fs::chmodat(dirfd, name, Mode::from_raw_mode(0o700), AtFlags::empty())?;
            rustix::fs::openat(dirfd, name, flags, Mode::empty())?
        }
        r => r?,
    };
    let st = rustix::fs::fstat(&fd)?;
    if st.st_mode & 0o700 != 0o700 {
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700))?;
    }
    let mut children = Vec::new();
    {
        let mut dir = Dir::read_from(&fd)?;
        while let Some(ent) = dir.read() {
            let ent = ent?;
            let n = ent.file_name().to_bytes();
            if n == b"." || n == b".." {
                continue;
            }
            children.push((ent.file_name().to_owned(), ent.file_type()));
        }
    }
    for (child, ft) in children {
        let child_os = OsStr::from_bytes(child.as_bytes());
        let dir = match ft {
            FileType::Directory => true,
            FileType::Unknown => {
                is_dir(&rustix::fs::statat(&fd, &child, AtFlags::SYMLINK_NOFOLLOW)?)
            }
            _ => false,
        };
        if dir {
            remove_tree(fd.as_fd(), child_os)?;
        } else {
            rustix::fs::unlinkat(&fd, &child, AtFlags::empty())?;
        }
    }
    drop(fd);
    rustix::fs::unlinkat(dirfd, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

struct Unpacker<'a> {
    root: OwnedFd,
    dest: &'a Path,
    opts: UnpackOptions,
    /// Paths this layer created (and their ancestors): a whiteout or opaque
    /// marker only hides what the layers *below* had.
    touched: HashSet<PathBuf>,
    /// (path, mode, mtime) applied at the end, deepest first: directories
    /// stay writable while their children are written, and their mtimes
    /// are set after the last child changes them.
    fixups: Vec<(PathBuf, u32, Option<i64>)>,
    have_openat2: bool,
    buf: Vec<u8>,
    stats: UnpackStats,
    /// The next file's content as an open file ([`unpack_entries`]):
    /// copied file to file, which the kernel does without a round trip
    /// through this process (`copy_file_range`, a reflink where the
    /// filesystem has them).
    source_file: Option<std::fs::File>,
}

impl Unpacker<'_> {
    fn io(&self, action: &'static str, rel: &Path, e: impl Into<io::Error>) -> LayerError {
        LayerError::io(action, self.dest.join(rel), e.into())
    }

    fn touch(&mut self, rel: &Path) {
        let mut p = Some(rel);
        while let Some(cur) = p {
            if cur.as_os_str().is_empty() || !self.touched.insert(cur.to_path_buf()) {
                break;
            }
            p = cur.parent();
        }
    }

    /// Opens directory `rel` beneath the root. With `create`, missing
    /// directories are made (mode 0755, owned by the current user).
    fn open_dir(&mut self, entry: &Path, rel: &Path, create: bool) -> Result<Option<OwnedFd>> {
        match self.resolve(entry, rel) {
            Ok(fd) => return Ok(Some(fd)),
            Err(Errno::NOENT) if create => {}
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(self.resolve_error(entry, rel, e)),
        }
        // Create the missing components one by one, each resolved afresh
        // from the root so every step gets the same containment checks.
        let mut cur = PathBuf::new();
        let mut fd = self
            .resolve(entry, Path::new(""))
            .map_err(|e| self.io("opening", rel, e))?;
        for c in rel.components() {
            let Component::Normal(name) = c else { continue };
            cur.push(name);
            match self.resolve(entry, &cur) {
                Ok(next) => fd = next,
                Err(Errno::NOENT) => {
                    match self.with_writable(&cur, || {
                        rustix::fs::mkdirat(&fd, name, Mode::from_raw_mode(0o755))
                    }) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(self.io("creating directory", &cur, e)),
                    }
                    // A parent the layer does not describe: 0755 and the
                    // epoch as its time, so the tree is the same on every
                    // run (an entry for it, applied later, wins).
                    self.fixups.push((cur.clone(), 0o755, Some(0)));
                    self.touch(&cur);
                    fd = self
                        .resolve(entry, &cur)
                        .map_err(|e| self.resolve_error(entry, &cur, e))?;
                }
                Err(e) => return Err(self.resolve_error(entry, &cur, e)),
            }
        }
        Ok(Some(fd))
    }

    fn resolve_error(&self, entry: &Path, rel: &Path, e: Errno) -> LayerError {
        match e {
            Errno::XDEV | Errno::LOOP => LayerError::escape(
                entry,
                format!(
                    "`{}` goes through a symlink that leads outside the root",
                    rel.display()
                ),
            ),
            Errno::NOTDIR => {
                LayerError::invalid(entry, format!("`{}` is not a directory", rel.display()))
            }
            other => self.io("resolving", rel, other),
        }
    }

    /// `openat2(root, rel, O_PATH|O_DIRECTORY, RESOLVE_BENEATH)`; where
    /// openat2 is unavailable (old kernels, seccomp filters), a walk that
    /// refuses every symlinked directory.
    fn resolve(&mut self, _entry: &Path, rel: &Path) -> std::result::Result<OwnedFd, Errno> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let rel_or_dot: &Path = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        if self.have_openat2 {
            match rustix::fs::openat2(
                &self.root,
                rel_or_dot,
                flags,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
            ) {
                Err(Errno::NOSYS) | Err(Errno::PERM) => self.have_openat2 = false,
                Err(Errno::AGAIN) => {
                    // A concurrent rename elsewhere; retrying is safe.
                    return self.resolve(_entry, rel);
                }
                r => return r,
            }
        }
        let mut fd = rustix::fs::openat(&self.root, ".", flags, Mode::empty())?;
        for c in rel.components() {
            let Component::Normal(name) = c else { continue };
            fd = rustix::fs::openat(&fd, name, flags | OFlags::NOFOLLOW, Mode::empty())
                .map_err(|e| if e == Errno::NOTDIR { Errno::LOOP } else { e })?;
        }
        Ok(fd)
    }

    /// Runs `op`; if it fails with EACCES because the directory `rel`'s
    /// parent (ours, from an earlier layer) is read-only, makes that
    /// parent writable, queues its mode for restoring and retries.
    fn with_writable<T>(
        &mut self,
        rel: &Path,
        op: impl Fn() -> std::result::Result<T, Errno>,
    ) -> std::result::Result<T, Errno> {
        match op() {
            Err(Errno::ACCESS) => {}
            r => return r,
        }
        let parent = rel.parent().unwrap_or(Path::new(""));
        let p = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        let fd = rustix::fs::openat2(
            &self.root,
            p,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )?;
        let st = rustix::fs::fstat(&fd)?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode((st.st_mode | 0o700) & 0o7777))?;
        self.fixups
            .push((parent.to_path_buf(), st.st_mode & 0o7777, None));
        op()
    }

    /// Removes whatever is at `name` in `dirfd`, except a directory when
    /// `keep_dir` (dir over dir keeps the contents). Returns whether a
    /// directory was kept.
    fn clear(&mut self, dirfd: &OwnedFd, rel: &Path, name: &OsStr, keep_dir: bool) -> Result<bool> {
        let st = match rustix::fs::statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(self.io("inspecting", rel, e)),
        };
        if is_dir(&st) {
            if keep_dir {
                return Ok(true);
            }
            let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
            remove_tree(dirfd.as_fd(), name)
                .or_else(|e| {
                    if e.raw_os_error() == Some(libc::EACCES) {
                        self.with_writable(rel, || {
                            remove_tree(dirfd.as_fd(), name)
                                .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))
                        })
                        .map_err(to_io)
                    } else {
                        Err(e)
                    }
                })
                .map_err(|e| self.io("removing", &parent.join(name), e))?;
        } else {
            self.with_writable(rel, || rustix::fs::unlinkat(dirfd, name, AtFlags::empty()))
                .map_err(|e| self.io("removing", rel, e))?;
        }
        Ok(false)
    }

    /// Sets ownership on an open file or directory: chown, or a record.
    /// `node` is the (st_mode, rdev) of a device placeholder.
    fn own_fd(
        &mut self,
        fd: &OwnedFd,
        rel: &Path,
        meta: &Meta,
        node: Option<(u32, u64)>,
    ) -> Result<()> {
        let mut record = node.is_some();
        match self.opts.ownership {
            OwnershipMode::Chown => {
                match rustix::fs::fchown(
                    fd,
                    Some(Uid::from_raw(meta.uid)),
                    Some(Gid::from_raw(meta.gid)),
                ) {
                    Ok(()) => {}
                    Err(Errno::PERM) | Err(Errno::INVAL) => record = true,
                    Err(e) => return Err(self.io("changing owner of", rel, e)),
                }
            }
            OwnershipMode::Record => record |= meta.uid != 0 || meta.gid != 0,
        }
        if record {
            let r = Record {
                uid: meta.uid,
                gid: meta.gid,
                mode: node.map(|n| n.0),
                rdev: node.map(|n| n.1),
            };
            rustix::fs::fsetxattr(fd, ROOTLESS_XATTR, &r.encode(), XattrFlags::empty())
                .map_err(|e| self.io("recording ownership (user.rootlesscontainers) on", rel, e))?;
            self.stats.ownership_records += 1;
        }
        Ok(())
    }

    fn set_xattrs(&mut self, fd: &OwnedFd, rel: &Path, meta: &Meta) -> Result<()> {
        for (name, value) in &meta.xattrs {
            if name == ROOTLESS_XATTR
                || name.starts_with("user.overlay.")
                || name.starts_with("trusted.overlay.")
            {
                self.stats.xattrs_skipped += 1;
                continue;
            }
            match rustix::fs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(Errno::PERM | Errno::NOTSUP | Errno::ACCESS | Errno::INVAL) => {
                    self.stats.xattrs_skipped += 1
                }
                Err(e) => return Err(self.io("setting xattr on", rel, e)),
            }
        }
        Ok(())
    }

    fn split<'p>(&self, rel: &'p Path) -> Result<(&'p Path, &'p OsStr)> {
        let name = rel
            .file_name()
            .ok_or_else(|| LayerError::invalid(rel, "has no file name"))?;
        Ok((rel.parent().unwrap_or(Path::new("")), name))
    }

    fn entry(&mut self, e: Entry, content: &mut dyn Read) -> Result<()> {
        let rel = e.path.clone();
        match &e.kind {
            EntryKind::Whiteout => return self.whiteout(&rel),
            EntryKind::Opaque => return self.opaque(&rel),
            _ => {}
        }
        let (parent, name) = self.split(&rel)?;
        let dirfd = self
            .open_dir(&rel, parent, true)?
            .ok_or_else(|| LayerError::invalid(&rel, "parent directory vanished"))?;
        let kept_dir = self.clear(&dirfd, &rel, name, matches!(e.kind, EntryKind::Dir))?;
        match &e.kind {
            EntryKind::File(_) => self.file(&dirfd, &rel, name, &e.meta, content)?,
            EntryKind::Dir => {
                if !kept_dir {
                    self.with_writable(&rel, || {
                        rustix::fs::mkdirat(&dirfd, name, Mode::from_raw_mode(0o700))
                    })
                    .map_err(|err| self.io("creating directory", &rel, err))?;
                }
                let open = || {
                    rustix::fs::openat(
                        &dirfd,
                        name,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                };
                let fd = match open() {
                    Err(Errno::ACCESS) => {
                        rustix::fs::chmodat(
                            &dirfd,
                            name,
                            Mode::from_raw_mode(0o700),
                            AtFlags::empty(),
                        )
                        .map_err(|err| self.io("opening directory", &rel, err))?;
                        open()
                    }
                    r => r,
                }
                .map_err(|err| self.io("opening directory", &rel, err))?;
                self.own_fd(&fd, &rel, &e.meta, None)?;
                self.set_xattrs(&fd, &rel, &e.meta)?;
                // Writable for us until the end, whatever the final mode.
                rustix::fs::fchmod(&fd, Mode::from_raw_mode((e.meta.mode | 0o700) & 0o7777))
                    .map_err(|err| self.io("changing mode of", &rel, err))?;
                self.fixups
                    .push((rel.clone(), e.meta.mode, Some(e.meta.mtime)));
                self.stats.dirs += 1;
            }
            EntryKind::Symlink(target) => {
                self.with_writable(&rel, || {
                    rustix::fs::symlinkat(target.as_path(), &dirfd, name)
                })
                .map_err(|err| self.io("creating symlink", &rel, err))?;
                let owned = match self.opts.ownership {
                    OwnershipMode::Chown => rustix::fs::chownat(
                        &dirfd,
                        name,
                        Some(Uid::from_raw(e.meta.uid)),
                        Some(Gid::from_raw(e.meta.gid)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .is_ok(),
                    OwnershipMode::Record => e.meta.uid == 0 && e.meta.gid == 0,
                };
                if !owned {
                    self.stats.ownership_lost += 1;
                }
                rustix::fs::utimensat(&dirfd, name, &ts(e.meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|err| self.io("setting times of", &rel, err))?;
                self.stats.symlinks += 1;
            }
            EntryKind::Hardlink(target) => self.hardlink(&dirfd, &rel, name, target)?,
            EntryKind::CharDevice { major, minor } => {
                let dev = rustix::fs::makedev(*major, *minor);
                self.special(&dirfd, &rel, name, &e.meta, FileType::CharacterDevice, dev)?
            }
            EntryKind::BlockDevice { major, minor } => {
                let dev = rustix::fs::makedev(*major, *minor);
                self.special(&dirfd, &rel, name, &e.meta, FileType::BlockDevice, dev)?
            }
            EntryKind::Fifo => self.special(&dirfd, &rel, name, &e.meta, FileType::Fifo, 0)?,
            EntryKind::Whiteout | EntryKind::Opaque => {}
        }
        self.touch(&rel);
        Ok(())
    }

    fn create_file(&mut self, dirfd: &OwnedFd, rel: &Path, name: &OsStr) -> Result<OwnedFd> {
        self.with_writable(rel, || {
            rustix::fs::openat(
                dirfd,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        })
        .map_err(|e| self.io("creating", rel, e))
    }

    /// Ownership, mode, xattrs and time of a regular file, in that order:
    /// chown clears setuid/setgid, so the mode comes after it.
    fn finish_file(
        &mut self,
        fd: &OwnedFd,
        rel: &Path,
        meta: &Meta,
        node: Option<(u32, u64)>,
    ) -> Result<()> {
        self.own_fd(fd, rel, meta, node)?;
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode & 0o7777))
            .map_err(|e| self.io("changing mode of", rel, e))?;
        self.set_xattrs(fd, rel, meta)?;
        rustix::fs::futimens(fd, &ts(meta.mtime)).map_err(|e| self.io("setting times of", rel, e))
    }

    fn file(
        &mut self,
        dirfd: &OwnedFd,
        rel: &Path,
        name: &OsStr,
        meta: &Meta,
        content: &mut dyn Read,
    ) -> Result<()> {
        let fd = self.create_file(dirfd, rel, name)?;
        let mut f = std::fs::File::from(fd);
        if let Some(mut src) = self.source_file.take() {
            let n = io::copy(&mut src, &mut f)
                .map_err(|e| LayerError::io("copying into", self.dest.join(rel), e))?;
            self.stats.bytes += n;
            let fd = OwnedFd::from(f);
            self.finish_file(&fd, rel, meta, None)?;
            self.stats.files += 1;
            return Ok(());
        }
        loop {
            let n = match content.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LayerError::Stream(e)),
            };
            f.write_all(&self.buf[..n])
                .map_err(|e| LayerError::io("writing", self.dest.join(rel), e))?;
            self.stats.bytes += n as u64;
        }
        let fd = OwnedFd::from(f);
        self.finish_file(&fd, rel, meta, None)?;
        self.stats.files += 1;
        Ok(())
    }

    fn special(
        &mut self,
        dirfd: &OwnedFd,
        rel: &Path,
        name: &OsStr,
        meta: &Meta,
        ft: FileType,
        dev: u64,
    ) -> Result<()> {
        let perm = Mode::from_raw_mode(meta.mode & 0o7777);
        let made = self.with_writable(rel, || rustix::fs::mknodat(dirfd, name, ft, perm, dev));
        let usable = match made {
            Ok(()) => {
                // No user xattrs on device nodes or fifos: if the owner
                // cannot be applied for real, fall back to a placeholder.
                let owned = match self.opts.ownership {
                    OwnershipMode::Chown => rustix::fs::chownat(
                        dirfd,
                        name,
                        Some(Uid::from_raw(meta.uid)),
                        Some(Gid::from_raw(meta.gid)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .is_ok(),
                    OwnershipMode::Record => meta.uid == 0 && meta.gid == 0,
                };
                if !owned {
                    rustix::fs::unlinkat(dirfd, name, AtFlags::empty())
                        .map_err(|e| self.io("removing", rel, e))?;
                }
                owned
            }
            Err(Errno::PERM) => false,
            Err(e) => return Err(self.io("creating device node", rel, e)),
        };
        if usable {
            // Mode again: mknod applies the umask.
            // (chmod does not open the node, so this is safe on devices.)
            rustix::fs::chmodat(dirfd, name, perm, AtFlags::empty())
                .map_err(|e| self.io("changing mode of", rel, e))?;
            rustix::fs::utimensat(dirfd, name, &ts(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| self.io("setting times of", rel, e))?;
            self.stats.special += 1;
            return Ok(());
        }
        let fd = self.create_file(dirfd, rel, name)?;
        let type_bits = match ft {
            FileType::CharacterDevice => libc::S_IFCHR,
            FileType::BlockDevice => libc::S_IFBLK,
            _ => libc::S_IFIFO,
        };
        let node = (type_bits | (meta.mode & 0o7777), dev);
        self.finish_file(&fd, rel, meta, Some(node))?;
        self.stats.placeholders += 1;
        Ok(())
    }

    fn hardlink(&mut self, dirfd: &OwnedFd, rel: &Path, name: &OsStr, target: &Path) -> Result<()> {
        if target == rel {
            return Err(LayerError::invalid(rel, "hardlink to itself"));
        }
        let (tparent, tname) = self.split(target)?;
        let tdir = self.open_dir(rel, tparent, false)?.ok_or_else(|| {
            LayerError::invalid(
                rel,
                format!("hardlink target `{}` does not exist", target.display()),
            )
        })?;
        match rustix::fs::statat(&tdir, tname, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if is_dir(&st) => {
                return Err(LayerError::invalid(
                    rel,
                    format!("hardlink target `{}` is a directory", target.display()),
                ));
            }
            Ok(_) => {}
            Err(Errno::NOENT) => {
                return Err(LayerError::invalid(
                    rel,
                    format!("hardlink target `{}` does not exist", target.display()),
                ));
            }
            Err(e) => return Err(self.io("inspecting", target, e)),
        }
        self.with_writable(rel, || {
            rustix::fs::linkat(&tdir, tname, dirfd, name, AtFlags::empty())
        })
        .map_err(|e| self.io("creating hardlink", rel, e))?;
        self.stats.hardlinks += 1;
        Ok(())
    }

    fn whiteout(&mut self, rel: &Path) -> Result<()> {
        self.stats.whiteouts += 1;
        let (parent, name) = self.split(rel)?;
        match self.opts.whiteouts {
            WhiteoutMode::Apply => {
                if self.touched.contains(rel) {
                    // Deletes only what lower layers had; this layer's own
                    // entry at the same path stays.
                    return Ok(());
                }
                if let Some(dirfd) = self.open_dir(rel, parent, false)? {
                    self.clear(&dirfd, rel, name, false)?;
                }
            }
            WhiteoutMode::Overlay => {
                let dirfd = self
                    .open_dir(rel, parent, true)?
                    .ok_or_else(|| LayerError::invalid(rel, "parent directory vanished"))?;
                self.clear(&dirfd, rel, name, false)?;
                let made = self.with_writable(rel, || {
                    rustix::fs::mknodat(
                        &dirfd,
                        name,
                        FileType::CharacterDevice,
                        Mode::empty(),
                        rustix::fs::makedev(0, 0),
                    )
                });
                match made {
                    // overlayfs refuses 0/0 devices (a store on a
                    // container's root): the xattr form instead.
                    Err(Errno::PERM) => self
                        .with_writable(rel, || xattr_whiteout(&dirfd, name))
                        .map_err(|e| self.io("creating whiteout file", rel, e))?,
                    other => other.map_err(|e| self.io("creating whiteout device", rel, e))?,
                }
                self.touch(rel);
            }
        }
        Ok(())
    }

    fn opaque(&mut self, rel: &Path) -> Result<()> {
        self.stats.opaques += 1;
        match self.opts.whiteouts {
            WhiteoutMode::Apply => {
                if let Some(fd) = self.open_dir(rel, rel, false)? {
                    self.hide_lower(&fd, rel)?;
                }
            }
            WhiteoutMode::Overlay => {
                if !rel.as_os_str().is_empty() {
                    let (parent, name) = self.split(rel)?;
                    let dirfd = self
                        .open_dir(rel, parent, true)?
                        .ok_or_else(|| LayerError::invalid(rel, "parent directory vanished"))?;
                    if !self.clear(&dirfd, rel, name, true)? {
                        self.with_writable(rel, || {
                            rustix::fs::mkdirat(&dirfd, name, Mode::from_raw_mode(0o755))
                        })
                        .map_err(|e| self.io("creating directory", rel, e))?;
                    }
                    self.touch(rel);
                }
                let p: &Path = if rel.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    rel
                };
                let fd = rustix::fs::openat2(
                    &self.root,
                    p,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
                )
                .map_err(|e| self.resolve_error(rel, rel, e))?;
                rustix::fs::fsetxattr(&fd, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())
                    .map_err(|e| self.io("marking opaque (user.overlay.opaque) ", rel, e))?;
            }
        }
        Ok(())
    }

    /// Removes everything under directory `rel` that this layer did not
    /// create (an opaque marker hides all of the lower layers' contents).
    fn hide_lower(&mut self, fd: &OwnedFd, rel: &Path) -> Result<()> {
        let rd = rustix::fs::openat(
            fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.io("opening directory", rel, e))?;
        let mut names: Vec<(CString, FileType)> = Vec::new();
        {
            let mut dir = Dir::read_from(&rd).map_err(|e| self.io("listing", rel, e))?;
            while let Some(ent) = dir.read() {
                let ent = ent.map_err(|e| self.io("listing", rel, e))?;
                let n = ent.file_name().to_bytes();
                if n != b"." && n != b".." {
                    names.push((ent.file_name().to_owned(), ent.file_type()));
                }
            }
        }
        for (n, _) in names {
            let child = rel.join(OsStr::from_bytes(n.as_bytes()));
            let name = OsStr::from_bytes(n.as_bytes());
            if self.touched.contains(&child) {
                let st = rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| self.io("inspecting", &child, e))?;
                if is_dir(&st) {
                    let sub = rustix::fs::openat(
                        fd,
                        name,
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| self.io("opening directory", &child, e))?;
                    self.hide_lower(&sub, &child)?;
                }
            } else {
                self.clear(fd, &child, name, false)?;
            }
        }
        Ok(())
    }

    /// Final directory modes and times, deepest first.
    fn apply_fixups(&mut self) -> Result<()> {
        let mut fixups = std::mem::take(&mut self.fixups);
        fixups.sort_by_key(|(p, _, _)| std::cmp::Reverse(p.components().count()));
        for (rel, mode, mtime) in fixups {
            let p: &Path = if rel.as_os_str().is_empty() {
                Path::new(".")
            } else {
                &rel
            };
            let fd = match rustix::fs::openat2(
                &self.root,
                p,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
            ) {
                Ok(fd) => fd,
                // Replaced by a non-directory or removed later in the layer.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => return Err(self.io("opening directory", &rel, e)),
            };
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o7777))
                .map_err(|e| self.io("changing mode of", &rel, e))?;
            if let Some(t) = mtime {
                rustix::fs::futimens(&fd, &ts(t))
                    .map_err(|e| self.io("setting times of", &rel, e))?;
            }
        }
        Ok(())
    }
}

fn open_root(dest: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        dest,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| LayerError::io("opening destination", dest, e.into()))
}

impl<'a> Unpacker<'a> {
    fn new(root: OwnedFd, dest: &'a Path, opts: &UnpackOptions) -> Unpacker<'a> {
        Unpacker {
            root,
            dest,
            opts: *opts,
            touched: HashSet::new(),
            fixups: Vec::new(),
            have_openat2: true,
            buf: vec![0; 256 * 1024],
            source_file: None,
            stats: UnpackStats {
                compression: Compression::None,
                diff_id: Digest::of(b""),
                uncompressed_size: 0,
                entries: 0,
                files: 0,
                dirs: 0,
                symlinks: 0,
                hardlinks: 0,
                special: 0,
                whiteouts: 0,
                opaques: 0,
                bytes: 0,
                ownership_records: 0,
                placeholders: 0,
                ownership_lost: 0,
                xattrs_skipped: 0,
            },
        }
    }
}

/// Writes `entries` onto `dest` exactly as [`unpack`] writes a tar holding
/// them: the directory form of a layer made from files (COPY, WORKDIR),
/// with no tar in between. Entries are applied in layer order (parents
/// first); a file's bytes are read from its [`Content`] as it is written.
/// The stats' digest fields are left empty (no tar was read).
pub fn unpack_entries(
    entries: Vec<Entry>,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats> {
    unpack_entries_at(entries, open_root(dest)?, dest, opts)
}

/// [`unpack_entries`] onto an already opened directory (`label` names it
/// in errors): for a process that has since changed its root, so that the
/// entries' source paths resolve in the new root and the destination is
/// the one opened before.
pub fn unpack_entries_at(
    mut entries: Vec<Entry>,
    root: OwnedFd,
    label: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats> {
    let mut cleaned = Vec::with_capacity(entries.len());
    for mut e in entries.drain(..) {
        match super::path::clean(&e.path).map_err(|why| LayerError::invalid(&e.path, why))? {
            Some(p) => e.path = p,
            None => continue,
        }
        cleaned.push(e);
    }
    cleaned.sort_by(|a, b| super::path::layer_order(&a.path, &b.path));
    let mut u = Unpacker::new(root, label, opts);
    for e in cleaned {
        u.stats.entries += 1;
        match &e.kind {
            EntryKind::File(Content::Path(p)) => {
                let f = std::fs::File::open(p).map_err(|err| LayerError::io("opening", p, err))?;
                u.source_file = Some(f);
                let r = u.entry(e.clone(), &mut io::empty());
                u.source_file = None;
                r?;
            }
            EntryKind::File(Content::Bytes(b)) => {
                let b = b.clone();
                u.entry(e, &mut &b[..])?;
            }
            _ => u.entry(e, &mut io::empty())?,
        }
    }
    u.apply_fixups()?;
    Ok(u.stats)
}

/// [`unpack`], passing every entry through `map` first: ADD of a local
/// archive, whose members take the `--chown` owner and the build's mtime
/// rule. Streams like [`unpack`]: memory holds one buffer whatever the
/// archive holds.
pub fn unpack_mapped<R: Read>(
    blob: R,
    dest: &Path,
    opts: &UnpackOptions,
    map: &mut dyn FnMut(&mut Entry),
) -> Result<UnpackStats> {
    let mut u = Unpacker::new(open_root(dest)?, dest, opts);
    let summary = for_each_entry(blob, |mut e, content| {
        map(&mut e);
        u.entry(e, content)
    })?;
    u.apply_fixups()?;
    let mut stats = u.stats;
    stats.diff_id = summary.diff_id;
    stats.uncompressed_size = summary.uncompressed_size;
    stats.entries = summary.entries;
    Ok(stats)
}

/// Unpacks the layer blob read from `blob` (gzip, zstd or plain, detected
/// from its first bytes) onto `dest`, which must exist.
///
/// On an error the destination may hold part of the layer, never anything
/// outside `dest`; callers unpack into a fresh snapshot directory and throw
/// it away on failure.
pub fn unpack<R: Read>(blob: R, dest: &Path, opts: &UnpackOptions) -> Result<UnpackStats> {
    let mut u = Unpacker::new(open_root(dest)?, dest, opts);
    let summary = for_each_entry(blob, |e, content| u.entry(e, content))?;
    u.apply_fixups()?;
    let mut stats = u.stats;
    stats.compression = summary.compression;
    stats.diff_id = summary.diff_id;
    stats.uncompressed_size = summary.uncompressed_size;
    stats.entries = summary.entries;
    Ok(stats)
}

/// An empty file marked `user.overlay.whiteout`: the whiteout form that
/// works where a 0/0 character device cannot be created.
fn xattr_whiteout(dirfd: &OwnedFd, name: &std::ffi::OsStr) -> std::result::Result<(), Errno> {
    let fd = rustix::fs::openat(
        dirfd,
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::fsetxattr(
        &fd,
        super::whiteout::OVERLAY_WHITEOUT_XATTR,
        b"y",
        XattrFlags::empty(),
    )
}
