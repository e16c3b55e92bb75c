//! How uids and gids inside a sandbox map to the host: the `--userns` choice.
//!
//! uid/gid 0 inside is always the caller. With setuid `newuidmap`/`newgidmap`
//! and a subordinate range, ids 1..=N inside map to that range, so `chown`,
//! `useradd` and package managers work. Without them only id 0 exists inside
//! (and setgroups is denied, as the kernel requires for an unprivileged
//! gid_map). Writing maps happens in two halves: the child that unshared
//! writes its own maps (single) or asks its parent, still in the host user
//! namespace, to run the setuid helpers on its pid (range).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;

use crate::detect::{HostCapabilities, SubidRange};
use crate::sandbox::{shared_userns, sys};

/// The `--userns` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UsernsMode {
    /// A subordinate range when the host offers one, else a single mapping.
    #[default]
    Auto,
    /// Only uid/gid 0 inside (the caller).
    Single,
    /// Require a subordinate range; fail with an explanation otherwise.
    Subuid,
}

impl FromStr for UsernsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(UsernsMode::Auto),
            "single" => Ok(UsernsMode::Single),
            "subuid" => Ok(UsernsMode::Subuid),
            _ => Err(format!(
                "unknown --userns mode {s:?}: use auto, single or subuid"
            )),
        }
    }
}

/// A resolved id mapping, reusable for every sandbox and `run_in_userns` call
/// of a build so that all of them see the same ownership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdMapping {
    Single {
        uid: u32,
        gid: u32,
    },
    Range {
        uid: u32,
        gid: u32,
        subuid: SubidRange,
        subgid: SubidRange,
        newuidmap: PathBuf,
        newgidmap: PathBuf,
    },
}

/// The message for a step that needs ids a single mapping cannot provide.
pub const NEED_RANGE_HINT: &str = "only uid/gid 0 exists in the sandbox because no subordinate \
id range is mapped; add one with `usermod --add-subuids 100000-165535 --add-subgids \
100000-165535 $USER` (as root; needs the `uidmap` package) and use --userns auto or subuid";

impl IdMapping {
    /// Picks the mapping for `mode`, returning it with a sentence saying why.
    pub fn choose(
        mode: UsernsMode,
        host: &HostCapabilities,
    ) -> Result<(IdMapping, String), String> {
        let single = IdMapping::Single {
            uid: host.uid,
            gid: host.gid,
        };
        match mode {
            UsernsMode::Single => Ok((single, "single id mapping (--userns single)".into())),
            UsernsMode::Subuid | UsernsMode::Auto => {
                match (&host.id_helpers, &host.subuid, &host.subgid) {
                    (Ok((u, g)), Ok(su), Ok(sg)) => {
                        let m = IdMapping::Range {
                            uid: host.uid,
                            gid: host.gid,
                            subuid: *su,
                            subgid: *sg,
                            newuidmap: u.clone(),
                            newgidmap: g.clone(),
                        };
                        let why = format!(
                            "subordinate id mapping: 0 -> {}, 1..{} -> {}.. (uids) / {}.. (gids) via {}",
                            host.uid,
                            su.count.min(sg.count),
                            su.start,
                            sg.start,
                            u.display()
                        );
                        Ok((m, why))
                    }
                    _ => {
                        let why = host.range_mapping_available().err().unwrap_or_default();
                        if mode == UsernsMode::Subuid {
                            Err(format!("--userns subuid: {why}"))
                        } else {
                            Ok((single, format!("single id mapping: {why}")))
                        }
                    }
                }
            }
        }
    }

    /// The caller's host uid/gid (0 inside).
    pub fn caller(&self) -> (u32, u32) {
        match self {
            IdMapping::Single { uid, gid } | IdMapping::Range { uid, gid, .. } => (*uid, *gid),
        }
    }

    pub fn is_range(&self) -> bool {
        matches!(self, IdMapping::Range { .. })
    }

    /// Whether uid `inside` exists in the sandbox.
    pub fn has_uid(&self, inside: u32) -> bool {
        match self {
            IdMapping::Single { .. } => inside == 0,
            IdMapping::Range { subuid, .. } => inside <= subuid.count,
        }
    }

    pub fn has_gid(&self, inside: u32) -> bool {
        match self {
            IdMapping::Single { .. } => inside == 0,
            IdMapping::Range { subgid, .. } => inside <= subgid.count,
        }
    }

    /// The host uid that owns files created by uid `inside`.
    pub fn host_uid(&self, inside: u32) -> Option<u32> {
        match self {
            _ if inside == 0 => Some(self.caller().0),
            IdMapping::Range { subuid, .. } if inside <= subuid.count => {
                Some(subuid.start + inside - 1)
            }
            _ => None,
        }
    }

    pub fn host_gid(&self, inside: u32) -> Option<u32> {
        match self {
            _ if inside == 0 => Some(self.caller().1),
            IdMapping::Range { subgid, .. } if inside <= subgid.count => {
                Some(subgid.start + inside - 1)
            }
            _ => None,
        }
    }

    /// Everything the forked child and the parent need to apply the maps,
    /// computed before fork.
    pub(crate) fn plan(&self) -> Result<MapPlan, String> {
        if self.is_range()
            && let Ok(ns) = shared_userns::get(self)
        {
            return Ok(MapPlan::Shared(ns));
        }
        self.plan_fresh()
    }

    /// A plan that creates and maps a new user namespace (for a range: with
    /// newuidmap/newgidmap run by the parent).
    pub(crate) fn plan_fresh(&self) -> Result<MapPlan, String> {
        match self {
            IdMapping::Single { uid, gid } => Ok(MapPlan::Single {
                uid_map: format!("0 {uid} 1\n").into_bytes(),
                gid_map: format!("0 {gid} 1\n").into_bytes(),
            }),
            IdMapping::Range { .. } => {
                let (child_ready_r, child_ready_w) =
                    sys::pipe().map_err(|e| format!("pipe: {e}"))?;
                let (parent_done_r, parent_done_w) =
                    sys::pipe().map_err(|e| format!("pipe: {e}"))?;
                Ok(MapPlan::Range(RangeSync {
                    child_ready_r,
                    child_ready_w,
                    parent_done_r,
                    parent_done_w,
                }))
            }
        }
    }
}

pub(crate) struct RangeSync {
    child_ready_r: OwnedFd,
    child_ready_w: OwnedFd,
    parent_done_r: OwnedFd,
    parent_done_w: OwnedFd,
}

pub(crate) enum MapPlan {
    Single {
        uid_map: Vec<u8>,
        gid_map: Vec<u8>,
    },
    Range(RangeSync),
    /// Join the process-wide, already mapped user namespace of this range.
    Shared(Arc<OwnedFd>),
}

impl MapPlan {
    /// Descriptors the child must keep open.
    pub(crate) fn child_fds(&self) -> Vec<i32> {
        match self {
            MapPlan::Single { .. } => vec![],
            MapPlan::Range(s) => vec![s.child_ready_w.as_raw_fd(), s.parent_done_r.as_raw_fd()],
            MapPlan::Shared(ns) => vec![ns.as_raw_fd()],
        }
    }

    /// Child side, right after fork: unshares a user namespace (plus
    /// `extra_flags`), gets it mapped, and becomes uid/gid 0 inside.
    pub(crate) fn enter(&self, extra_flags: libc::c_int) -> Result<(), String> {
        let user_flag = if let MapPlan::Shared(ns) = self {
            // The caller owns that namespace, which gives it every capability
            // there; joining needs a single-threaded process (we just forked).
            // SAFETY: setns on a valid user-namespace descriptor.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWUSER) } != 0 {
                return Err(sys::errno_msg("joining the build's user namespace (setns)"));
            }
            0
        } else {
            libc::CLONE_NEWUSER
        };
        // SAFETY: unshare with constant flags.
        if (user_flag | extra_flags) != 0 && unsafe { libc::unshare(user_flag | extra_flags) } != 0
        {
            let e = sys::last_os_error();
            return Err(format!(
                "cannot create the sandbox namespaces (unshare: {e}); unprivileged user \
                 namespaces may be disabled or restricted (seccomp, AppArmor) on this host"
            ));
        }
        match self {
            MapPlan::Single { uid_map, gid_map } => {
                sys::write_proc_file(c"/proc/self/setgroups", b"deny")?;
                sys::write_proc_file(c"/proc/self/uid_map", uid_map)?;
                sys::write_proc_file(c"/proc/self/gid_map", gid_map)?;
            }
            MapPlan::Shared(_) => {}
            MapPlan::Range(s) => {
                sys::write_all(s.child_ready_w.as_raw_fd(), b"R")
                    .map_err(|e| format!("id map sync: {e}"))?;
                let mut b = [0u8; 1];
                let n = sys::read_some(s.parent_done_r.as_raw_fd(), &mut b)
                    .map_err(|e| format!("id map sync: {e}"))?;
                if n != 1 || b[0] != b'1' {
                    return Err("the parent could not write the id maps (see its error)".into());
                }
            }
        }
        // SAFETY: plain id syscalls.
        unsafe {
            if libc::setresgid(0, 0, 0) != 0 {
                return Err(sys::errno_msg("setresgid(0) in the new user namespace"));
            }
            if libc::setresuid(0, 0, 0) != 0 {
                return Err(sys::errno_msg("setresuid(0) in the new user namespace"));
            }
            if !matches!(self, MapPlan::Single { .. }) && libc::setgroups(0, std::ptr::null()) != 0
            {
                return Err(sys::errno_msg("setgroups([]) in the new user namespace"));
            }
        }
        Ok(())
    }

    /// Parent side, after fork: closes the child's ends and, for a range,
    /// waits for the child's unshare and runs newuidmap/newgidmap on it.
    /// An `Err` means the child will fail too; the caller should prefer the
    /// child's own message when it reports one.
    pub(crate) fn parent_side(self, mapping: &IdMapping, child: libc::pid_t) -> Result<(), String> {
        let MapPlan::Range(s) = self else {
            return Ok(());
        };
        let RangeSync {
            child_ready_r,
            child_ready_w,
            parent_done_r,
            parent_done_w,
        } = s;
        drop(child_ready_w);
        drop(parent_done_r);
        let mut b = [0u8; 1];
        let n = sys::read_some(child_ready_r.as_raw_fd(), &mut b)
            .map_err(|e| format!("id map sync: {e}"))?;
        if n == 0 {
            return Err("the sandbox exited before its ids were mapped".into());
        }
        let res = run_helpers(mapping, child);
        let _ = sys::write_all(
            parent_done_w.as_raw_fd(),
            if res.is_ok() { b"1" } else { b"0" },
        );
        res
    }
}

/// Runs newuidmap and newgidmap on `pid` at the same time (each is a setuid
/// exec; in parallel the pair costs one round trip instead of two).
fn run_helpers(mapping: &IdMapping, pid: libc::pid_t) -> Result<(), String> {
    let IdMapping::Range {
        uid,
        gid,
        subuid,
        subgid,
        newuidmap,
        newgidmap,
    } = mapping
    else {
        return Ok(());
    };
    let mut children = Vec::new();
    for (helper, id, r) in [(newuidmap, uid, subuid), (newgidmap, gid, subgid)] {
        let child = Command::new(helper)
            .args([
                pid.to_string(),
                "0".into(),
                id.to_string(),
                "1".into(),
                "1".into(),
            ])
            .args([r.start.to_string(), r.count.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", helper.display()));
        children.push((helper, child));
    }
    let mut first_err = None;
    for (helper, child) in children {
        let res = child.and_then(|c| {
            let out = c
                .wait_with_output()
                .map_err(|e| format!("waiting for {}: {e}", helper.display()))?;
            if out.status.success() {
                return Ok(());
            }
            Err(format!(
                "{} failed ({}): {}; check the caller's entries in /etc/subuid and /etc/subgid",
                helper.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        });
        if let Err(e) = res {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}
