//! How uids and gids inside a sandbox map to the host: the `--userns` choice.
//!
//! uid/gid 0 inside is always the caller. With setuid `newuidmap`/`newgidmap`
//! and a subordinate range, ids 1..=N inside map to that range, so `chown`,
//! `useradd` and package managers work. A caller that is uid 0 with
//! CAP_SETUID and CAP_SETGID (root in a container whose engine lets it
//! create a user namespace: podman, rootless podman, an unconfined pod) maps
//! every id of its own namespace to itself instead, with no helper: files
//! then carry the image's real ids. Without either only id 0 exists inside
//! (and setgroups is denied, as the kernel requires for an unprivileged
//! gid_map). Writing maps happens in two halves: the child that unshared
//! writes its own maps (single) or asks its parent, still in the outer user
//! namespace, to write them on its pid (setuid helpers for a range, plain
//! writes to `/proc/<pid>/{uid,gid}_map` for the identity map).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;

use crate::detect::{HostCapabilities, IdExtent, SubidRange};
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
    /// Every id of the caller's namespace maps to itself (the caller is uid 0
    /// there with CAP_SETUID/CAP_SETGID and writes the maps itself).
    Identity {
        uids: Vec<IdExtent>,
        gids: Vec<IdExtent>,
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
            UsernsMode::Auto if host.own_ids.is_ok() => {
                let (uids, gids) = host.own_ids.clone().unwrap_or_default();
                let why = format!(
                    "identity id mapping: strata runs as uid 0 with CAP_SETUID and CAP_SETGID, \
                     so every id of its namespace ({} uids, {} gids) maps to itself, written \
                     without newuidmap",
                    uids.iter().map(|e| u64::from(e.count)).sum::<u64>(),
                    gids.iter().map(|e| u64::from(e.count)).sum::<u64>(),
                );
                Ok((IdMapping::Identity { uids, gids }, why))
            }
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
            IdMapping::Identity { .. } => (0, 0),
        }
    }

    /// Whether ids other than 0 exist inside (and setgroups is allowed):
    /// a subordinate range or the identity map.
    pub fn is_range(&self) -> bool {
        !matches!(self, IdMapping::Single { .. })
    }

    /// Whether uid `inside` exists in the sandbox.
    pub fn has_uid(&self, inside: u32) -> bool {
        self.host_uid(inside).is_some()
    }

    pub fn has_gid(&self, inside: u32) -> bool {
        self.host_gid(inside).is_some()
    }

    /// The highest uid and gid such that every id from 0 up to it exists
    /// inside (what a step's USER may use).
    pub fn max_ids(&self) -> (u32, u32) {
        match self {
            IdMapping::Single { .. } => (0, 0),
            IdMapping::Range { subuid, subgid, .. } => (subuid.count, subgid.count),
            IdMapping::Identity { uids, gids } => (contiguous_top(uids), contiguous_top(gids)),
        }
    }

    /// The host uid that owns files created by uid `inside`.
    pub fn host_uid(&self, inside: u32) -> Option<u32> {
        match self {
            IdMapping::Identity { uids, .. } => in_extents(uids, inside),
            _ if inside == 0 => Some(self.caller().0),
            IdMapping::Range { subuid, .. } if inside <= subuid.count => {
                Some(subuid.start + inside - 1)
            }
            _ => None,
        }
    }

    pub fn host_gid(&self, inside: u32) -> Option<u32> {
        match self {
            IdMapping::Identity { gids, .. } => in_extents(gids, inside),
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
            IdMapping::Range { .. } | IdMapping::Identity { .. } => {
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
            if sys::setns(ns.as_fd(), libc::CLONE_NEWUSER) != 0 {
                return Err(sys::errno_msg("joining the build's user namespace (setns)"));
            }
            0
        } else {
            libc::CLONE_NEWUSER
        };
        if (user_flag | extra_flags) != 0 && sys::unshare(user_flag | extra_flags) != 0 {
            let e = sys::os_error_text(&sys::last_os_error());
            return Err(format!(
                "cannot create the sandbox namespaces (unshare: {e})"
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
        if sys::setresgid(0) != 0 {
            return Err(sys::errno_msg("setresgid(0) in the new user namespace"));
        }
        if sys::setresuid(0) != 0 {
            return Err(sys::errno_msg("setresuid(0) in the new user namespace"));
        }
        if !matches!(self, MapPlan::Single { .. }) && sys::setgroups(&[]) != 0 {
            return Err(sys::errno_msg("setgroups([]) in the new user namespace"));
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
        let res = match mapping {
            IdMapping::Identity { uids, gids } => write_identity_maps(uids, gids, child),
            _ => run_helpers(mapping, child),
        };
        let _ = sys::write_all(
            parent_done_w.as_raw_fd(),
            if res.is_ok() { b"1" } else { b"0" },
        );
        res
    }
}

/// `id` is in one of `extents`: the identity map gives it back.
fn in_extents(extents: &[IdExtent], id: u32) -> Option<u32> {
    extents
        .iter()
        .any(|e| id >= e.start && u64::from(id) < u64::from(e.start) + u64::from(e.count))
        .then_some(id)
}

/// The last id of the unbroken run of extents that starts at 0.
fn contiguous_top(extents: &[IdExtent]) -> u32 {
    let mut sorted = extents.to_vec();
    sorted.sort_by_key(|e| e.start);
    let mut next: u64 = 0;
    for e in sorted {
        if u64::from(e.start) > next {
            break;
        }
        next = next.max(u64::from(e.start) + u64::from(e.count));
    }
    next.saturating_sub(1).min(u64::from(u32::MAX)) as u32
}

/// The identity map text: each extent maps to the same ids outside.
fn identity_map_text(extents: &[IdExtent]) -> Vec<u8> {
    extents
        .iter()
        .map(|e| format!("{} {} {}\n", e.start, e.start, e.count))
        .collect::<String>()
        .into_bytes()
}

/// Writes the identity maps of a child that unshared its user namespace.
/// Needs CAP_SETUID/CAP_SETGID in this (the parent) namespace; setgroups
/// stays allowed because the gid map is written with privilege.
fn write_identity_maps(
    uids: &[IdExtent],
    gids: &[IdExtent],
    pid: libc::pid_t,
) -> Result<(), String> {
    for (name, extents) in [("uid_map", uids), ("gid_map", gids)] {
        let path = sys::cpath(format!("/proc/{pid}/{name}"))?;
        sys::write_proc_file(&path, &identity_map_text(extents))
            .map_err(|e| format!("writing the identity id map: {e}"))?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(start: u32, count: u32) -> IdExtent {
        IdExtent { start, count }
    }

    #[test]
    fn identity_map_keeps_every_id_of_the_callers_namespace() {
        // Rootless podman's container root: ids 0..=65536.
        let m = IdMapping::Identity {
            uids: vec![ext(0, 1), ext(1, 65536)],
            gids: vec![ext(0, 1), ext(1, 65536)],
        };
        assert!(m.is_range());
        assert_eq!(m.caller(), (0, 0));
        assert_eq!(m.host_uid(1000), Some(1000));
        assert_eq!(m.host_gid(65536), Some(65536));
        assert_eq!(m.host_uid(65537), None);
        assert_eq!(m.max_ids(), (65536, 65536));
        assert_eq!(
            identity_map_text(&[ext(0, 1), ext(1, 65536)]),
            b"0 0 1\n1 1 65536\n"
        );
        // Root on a host or in a rootful container: the whole 32-bit range.
        let full = vec![ext(0, u32::MAX)];
        assert_eq!(contiguous_top(&full), u32::MAX - 1);
        assert_eq!(contiguous_top(&[ext(0, 10), ext(20, 5)]), 9);
    }
}
