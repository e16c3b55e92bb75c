//! Host capability detection: can this user create a rootless sandbox, and
//! with which id mapping?
//!
//! Every check here turns a kernel or distribution knob into a sentence that
//! says what is missing and how to fix it, because "unshare: Operation not
//! permitted" alone sends users on a long hunt. Detection reads files only; the
//! sandbox additionally probes by really creating a user namespace once.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A subordinate id range from /etc/subuid or /etc/subgid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubidRange {
    pub start: u32,
    pub count: u32,
}

/// One line of a `uid_map`/`gid_map`, seen from inside the namespace: ids
/// `start..start + count` exist there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdExtent {
    pub start: u32,
    pub count: u32,
}

/// What the host allows for the calling user.
#[derive(Debug, Clone)]
pub struct HostCapabilities {
    /// The caller's real uid and gid (mapped to 0 inside).
    pub uid: u32,
    pub gid: u32,
    /// The caller's login name, when the passwd database knows it.
    pub user_name: Option<String>,
    /// `Err(explanation)` when unprivileged user namespaces are disabled.
    pub userns: Result<(), String>,
    /// setuid (or file-capability) `newuidmap`/`newgidmap`, or why not.
    pub id_helpers: Result<(PathBuf, PathBuf), String>,
    /// The caller's ranges, or why there is none.
    pub subuid: Result<SubidRange, String>,
    pub subgid: Result<SubidRange, String>,
    /// The ids that exist in the caller's own user namespace, when the
    /// caller is uid 0 there and holds CAP_SETUID and CAP_SETGID (root in a
    /// container, root on a host): it may then map all of them into a child
    /// namespace itself, without newuidmap. `Err` says why not.
    pub own_ids: Result<(Vec<IdExtent>, Vec<IdExtent>), String>,
}

const SUBID_HINT: &str = "add one with `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER` (as root)";

impl HostCapabilities {
    /// Reads /proc/sys and /etc; never fails, every problem is recorded.
    pub fn detect() -> HostCapabilities {
        let (uid, gid) = (crate::sandbox::sys::getuid(), crate::sandbox::sys::getgid());
        let user_name = user_name_of(uid);
        HostCapabilities {
            uid,
            gid,
            userns: userns_allowed(Path::new("/proc/sys")),
            id_helpers: find_id_helpers(),
            subuid: find_subid_range(Path::new("/etc/subuid"), uid, user_name.as_deref()),
            subgid: find_subid_range(Path::new("/etc/subgid"), uid, user_name.as_deref()),
            own_ids: own_id_range(uid, Path::new("/proc/self")),
            user_name,
        }
    }

    /// One line per capability, for verbose output (`strata -v`, bug reports).
    pub fn describe(&self) -> Vec<String> {
        let show = |r: &Result<SubidRange, String>| match r {
            Ok(r) => format!(
                "{}..{} ({} ids)",
                r.start,
                r.start as u64 + r.count as u64 - 1,
                r.count
            ),
            Err(e) => format!("none: {e}"),
        };
        vec![
            format!(
                "caller: uid {} gid {}{}",
                self.uid,
                self.gid,
                self.user_name
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            ),
            match &self.userns {
                Ok(()) => "unprivileged user namespaces: allowed".into(),
                Err(e) => format!("unprivileged user namespaces: {e}"),
            },
            match &self.id_helpers {
                Ok((u, g)) => format!("id map helpers: {} and {}", u.display(), g.display()),
                Err(e) => format!("id map helpers: {e}"),
            },
            format!("subordinate uids: {}", show(&self.subuid)),
            format!("subordinate gids: {}", show(&self.subgid)),
            match &self.own_ids {
                Ok((u, g)) => format!(
                    "own id range: {} uids, {} gids (uid 0 with CAP_SETUID and CAP_SETGID)",
                    id_count(u),
                    id_count(g)
                ),
                Err(e) => format!("own id range: {e}"),
            },
        ]
    }

    /// `Ok` when a full subordinate range can be mapped, else the reason.
    pub fn range_mapping_available(&self) -> Result<(), String> {
        self.id_helpers.as_ref().map_err(Clone::clone)?;
        self.subuid.as_ref().map_err(Clone::clone)?;
        self.subgid.as_ref().map_err(Clone::clone)?;
        Ok(())
    }
}

/// Where the README shows the AppArmor profile and the CI recipes.
pub const CI_README_SECTION: &str = "the README's \"Running in CI\" section";

/// Whether this process looks like it runs in a container (a file the
/// engines leave, or Kubernetes' service variables).
pub fn in_container() -> bool {
    Path::new("/.dockerenv").exists()
        || Path::new("/run/.containerenv").exists()
        || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
}

/// The error for a host where no user namespace can be made for a step:
/// the cause first, then every way out that applies. `failure` is what the
/// attempt reported, `chroot_failure` why chroot isolation cannot stand in.
/// chroot isolation (which needs uid 0) is named as a way out for a caller
/// that is not root.
pub fn no_sandbox_message(
    host: &HostCapabilities,
    failure: &str,
    chroot_failure: Option<&str>,
    container: bool,
) -> String {
    let mut cause = match &host.userns {
        Err(why) => format!("{why} ({failure})"),
        Ok(()) if container => format!(
            "this container may not create user namespaces ({failure}); Docker's and \
             Kubernetes' default seccomp profiles refuse them"
        ),
        Ok(()) => format!("user namespaces cannot be created here ({failure})"),
    };
    if let Some(c) = chroot_failure.filter(|_| host.uid == 0) {
        cause.push_str(&format!("; chroot isolation cannot stand in: {c}"));
    }
    let mut ways = Vec::new();
    if host.uid != 0 {
        ways.push(
            "run strata as root inside the job's container (the GitLab docker executor's \
             default; Kubernetes: securityContext.runAsUser: 0): RUN steps then use chroot \
             isolation, with the container as the security boundary"
                .to_string(),
        );
    }
    if host.userns.as_ref().is_err_and(|w| w.contains("AppArmor")) {
        ways.push(format!(
            "install the AppArmor profile for strata shown in {CI_README_SECTION} \
             (`apparmor_parser -r /etc/apparmor.d/strata`, as root) so that it may create user \
             namespaces"
        ));
    }
    if container {
        ways.push(
            "give the container a seccomp profile that allows user namespaces (podman's \
             default does; docker run --security-opt seccomp=unconfined; Kubernetes \
             seccompProfile: Unconfined), and keep the store (--root) on a volume or an \
             emptyDir rather than on the container's root file system"
                .to_string(),
        );
    }
    ways.push(format!(
        "a Dockerfile without RUN steps builds anywhere; see {CI_README_SECTION}"
    ));
    let mut msg = format!("no isolation for RUN steps is available: {cause}.\nWays out:");
    for w in ways {
        msg.push_str("\n  - ");
        msg.push_str(&w);
    }
    msg
}

fn id_count(extents: &[IdExtent]) -> u64 {
    extents.iter().map(|e| u64::from(e.count)).sum()
}

/// Parses a `uid_map`/`gid_map` into the extents that exist inside.
pub fn parse_id_map(text: &str) -> Vec<IdExtent> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace().map(str::parse::<u32>);
            let (Some(Ok(start)), Some(Ok(_outside)), Some(Ok(count))) =
                (f.next(), f.next(), f.next())
            else {
                return None;
            };
            (count > 0).then_some(IdExtent { start, count })
        })
        .collect()
}

/// Whether the effective capability set in `status` (a `/proc/<pid>/status`
/// text) holds CAP_SETUID (7) and CAP_SETGID (6).
pub fn holds_setid_caps(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 6) != 0 && caps & (1 << 7) != 0)
}

/// The ids of the caller's namespace that it may map one to one into a child
/// namespace: all of them, when it is uid 0 with CAP_SETUID and CAP_SETGID.
/// `proc_self` is a parameter so tests can point it at a fake tree.
pub fn own_id_range(uid: u32, proc_self: &Path) -> Result<(Vec<IdExtent>, Vec<IdExtent>), String> {
    if uid != 0 {
        return Err("not uid 0, so no id range of its own to map".into());
    }
    let read = |name: &str| {
        fs::read_to_string(proc_self.join(name))
            .map_err(|e| format!("cannot read {}: {e}", proc_self.join(name).display()))
    };
    if !holds_setid_caps(&read("status")?) {
        return Err("uid 0 without CAP_SETUID and CAP_SETGID".into());
    }
    let (uids, gids) = (
        parse_id_map(&read("uid_map")?),
        parse_id_map(&read("gid_map")?),
    );
    let has_zero = |e: &[IdExtent]| e.iter().any(|x| x.start == 0);
    if !has_zero(&uids) || !has_zero(&gids) {
        return Err("uid or gid 0 is not mapped in the caller's namespace".into());
    }
    Ok((uids, gids))
}

fn read_number(path: &Path) -> Option<i64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Checks the three knobs that distributions use to forbid unprivileged user
/// namespaces. `proc_sys` is a parameter so tests can point it at a fake tree.
pub fn userns_allowed(proc_sys: &Path) -> Result<(), String> {
    if read_number(&proc_sys.join("user/max_user_namespaces")) == Some(0) {
        return Err(
            "user namespaces are disabled: sysctl user.max_user_namespaces is 0; \
             ask your admin to raise it (e.g. `sysctl -w user.max_user_namespaces=15000`)"
                .into(),
        );
    }
    if read_number(&proc_sys.join("kernel/unprivileged_userns_clone")) == Some(0) {
        return Err("unprivileged user namespaces are disabled: sysctl \
             kernel.unprivileged_userns_clone is 0; ask your admin to run \
             `sysctl -w kernel.unprivileged_userns_clone=1`"
            .into());
    }
    if read_number(&proc_sys.join("kernel/apparmor_restrict_unprivileged_userns")) == Some(1) {
        return Err("AppArmor restricts unprivileged user namespaces \
             (kernel.apparmor_restrict_unprivileged_userns=1): the sandbox would get no \
             capabilities; ask your admin to add an AppArmor profile allowing `userns` for \
             strata, or to set the sysctl to 0"
            .into());
    }
    Ok(())
}

fn user_name_of(uid: u32) -> Option<String> {
    crate::sandbox::sys::user_name(uid)
}

fn is_privileged_helper(path: &Path) -> bool {
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    let setuid_root = meta.permissions().mode() & 0o4000 != 0 && {
        use std::os::unix::fs::MetadataExt;
        meta.uid() == 0
    };
    // Fedora ships the helpers with file capabilities instead of setuid.
    let has_caps = has_file_caps(path);
    setuid_root || has_caps
}

fn has_file_caps(path: &Path) -> bool {
    xattr::get(path, "security.capability").is_ok_and(|v| v.is_some_and(|v| !v.is_empty()))
}

fn find_id_helpers() -> Result<(PathBuf, PathBuf), String> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        dirs.push(PathBuf::from(d));
    }
    let find = |name: &str| dirs.iter().map(|d| d.join(name)).find(|p| p.is_file());
    let (Some(u), Some(g)) = (find("newuidmap"), find("newgidmap")) else {
        return Err(
            "newuidmap/newgidmap not found: install the `uidmap` package \
             (Debian/Ubuntu) or `shadow-utils` (Fedora) to map a subordinate id range"
                .into(),
        );
    };
    for p in [&u, &g] {
        if !is_privileged_helper(p) {
            return Err(format!(
                "{} is neither setuid root nor has file capabilities, so it cannot write \
                 id maps; reinstall the `uidmap` package",
                p.display()
            ));
        }
    }
    Ok((u, g))
}

/// Finds the first range for `uid` (by name or number) in a subuid/subgid file.
pub fn find_subid_range(file: &Path, uid: u32, name: Option<&str>) -> Result<SubidRange, String> {
    let text = fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}; {SUBID_HINT}", file.display()))?;
    let uid_s = uid.to_string();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split(':');
        let (Some(who), Some(start), Some(count)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if who != uid_s && Some(who) != name {
            continue;
        }
        if let (Ok(start), Ok(count)) = (start.parse::<u32>(), count.parse::<u32>())
            && count > 0
        {
            return Ok(SubidRange { start, count });
        }
    }
    Err(format!(
        "no subordinate id range for {} in {}; {SUBID_HINT}",
        name.map(str::to_owned).unwrap_or(uid_s),
        file.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subid_range_found_by_name_or_number() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("subuid");
        fs::write(
            &f,
            "# c\nalice:200000:100\nbuilder:100000:65536\n1002:300000:5\n",
        )
        .unwrap();
        assert_eq!(
            find_subid_range(&f, 1001, Some("builder")).unwrap(),
            SubidRange {
                start: 100000,
                count: 65536
            }
        );
        assert_eq!(find_subid_range(&f, 1002, None).unwrap().start, 300000);
        let err = find_subid_range(&f, 1003, Some("carol")).unwrap_err();
        assert!(err.contains("usermod --add-subuids"), "{err}");
    }

    #[test]
    fn description_names_every_capability() {
        let caps = HostCapabilities {
            uid: 1001,
            gid: 1001,
            user_name: Some("builder".into()),
            userns: Ok(()),
            id_helpers: Err("newuidmap/newgidmap not found".into()),
            subuid: Ok(SubidRange {
                start: 100000,
                count: 65536,
            }),
            subgid: Err("no subordinate id range".into()),
            own_ids: Err("not uid 0, so no id range of its own to map".into()),
        };
        let d = caps.describe();
        assert_eq!(d[0], "caller: uid 1001 gid 1001 (builder)");
        assert_eq!(d[3], "subordinate uids: 100000..165535 (65536 ids)");
        assert!(d[2].contains("not found") && d[4].contains("none: no subordinate"));
        assert!(
            caps.range_mapping_available()
                .unwrap_err()
                .contains("newuidmap")
        );
    }

    #[test]
    fn own_id_range_needs_root_and_setid_caps() {
        let d = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| fs::write(d.path().join(name), text).unwrap();
        // Rootless podman's container root: 0 -> the user, 1.. -> its range.
        write(
            "uid_map",
            "         0       1001          1\n         1     100000      65536\n",
        );
        write("gid_map", "0 1001 1\n1 100000 65536\n");
        write("status", "Name:\tx\nCapEff:\t00000000a80425fb\n");
        let (u, g) = own_id_range(0, d.path()).unwrap();
        let want = vec![
            IdExtent { start: 0, count: 1 },
            IdExtent {
                start: 1,
                count: 65536,
            },
        ];
        assert_eq!((u, g), (want.clone(), want));
        assert!(
            own_id_range(1000, d.path())
                .unwrap_err()
                .contains("not uid 0")
        );
        // No CAP_SETUID (bit 7).
        write("status", "CapEff:\t00000000a804257b\n");
        assert!(
            own_id_range(0, d.path())
                .unwrap_err()
                .contains("CAP_SETUID")
        );
    }

    #[test]
    fn no_sandbox_message_names_the_cause_and_the_ways_out() {
        let mut host = HostCapabilities {
            uid: 1000,
            gid: 1000,
            user_name: None,
            userns: Ok(()),
            id_helpers: Err("x".into()),
            subuid: Err("x".into()),
            subgid: Err("x".into()),
            own_ids: Err("x".into()),
        };
        let m = no_sandbox_message(&host, "unshare: Operation not permitted", None, true);
        assert!(m.starts_with("no isolation for RUN steps is available: this container may not create user namespaces (unshare: Operation not permitted)"), "{m}");
        assert!(
            m.contains("run strata as root inside the job's container"),
            "{m}"
        );
        assert!(m.contains("emptyDir"), "{m}");
        assert!(!m.contains("AppArmor"), "{m}");
        host.userns = Err("AppArmor restricts unprivileged user namespaces".into());
        let m = no_sandbox_message(&host, "EPERM", Some("no CAP_SYS_CHROOT"), false);
        assert!(
            m.contains("apparmor_parser -r /etc/apparmor.d/strata"),
            "{m}"
        );
        host.uid = 0;
        let m = no_sandbox_message(&host, "EPERM", Some("no CAP_SYS_CHROOT"), false);
        assert!(!m.contains("run strata as root"), "{m}");
        assert!(
            m.contains("chroot isolation cannot stand in: no CAP_SYS_CHROOT"),
            "{m}"
        );
    }

    #[test]
    fn disabled_userns_is_explained() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("user")).unwrap();
        fs::create_dir_all(d.path().join("kernel")).unwrap();
        assert!(userns_allowed(d.path()).is_ok());
        fs::write(
            d.path()
                .join("kernel/apparmor_restrict_unprivileged_userns"),
            "1\n",
        )
        .unwrap();
        assert!(userns_allowed(d.path()).unwrap_err().contains("AppArmor"));
        fs::write(d.path().join("user/max_user_namespaces"), "0\n").unwrap();
        assert!(
            userns_allowed(d.path())
                .unwrap_err()
                .contains("max_user_namespaces is 0")
        );
    }
}
