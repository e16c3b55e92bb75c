//! Which isolation a build's steps run in, and why: the `--isolation` flag.
//!
//! * **userns**: every step gets a fresh user namespace (plus mount, pid,
//!   ipc, uts and optionally network namespaces) with the build's id
//!   mapping; work on the store's files (unpacking, diffing, removing) runs
//!   in a forked child inside the same mapping. The rootless default.
//! * **chroot**: no namespace and no mount at all, for CI containers whose
//!   seccomp profile refuses `unshare`, `mount` and `pivot_root` but where
//!   strata is root with `CAP_SYS_CHROOT`. A step runs in a directory root
//!   ([`super::chroot`]); ids on disk are real ids, so work on the store's
//!   files is a plain call. A root step can leave a chroot: the container
//!   itself is the security boundary, as it is for Kaniko.
//!
//! `auto` tries a user namespace first (a real probe, not a guess from
//! sysctls) and falls back to chroot only when that fails and the process is
//! uid 0 with `CAP_SYS_CHROOT`.

use std::fmt::Display;
use std::str::FromStr;

use crate::detect::HostCapabilities;
use crate::sandbox::idmap::{IdMapping, UsernsMode};
use crate::sandbox::userns::{PipeCodec, UsernsError, run_forked, run_in_userns};

/// `CAP_SYS_CHROOT` and `CAP_MKNOD` (linux/capability.h).
const CAP_SYS_CHROOT: u32 = 18;
const CAP_MKNOD: u32 = 27;

/// The value of `--isolation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationRequest {
    #[default]
    Auto,
    Userns,
    Chroot,
}

impl FromStr for IsolationRequest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(IsolationRequest::Auto),
            "userns" => Ok(IsolationRequest::Userns),
            "chroot" => Ok(IsolationRequest::Chroot),
            other => Err(format!(
                "unknown isolation {other:?}: use auto, userns or chroot"
            )),
        }
    }
}

/// The isolation chosen for a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Isolation {
    /// A user namespace with this id mapping.
    Userns(IdMapping),
    /// A directory root entered with chroot(2), as real root.
    Chroot(ChrootCaps),
}

/// What the chroot runner may do beyond chroot itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChrootCaps {
    /// `CAP_MKNOD`: /dev gets real device nodes.
    pub mknod: bool,
}

/// The choice with its explanation, for `strata -v`.
#[derive(Debug, Clone)]
pub struct IsolationChoice {
    pub isolation: Isolation,
    /// Why this isolation (one sentence).
    pub reason: String,
    /// Which id mapping and why (one sentence).
    pub mapping_reason: String,
}

impl Isolation {
    /// Picks the isolation for `request`. `userns` is the `--userns` mode a
    /// user namespace would use.
    pub fn choose(
        request: IsolationRequest,
        userns: UsernsMode,
        host: &HostCapabilities,
    ) -> Result<IsolationChoice, String> {
        match request {
            IsolationRequest::Userns => probe_userns(userns, host)
                .map(|(m, why)| IsolationChoice {
                    isolation: Isolation::Userns(m),
                    reason: "user-namespace isolation, as requested with --isolation userns".into(),
                    mapping_reason: why,
                })
                .map_err(|e| e.explain(host, None)),
            IsolationRequest::Chroot => {
                let caps = chroot_caps()
                    .map_err(|why| format!("--isolation chroot cannot work here: {why}"))?;
                Ok(chroot_choice(
                    caps,
                    "chroot isolation, as requested with --isolation chroot".into(),
                ))
            }
            IsolationRequest::Auto => match probe_userns(userns, host) {
                Ok((m, why)) => Ok(IsolationChoice {
                    isolation: Isolation::Userns(m),
                    reason: "user-namespace isolation: a user namespace can be created here".into(),
                    mapping_reason: why,
                }),
                Err(userns_err) => match chroot_caps() {
                    Ok(caps) => Ok(chroot_choice(
                        caps,
                        format!(
                            "chroot isolation, because no user namespace can be made here \
                             ({}) and strata runs as uid 0 with CAP_SYS_CHROOT",
                            userns_err.short(host)
                        ),
                    )),
                    Err(chroot_err) => Err(userns_err.explain(host, Some(&chroot_err))),
                },
            },
        }
    }

    /// The id mapping of user-namespace isolation.
    pub fn mapping(&self) -> Option<&IdMapping> {
        match self {
            Isolation::Userns(m) => Some(m),
            Isolation::Chroot(_) => None,
        }
    }

    pub fn is_chroot(&self) -> bool {
        matches!(self, Isolation::Chroot(_))
    }

    /// Runs `f` with full rights over the store's files: in a forked child
    /// inside the build's user namespace, or — in chroot isolation, where
    /// strata is real root and on-disk ids are real ids — as a plain call.
    /// `f` must not change process-wide state (root, working directory);
    /// use [`Isolation::in_child`] for that.
    pub fn as_owner<T, E, F>(&self, f: F) -> Result<T, UsernsError>
    where
        T: PipeCodec,
        E: Display,
        F: FnOnce() -> Result<T, E>,
    {
        match self {
            Isolation::Userns(m) => run_in_userns(m, f),
            Isolation::Chroot(_) => f().map_err(|e| UsernsError::Failed(e.to_string())),
        }
    }

    /// Like [`Isolation::as_owner`], but always in a forked child, for a
    /// closure that mounts or chroots (its changes die with the child).
    pub fn in_child<T, E, F>(&self, f: F) -> Result<T, UsernsError>
    where
        T: PipeCodec,
        E: Display,
        F: FnOnce() -> Result<T, E>,
    {
        match self {
            Isolation::Userns(m) => run_in_userns(m, f),
            Isolation::Chroot(_) => run_forked(f),
        }
    }
}

fn chroot_choice(caps: ChrootCaps, reason: String) -> IsolationChoice {
    IsolationChoice {
        isolation: Isolation::Chroot(caps),
        reason: format!(
            "{reason}; a root step can leave a chroot, so the container strata runs in is the \
             security boundary"
        ),
        mapping_reason: format!(
            "none: ids on disk are the container's real ids (strata is uid 0){}",
            if caps.mknod {
                ""
            } else {
                "; no CAP_MKNOD, so /dev holds plain files instead of device nodes"
            }
        ),
    }
}

/// Why a user namespace is not available.
enum UsernsUnavailable {
    /// The `--userns` mode cannot be honoured (its message says why).
    Mapping(String),
    /// No user namespace could be made; what the attempt reported.
    Namespace(String),
}

impl UsernsUnavailable {
    /// One line: what failed, with the host knob that explains it if any.
    fn short(&self, host: &HostCapabilities) -> String {
        match (self, &host.userns) {
            (UsernsUnavailable::Namespace(f), Err(why)) => format!("{why} ({f})"),
            (UsernsUnavailable::Mapping(m) | UsernsUnavailable::Namespace(m), _) => m.clone(),
        }
    }

    /// The error when nothing else works either: for a namespace failure the
    /// cause and every way out ([`crate::detect::no_sandbox_message`]).
    fn explain(&self, host: &HostCapabilities, chroot_err: Option<&str>) -> String {
        match self {
            UsernsUnavailable::Mapping(m) => match chroot_err {
                Some(c) => format!("{m}; chroot isolation is no way out either: {c}"),
                None => m.clone(),
            },
            UsernsUnavailable::Namespace(f) => crate::detect::no_sandbox_message(
                host,
                f,
                chroot_err,
                crate::detect::in_container(),
            ),
        }
    }
}

/// Chooses the mapping and proves with a real namespace that it works.
fn probe_userns(
    mode: UsernsMode,
    host: &HostCapabilities,
) -> Result<(IdMapping, String), UsernsUnavailable> {
    let (mapping, why) = IdMapping::choose(mode, host).map_err(UsernsUnavailable::Mapping)?;
    if let Err(e) = run_in_userns(&mapping, || Ok::<(), String>(())) {
        return Err(UsernsUnavailable::Namespace(match e {
            UsernsError::Setup(m) => m,
            other => other.to_string(),
        }));
    }
    Ok((mapping, why))
}

/// `Ok` when chroot isolation can work: effective uid 0 and
/// `CAP_SYS_CHROOT`; says whether `CAP_MKNOD` is held too.
pub fn chroot_caps() -> Result<ChrootCaps, String> {
    let euid = crate::sandbox::sys::geteuid();
    if euid != 0 {
        return Err(format!(
            "it needs strata to run as uid 0 (container root), and this is uid {euid}"
        ));
    }
    let eff = effective_caps().ok_or("cannot read CapEff from /proc/self/status")?;
    if eff & (1 << CAP_SYS_CHROOT) == 0 {
        return Err("it needs CAP_SYS_CHROOT, which this process does not hold".into());
    }
    Ok(ChrootCaps {
        mknod: eff & (1 << CAP_MKNOD) != 0,
    })
}

/// The effective capability set of this process.
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_cap_eff(&status)
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_flag_and_capabilities() {
        assert_eq!("auto".parse(), Ok(IsolationRequest::Auto));
        assert_eq!("chroot".parse(), Ok(IsolationRequest::Chroot));
        assert_eq!("userns".parse(), Ok(IsolationRequest::Userns));
        let e = "vm".parse::<IsolationRequest>().unwrap_err();
        assert!(e.contains("auto, userns or chroot"), "{e}");
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t00000000a80425fb\n";
        let eff = parse_cap_eff(status).unwrap();
        assert_ne!(eff & (1 << CAP_SYS_CHROOT), 0);
        assert_ne!(eff & (1 << CAP_MKNOD), 0);
        assert_eq!(parse_cap_eff("CapEff:\t0000000000000000\n"), Some(0));
    }
}
