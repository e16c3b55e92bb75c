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

/// Sets IFF_UP on `lo` of the current network namespace. Needs
/// CAP_NET_ADMIN over that namespace (uid 0 of the owning user namespace).
pub(crate) fn bring_up_loopback() -> Result<(), String> {
    sys::bring_loopback_up()
}
