//! Mounting kernel overlayfs from inside the sandbox's user namespace.
//!
//! `userxattr` is mandatory (without it the mount succeeds but degrades and
//! later renames/opaque dirs fail with EIO). mount(2) takes all options in one
//! page, which limits the number of lower layers to a few dozen with store
//! paths; beyond that the new mount API (fsopen + one `lowerdir+` per layer,
//! Linux >= 6.8) has no such limit.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::sandbox::sys::{self, mount};

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
        use rustix::mount::{
            FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, fsconfig_create,
            fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
        };
        let fs = fsopen(c"overlay", FsOpenFlags::FSOPEN_CLOEXEC)
            .map_err(|e| format!("fsopen(overlay): {}", std::io::Error::from(e)))?;
        let failed = |what: String, e: rustix::io::Errno| {
            with_kernel_log(&fs, format!("{what}: {}", std::io::Error::from(e)))
        };
        let set = |key: &str, value: &Path| {
            fsconfig_set_string(&fs, key, value)
                .map_err(|e| failed(format!("fsconfig {key} {}", value.display()), e))
        };
        let flag = |key: &str| {
            fsconfig_set_flag(&fs, key).map_err(|e| failed(format!("fsconfig {key} "), e))
        };
        for l in &self.lowers {
            set("lowerdir+", l)?;
        }
        if let Some((upper, work)) = &self.upper_work {
            set("upperdir", upper)?;
            set("workdir", work)?;
        }
        flag("userxattr")?;
        if self.volatile && self.upper_work.is_some() {
            flag("volatile")?;
        }
        fsconfig_create(&fs).map_err(|e| failed("fsconfig create ".into(), e))?;
        let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
            .map_err(|e| failed("fsmount(overlay)".into(), e))?;
        move_mount(
            &mnt,
            c"",
            rustix::fs::CWD,
            target,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|e| {
            format!(
                "move_mount of the overlay to {}: {}",
                target.display(),
                std::io::Error::from(e)
            )
        })
    }
}

/// Appends the messages the kernel queued on the fs context ("e overlay: …").
fn with_kernel_log(fs: &OwnedFd, base: String) -> String {
    let mut out = base;
    let mut buf = [0u8; 512];
    for _ in 0..8 {
        let n = match sys::read_some(fs.as_raw_fd(), &mut buf) {
            Ok(n) if n > 0 => n,
            _ => break,
        };
        out.push_str("; kernel: ");
        out.push_str(String::from_utf8_lossy(&buf[..n]).trim());
    }
    out
}
