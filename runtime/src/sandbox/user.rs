//! Resolving a step's `USER user[:group]` against the rootfs' own
//! /etc/passwd and /etc/group (never the host's), as Docker does: names are
//! looked up, numbers are taken as they are (a numeric uid missing from
//! passwd gets gid 0). The supplementary groups are the primary group plus,
//! without an explicit group, every /etc/group entry that lists the user, so
//! `id` prints `groups=1001(appgrp),…` as under Docker (runc puts the
//! primary gid into the list since the fix for CVE-2023-25173).

use std::io::Read;

/// How much of an image's /etc/passwd or /etc/group is read. Real ones are
/// kilobytes; a hostile base image may ship gigabytes, which must not
/// become gigabytes of memory in every step.
pub const MAX_ACCOUNT_FILE: u64 = 16 << 20;

/// The first [`MAX_ACCOUNT_FILE`] bytes of an account file, cut after the
/// last whole line when the file is longer (an unreadable rest counts as
/// absent, like an unreadable file).
pub fn read_account_file(r: impl Read) -> String {
    let mut b = Vec::new();
    let _ = r.take(MAX_ACCOUNT_FILE).read_to_end(&mut b);
    if b.len() as u64 == MAX_ACCOUNT_FILE
        && let Some(i) = b.iter().rposition(|c| *c == b'\n')
    {
        b.truncate(i + 1);
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// The ids a step's process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// From passwd, for a default `HOME`.
    pub home: Option<String>,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || l.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f.get(5).copied().unwrap_or(""),
        })
    })
}

/// (name, gid, members)
fn group_entries(text: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 3 || l.starts_with('#') {
            return None;
        }
        let members = f
            .get(3)
            .map(|m| m.split(',').filter(|s| !s.is_empty()).collect());
        Some((f[0], f[2].parse().ok()?, members.unwrap_or_default()))
    })
}

/// Resolves `spec` (`user`, `uid`, `user:group`, `uid:gid`, …). `passwd` and
/// `group` are the rootfs' files (empty when absent).
pub fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<ResolvedUser, String> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() {
        return Err(format!("invalid user {spec:?}: empty user name"));
    }
    let entry = passwd_entries(passwd).find(|e| e.name == user || e.uid.to_string() == user);
    let (uid, mut gid, name, home) = match (&entry, user.parse::<u32>()) {
        (Some(e), _) => (e.uid, e.gid, Some(e.name), Some(e.home.to_string())),
        (None, Ok(n)) => (n, 0, None, None),
        (None, Err(_)) => {
            return Err(format!(
                "unable to find user {user}: no matching entries in the image's /etc/passwd"
            ));
        }
    };
    let mut listed = Vec::new();
    match grp {
        Some(g) if !g.is_empty() => {
            gid = match group_entries(group).find(|(n, id, _)| *n == g || id.to_string() == g) {
                Some((_, id, _)) => id,
                None => g.parse().map_err(|_| {
                    format!(
                        "unable to find group {g}: no matching entries in the image's /etc/group"
                    )
                })?,
            };
        }
        Some(_) => return Err(format!("invalid user {spec:?}: empty group name")),
        None => {
            if let Some(name) = name {
                listed = group_entries(group)
                    .filter(|(_, _, members)| members.contains(&name))
                    .map(|(_, id, _)| id)
                    .collect();
            }
        }
    }
    let mut groups = vec![gid];
    for id in listed {
        if !groups.contains(&id) {
            groups.push(id);
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        groups,
        home: home.filter(|h| !h.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str =
        "root:x:0:\nwheel:x:10:app,root\nnogroup:x:65534:\napp:x:1000:\ndocker:x:999:app\n";

    #[test]
    fn account_files_are_read_up_to_a_bound_in_whole_lines() {
        assert_eq!(read_account_file(PASSWD.as_bytes()), PASSWD);
        // A file far over the bound: the first whole lines only, and the
        // entries in them still resolve.
        let line = "app:x:1000:1000::/home/app:/bin/sh\n";
        let endless = std::io::repeat(b'#').take(MAX_ACCOUNT_FILE * 4);
        let text = read_account_file(line.as_bytes().chain(endless));
        assert!(text.len() as u64 <= MAX_ACCOUNT_FILE);
        assert!(text.ends_with('\n'));
        let r = resolve_user("app", &text, "").unwrap();
        assert_eq!((r.uid, r.gid), (1000, 1000));
    }

    #[test]
    fn names_numbers_and_groups() {
        let r = resolve_user("nobody", PASSWD, GROUP).unwrap();
        assert_eq!(
            (r.uid, r.gid, r.groups.clone()),
            (65534, 65534, vec![65534])
        );
        let r = resolve_user("app", PASSWD, GROUP).unwrap();
        assert_eq!(
            (r.uid, r.gid, r.groups.clone()),
            (1000, 1000, vec![1000, 10, 999])
        );
        assert_eq!(r.home.as_deref(), Some("/home/app"));
        let r = resolve_user("app:nogroup", PASSWD, GROUP).unwrap();
        assert_eq!((r.uid, r.gid, r.groups.clone()), (1000, 65534, vec![65534]));
        let r = resolve_user("4242", PASSWD, GROUP).unwrap();
        assert_eq!((r.uid, r.gid, r.groups.clone()), (4242, 0, vec![0]));
        let r = resolve_user("4242:77", PASSWD, GROUP).unwrap();
        assert_eq!((r.uid, r.gid), (4242, 77));
        let r = resolve_user("1000", PASSWD, GROUP).unwrap();
        assert_eq!(r.gid, 1000);
    }

    /// Issue 12: the primary group is a supplementary group too, once,
    /// even when /etc/group also lists the user in it.
    #[test]
    fn primary_group_is_in_the_supplementary_list() {
        let passwd = "app:x:1000:1001::/home/app:/bin/sh\n";
        let group = "appgrp:x:1001:app\nextra:x:1002:app\n";
        let r = resolve_user("app", passwd, group).unwrap();
        assert_eq!((r.uid, r.gid, r.groups), (1000, 1001, vec![1001, 1002]));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert!(
            resolve_user("ghost", PASSWD, GROUP)
                .unwrap_err()
                .contains("unable to find user ghost")
        );
        assert!(
            resolve_user("app:ghosts", PASSWD, GROUP)
                .unwrap_err()
                .contains("group ghosts")
        );
        assert!(resolve_user("", PASSWD, GROUP).is_err());
    }
}
