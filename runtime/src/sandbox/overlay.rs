//! Mounting kernel overlayfs from inside the sandbox's user namespace.
//!
//! `userxattr` is mandatory (without it the mount succeeds but degrades and
//! later renames/opaque dirs fail with EIO). mount(2) takes all options in one
//! page, which limits the number of lower layers to a few dozen with store
//! paths; beyond that the new mount API (fsopen + one `lowerdir+` per layer,
//! Linux >= 6.8) has no such limit.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::sandbox::mounts::mount;
use crate::sandbox::sys;

/// Options that fit in mount(2)'s one-page data, with a margin.
const MAX_LEGACY_OPTIONS: usize = 4000;

#[derive(Debug)]
pub(crate) struct OverlaySpec {
    /// Topmost first.
    pub lowers: Vec<PathBuf>,
    /// `None`: a read-only union of the lowers (needs at least two).
    pub upper_work: Option<(PathBuf, PathBuf)>,
    /// Skip the syncfs at unmount (see `volatile.rs`).
    pub volatile: bool,
}

impl OverlaySpec {
    /// Checks the paths: overlayfs' option syntax reserves `:`, `,`, `\`.
    pub(crate) fn new(
        lowers: Vec<PathBuf>,
        upper_work: Option<(&Path, &Path)>,
        volatile: bool,
    ) -> Result<Self, String> {
        let uw: Vec<&Path> = upper_work.map(|(u, w)| vec![u, w]).unwrap_or_default();
        for p in lowers.iter().map(PathBuf::as_path).chain(uw) {
            let s = p
                .to_str()
                .ok_or_else(|| format!("overlay path {} is not UTF-8", p.display()))?;
            if s.contains([':', ',', '\\']) {
                return Err(format!(
                    "overlay path {s} contains ':', ',' or '\\', which overlayfs cannot take"
                ));
            }
        }
        Ok(OverlaySpec {
            lowers,
            upper_work: upper_work.map(|(u, w)| (u.to_path_buf(), w.to_path_buf())),
            volatile,
        })
    }

    fn legacy_options(&self) -> String {
        let lower = self
            .lowers
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        match &self.upper_work {
            Some((upper, work)) => format!(
                "lowerdir={lower},upperdir={},workdir={},userxattr{}",
                upper.display(),
                work.display(),
                if self.volatile { ",volatile" } else { "" }
            ),
            None => format!("lowerdir={lower},userxattr"),
        }
    }

    pub(crate) fn mount(&self, target: &Path) -> Result<(), String> {
        let opts = self.legacy_options();
        if opts.len() < MAX_LEGACY_OPTIONS {
            return mount(Some("overlay"), target, Some("overlay"), 0, Some(&opts));
        }
        self.mount_with_fsopen(target).map_err(|e| {
            format!(
                "{e} (mounting {} lower layers needs the new mount API's `lowerdir+`, Linux >= 6.8; \
                 on older kernels use shorter store paths or fewer layers)",
                self.lowers.len()
            )
        })
    }

    fn mount_with_fsopen(&self, target: &Path) -> Result<(), String> {
        const FSOPEN_CLOEXEC: libc::c_uint = 1;
        const FSCONFIG_SET_FLAG: libc::c_uint = 0;
        const FSCONFIG_SET_STRING: libc::c_uint = 1;
        const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
        const FSMOUNT_CLOEXEC: libc::c_uint = 1;
        const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

        // SAFETY: constant NUL-terminated name.
        let fd = unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) };
        if fd < 0 {
            return Err(sys::errno_msg("fsopen(overlay)"));
        }
        // SAFETY: a fresh descriptor we own.
        let fs = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let config =
            |cmd: libc::c_uint, key: Option<&str>, value: Option<&Path>| -> Result<(), String> {
                let k = key.map(sys::cstr).transpose()?;
                let v = value.map(sys::cpath).transpose()?;
                let ptr = |c: &Option<std::ffi::CString>| {
                    c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())
                };
                // SAFETY: valid descriptor and NUL-terminated strings or null.
                let r = unsafe {
                    libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, ptr(&k), ptr(&v), 0)
                };
                if r != 0 {
                    let base = sys::errno_msg(format!(
                        "fsconfig {} {}",
                        key.unwrap_or("create"),
                        value.map(|p| p.display().to_string()).unwrap_or_default()
                    ));
                    return Err(with_kernel_log(&fs, base));
                }
                Ok(())
            };
        for l in &self.lowers {
            config(FSCONFIG_SET_STRING, Some("lowerdir+"), Some(l))?;
        }
        if let Some((upper, work)) = &self.upper_work {
            config(FSCONFIG_SET_STRING, Some("upperdir"), Some(upper))?;
            config(FSCONFIG_SET_STRING, Some("workdir"), Some(work))?;
        }
        config(FSCONFIG_SET_FLAG, Some("userxattr"), None)?;
        if self.volatile && self.upper_work.is_some() {
            config(FSCONFIG_SET_FLAG, Some("volatile"), None)?;
        }
        config(FSCONFIG_CMD_CREATE, None, None)?;
        // SAFETY: valid descriptor.
        let m = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) };
        if m < 0 {
            return Err(with_kernel_log(&fs, sys::errno_msg("fsmount(overlay)")));
        }
        // SAFETY: a fresh descriptor we own.
        let mnt = unsafe { OwnedFd::from_raw_fd(m as i32) };
        let t = sys::cpath(target)?;
        // SAFETY: valid descriptors and paths.
        let r = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                mnt.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        if r != 0 {
            return Err(sys::errno_msg(format!(
                "move_mount of the overlay to {}",
                target.display()
            )));
        }
        Ok(())
    }
}

/// Appends the messages the kernel queued on the fs context ("e overlay: …").
fn with_kernel_log(fs: &OwnedFd, base: String) -> String {
    let mut out = base;
    let mut buf = [0u8; 512];
    for _ in 0..8 {
        // SAFETY: reading into a local buffer.
        let n = unsafe { libc::read(fs.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.push_str("; kernel: ");
        out.push_str(String::from_utf8_lossy(&buf[..n as usize]).trim());
    }
    out
}
