//! The step's network: the caller's (`host`, BuildKit's rootless default) or
//! a fresh network namespace with only loopback (`none`).
//!
//! A new network namespace starts with `lo` down; programs expect 127.0.0.1 to
//! work, so the sandbox brings it up with the SIOCSIFFLAGS ioctl on a socket
//! created inside the namespace (no `ip` binary needed in the image).

use std::str::FromStr;

use crate::sandbox::sys;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// Share the caller's network namespace.
    #[default]
    Host,
    /// A new network namespace with loopback up and nothing else.
    None,
}

impl FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "host" | "default" => Ok(Network::Host),
            "none" => Ok(Network::None),
            _ => Err(format!("unsupported network mode {s:?}: use host or none")),
        }
    }
}

impl Network {
    /// Extra unshare flag for this mode.
    pub(crate) fn clone_flag(self) -> libc::c_int {
        match self {
            Network::Host => 0,
            Network::None => libc::CLONE_NEWNET,
        }
    }
}

#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Sets IFF_UP on `lo` of the current network namespace. Needs
/// CAP_NET_ADMIN over that namespace (uid 0 of the owning user namespace).
pub(crate) fn bring_up_loopback() -> Result<(), String> {
    // SAFETY: socket with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(sys::errno_msg("socket for configuring loopback"));
    }
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: req is a valid ifreq-shaped buffer for these ioctls.
    let res = unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) != 0 {
            Err(sys::errno_msg("SIOCGIFFLAGS lo"))
        } else {
            req.flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) != 0 {
                Err(sys::errno_msg("bringing up loopback (SIOCSIFFLAGS lo)"))
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    res
}
