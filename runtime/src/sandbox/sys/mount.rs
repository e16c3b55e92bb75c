//! Mounts. Each call acts only on the caller's mount namespace; the
//! sandbox makes every mount inside a private one that dies with its pid 1.

use std::ffi::{CStr, CString};
use std::io;

use super::*;

fn opt_c(s: Option<&str>) -> Result<Option<CString>, String> {
    s.map(cstr).transpose()
}

/// `mount(2)`; `None` passes a null pointer (a bind or remount has no
/// source type, most mounts no data).
pub fn mount(
    src: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), String> {
    let (s, f, d) = (opt_c(src)?, opt_c(fstype)?, opt_c(data)?);
    let t = cpath(target)?;
    if mount_raw(s.as_deref(), &t, f.as_deref(), flags, d.as_deref()) != 0 {
        return Err(errno_msg(format!(
            "mount {} on {} (type {})",
            src.unwrap_or("none"),
            target.display(),
            fstype.unwrap_or("bind")
        )));
    }
    Ok(())
}

/// `mount(2)` on C strings, for forked children that report errno
/// themselves: 0 on success, -1 with errno set.
pub fn mount_raw(
    src: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> libc::c_int {
    let p = |c: Option<&CStr>| c.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is NUL-terminated or null, and lives to the end
    // of the call.
    unsafe { libc::mount(p(src), target.as_ptr(), p(fstype), flags, p(data).cast()) }
}

/// Makes every mount of this (new) mount namespace private, so nothing done
/// here propagates back to the namespace it was copied from.
pub fn make_mounts_private() -> libc::c_int {
    mount_raw(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// `mount_setattr(path, AT_RECURSIVE, {attr_set: RDONLY})`: 0 on success,
/// -1 with errno set (older kernels lack the call).
pub fn mount_setattr_readonly(path: &CStr) -> libc::c_long {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a NUL-terminated path and a mount_attr with its exact size.
    unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    }
}

/// The `f_flag` word of `statvfs(path)` (`ST_NOSUID`, `ST_RDONLY`, ...).
pub fn statvfs_flags(path: &CStr) -> io::Result<libc::c_ulong> {
    // SAFETY: statvfs is plain data; all-zero is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a buffer of the right type.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(last_os_error());
    }
    Ok(st.f_flag)
}

/// `umount2(path, MNT_DETACH)`, best effort.
pub fn umount_detach(path: &CStr) {
    let _ = rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH);
}

/// Makes `new_root` this mount namespace's `/`: chdir there,
/// `pivot_root(".", ".")` (which stacks the old root on top of the new one),
/// detach the old root, chdir `/`.
pub fn pivot_root_to(new_root: &CStr) -> Result<(), String> {
    use rustix::mount::{UnmountFlags, unmount};
    use rustix::process::{chdir, pivot_root};
    let msg = |what: &str, e: rustix::io::Errno| format!("{what}: {}", io::Error::from(e));
    chdir(new_root).map_err(|e| msg("chdir to the new root", e))?;
    pivot_root(c".", c".").map_err(|e| msg("pivot_root", e))?;
    unmount(c".", UnmountFlags::DETACH).map_err(|e| msg("detaching the old root", e))?;
    chdir(c"/").map_err(|e| msg("chdir /", e))
}
