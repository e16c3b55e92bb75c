//! Can this user mount overlayfs, with `userxattr`, on this snapshot root?
//!
//! The only reliable answer is to try: kernel version, sysctls, LSMs,
//! seccomp profiles of an enclosing container and the file system under the
//! snapshot root all play a part. The probe forks a child that enters a new
//! user and mount namespace (mapping only the caller to 0, no helper
//! binaries), mounts a tiny overlay made under the root, removes a lower
//! directory through it and creates it again, and the parent then checks
//! that overlayfs recorded that as an opaque directory in `user.overlay.*`
//! (without a working `userxattr` the removal fails with EIO). Before that,
//! cheap checks turn the common failures into sentences.

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::remove::remove_tree;
use crate::diff::overlay_form::{OPAQUE_XATTR, get_xattr};
use crate::sandbox::sys;

/// `OVERLAYFS_SUPER_MAGIC` from linux/magic.h.
const OVERLAYFS_MAGIC: i64 = 0x794c_7630;

/// The result of [`probe_overlay`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// An overlay with `userxattr` mounted and behaved.
    Works,
    /// It cannot be used; the text says why and what would fix it.
    Unavailable(String),
}

/// Probes `root` (created if missing). Takes a few milliseconds; callers
/// cache the outcome ([`super::choose`] does).
pub fn probe_overlay(root: &Path) -> ProbeOutcome {
    match probe(root) {
        Ok(()) => ProbeOutcome::Works,
        Err(why) => ProbeOutcome::Unavailable(why),
    }
}

fn probe(root: &Path) -> Result<(), String> {
    std::fs::create_dir_all(root)
        .map_err(|e| format!("cannot create the snapshot root {}: {e}", root.display()))?;
    // f_type's width differs between architectures.
    #[allow(clippy::useless_conversion)]
    let on_overlay =
        rustix::fs::statfs(root).is_ok_and(|fs| i64::from(fs.f_type) == OVERLAYFS_MAGIC);
    if on_overlay {
        return Err(format!(
            "the snapshot root {} is on overlayfs, which cannot hold an overlay upper directory \
             (typical inside a container); put the strata root on a volume or a tmpfs (Linux \
             6.6+ for user xattrs on tmpfs) with --root or STRATA_ROOT",
            root.display()
        ));
    }
    // The same explanation the sandbox gives for disabled user namespaces.
    crate::detect::userns_allowed(Path::new("/proc/sys"))?;
    let dir = make_probe_dir(root)?;
    let result = check_user_xattrs(&dir).and_then(|()| mount_in_userns(&dir));
    // The probe directory holds only files the caller owns.
    let _ = remove_tree(&dir);
    result
}

fn make_probe_dir(root: &Path) -> Result<PathBuf, String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = root.join(format!(".overlay-probe-{}-{nanos}", std::process::id()));
    for sub in ["", "lower", "lower/d", "upper", "work", "merged"] {
        std::fs::create_dir(dir.join(sub))
            .map_err(|e| format!("cannot create {}: {e}", dir.join(sub).display()))?;
    }
    std::fs::write(dir.join("lower/d/f"), b"probe")
        .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    Ok(dir)
}

fn check_user_xattrs(dir: &Path) -> Result<(), String> {
    let target = dir.join("upper");
    match xattr::set(&target, "user.strata.probe", b"1") {
        Ok(()) => {
            let _ = xattr::remove(&target, "user.strata.probe");
            Ok(())
        }
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Err(format!(
            "the file system of {} has no user extended attributes, which overlayfs needs for \
             an unprivileged upper directory; put the strata root on ext4, xfs, btrfs or a tmpfs \
             (Linux 6.6+)",
            dir.parent().unwrap_or(dir).display()
        )),
        Err(e) => Err(format!(
            "cannot set a user xattr on {}: {e}",
            target.display()
        )),
    }
}

/// What the child reports: the step that failed and its errno.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Stage {
    Done = 0,
    Unshare = 1,
    Setgroups = 2,
    UidMap = 3,
    GidMap = 4,
    Private = 5,
    Mount = 6,
    Use = 7,
}

fn cstr(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| format!("{} contains a NUL byte", p.display()))
}

fn mount_in_userns(dir: &Path) -> Result<(), String> {
    // Everything the child needs is built before fork: the child of a
    // multithreaded process may only make system calls.
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let uid_map = format!("0 {uid} 1\n");
    let gid_map = format!("0 {gid} 1\n");
    let opts =
        super::overlay_mount_options(&[dir.join("lower")], &dir.join("upper"), &dir.join("work"))
            .map_err(|e| e.to_string())?;
    let c_opts = CString::new(opts).map_err(|_| "mount options contain NUL".to_string())?;
    let merged = cstr(&dir.join("merged"))?;
    let merged_f = cstr(&dir.join("merged/d/f"))?;
    let merged_d = cstr(&dir.join("merged/d"))?;
    let merged_d_new = cstr(&dir.join("merged/d/new"))?;

    let (read_end, write_end) = sys::pipe().map_err(|e| format!("pipe: {e}"))?;
    let pid = sys::fork();
    if pid < 0 {
        return Err(format!("fork: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        // Only system calls from here on (see `sys::fork`).
        let w = write_end.as_raw_fd();
        let report = |stage: Stage, errno: i32| -> ! {
            let mut msg = [0u8; 5];
            msg[0] = stage as u8;
            msg[1..].copy_from_slice(&errno.to_ne_bytes());
            let _ = sys::write_all(w, &msg);
            sys::exit_now(0)
        };
        let errno = || io::Error::last_os_error().raw_os_error().unwrap_or(0);
        let code = |e: io::Error| e.raw_os_error().unwrap_or(0);
        if sys::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
            report(Stage::Unshare, errno());
        }
        for (file, content, stage) in [
            (c"/proc/self/setgroups", "deny".as_bytes(), Stage::Setgroups),
            (c"/proc/self/uid_map", uid_map.as_bytes(), Stage::UidMap),
            (c"/proc/self/gid_map", gid_map.as_bytes(), Stage::GidMap),
        ] {
            let written = sys::open(file, libc::O_WRONLY | libc::O_CLOEXEC)
                .and_then(|fd| sys::write_all(fd.as_raw_fd(), content));
            if let Err(e) = written {
                report(stage, code(e));
            }
        }
        if sys::make_mounts_private() != 0 {
            report(Stage::Private, errno());
        }
        if sys::mount_raw(
            Some(c"overlay"),
            &merged,
            Some(c"overlay"),
            0,
            Some(&c_opts),
        ) != 0
        {
            report(Stage::Mount, errno());
        }
        if sys::unlink(&merged_f) != 0
            || sys::rmdir(&merged_d) != 0
            || sys::mkdir(&merged_d, 0o755) != 0
        {
            report(Stage::Use, errno());
        }
        if let Err(e) = sys::create(&merged_d_new, libc::O_WRONLY | libc::O_CLOEXEC, 0o644) {
            report(Stage::Use, code(e));
        }
        report(Stage::Done, 0);
    }
    drop(write_end);
    let mut msg = Vec::new();
    let read = std::fs::File::from(read_end).read_to_end(&mut msg);
    let mut status = 0;
    sys::waitpid(pid, &mut status, 0);
    read.map_err(|e| format!("reading the probe's result: {e}"))?;
    let (stage, errno) = match msg.as_slice() {
        [s, e @ ..] if e.len() == 4 => {
            let mut b = [0u8; 4];
            b.copy_from_slice(e);
            (*s, i32::from_ne_bytes(b))
        }
        _ => {
            return Err(format!(
                "the probe child died without a result (status {status})"
            ));
        }
    };
    let err = io::Error::from_raw_os_error(errno);
    match stage {
        0 => {}
        1 => {
            return Err(format!(
                "cannot create a user namespace ({err}); unprivileged user namespaces may be \
                 disabled or blocked by a seccomp profile (inside a container, run it with \
                 --security-opt seccomp=unconfined or a profile that allows unshare)"
            ));
        }
        2..=4 => {
            return Err(format!(
                "cannot write the id map of a new user namespace ({err})"
            ));
        }
        5 => return Err(format!("cannot make the mount namespace private ({err})")),
        6 => {
            let hint = match errno {
                libc::ENODEV => "the kernel has no overlay file system (modprobe overlay)",
                libc::EPERM => {
                    "unprivileged overlay mounts need Linux 5.11 or later and no LSM or seccomp \
                     rule against mount"
                }
                libc::EINVAL => {
                    "the kernel refused the options: `userxattr` needs Linux 5.11+, and the upper \
                     directory cannot be on overlayfs, NFS or another file system overlay does \
                     not support as upper"
                }
                _ => "see dmesg for the overlay driver's message",
            };
            return Err(format!(
                "cannot mount overlayfs in a user namespace ({err}): {hint}"
            ));
        }
        _ => {
            return Err(format!(
                "overlayfs mounted but removing and recreating a directory failed ({err}); the \
                 upper file system does not give overlay working user xattrs"
            ));
        }
    }
    let opaque = get_xattr(&dir.join("upper/d"), OPAQUE_XATTR).map_err(|e| e.to_string())?;
    if opaque.as_deref() != Some(b"y".as_slice()) {
        return Err(
            "overlayfs did not record a recreated directory as opaque in user.overlay.opaque; \
             its diffs would be wrong"
                .into(),
        );
    }
    Ok(())
}
