//! The step's /proc, and what to do where a fresh procfs is refused.
//!
//! A step normally gets its own pid namespace and a procfs mounted for it.
//! Container engines mask parts of their /proc (podman and Kubernetes put
//! tmpfs or /dev/null over /proc/kcore, /proc/sys, …), and the kernel then
//! refuses a new procfs in a user namespace, since it would reveal what the
//! masks hide. A recursive bind of the caller's /proc keeps the masks and is
//! allowed, but it shows the caller's pid namespace, so the step then runs
//! without a pid namespace of its own (its pids match its /proc), and the
//! process tree is ended by a subreaper sweep instead of by pid 1's death.
//! [`probe`] decides once per sandbox, by trying.

use crate::sandbox::idmap::IdMapping;
use crate::sandbox::sys;
use crate::sandbox::userns::run_in_userns;

/// How the step's /proc is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcMode {
    /// A new pid namespace and a procfs of its own.
    Fresh,
    /// No pid namespace; a recursive bind of the caller's /proc.
    BindCaller,
}

impl ProcMode {
    pub fn new_pid_namespace(self) -> bool {
        self == ProcMode::Fresh
    }
}

/// Tries, in a throwaway user, mount and pid namespace mapped like the
/// steps, to mount a procfs. Returns the mode and, for the fallback, why.
pub(crate) fn probe(mapping: &IdMapping) -> (ProcMode, Option<String>) {
    let res = run_in_userns(mapping, || -> Result<String, String> {
        if sys::unshare(libc::CLONE_NEWPID) != 0 {
            return Ok(sys::errno_msg("unshare(CLONE_NEWPID)"));
        }
        let pid = sys::fork();
        if pid < 0 {
            return Err(sys::errno_msg("fork"));
        }
        if pid == 0 {
            // Our own private mount namespace.
            let r = sys::mount_raw(
                Some(c"proc"),
                c"/proc",
                Some(c"proc"),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                None,
            );
            let errno = if r == 0 {
                0
            } else {
                sys::last_os_error().raw_os_error().unwrap_or(1)
            };
            sys::exit_now(errno.clamp(0, 255));
        }
        let status = sys::wait_pid(pid).map_err(|e| format!("waitpid: {e}"))?;
        match libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)) {
            Some(0) => Ok(String::new()),
            Some(errno) => Ok(format!(
                "mounting a procfs is refused ({})",
                sys::os_error_text(&std::io::Error::from_raw_os_error(errno))
            )),
            None => Ok("the procfs probe was killed".into()),
        }
    });
    match res {
        Ok(why) if why.is_empty() => (ProcMode::Fresh, None),
        Ok(why) => (
            ProcMode::BindCaller,
            Some(format!(
                "{why}, typically because the container engine masks parts of /proc: steps \
                 see a bind of strata's /proc and share its pid namespace"
            )),
        ),
        // The sandbox's own probe reports namespace failures; keep the default.
        Err(_) => (ProcMode::Fresh, None),
    }
}

/// Run by the step's parent when the step has no pid namespace: kills and
/// reaps every process that is still a child of this (subreaper) process,
/// until none is left: what the step left running in the background.
pub(crate) fn kill_leftovers() {
    let me = sys::getpid();
    for _ in 0..1000 {
        let kids = children_of(me);
        if kids.is_empty() {
            return;
        }
        for k in kids {
            sys::kill(k, libc::SIGKILL);
        }
        let mut st = 0;
        while sys::waitpid(-1, &mut st, libc::WNOHANG | libc::__WALL) > 0 {}
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Pids whose parent is `parent`, from /proc/<pid>/stat.
fn children_of(parent: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| parent_in_stat(&s))
                == Some(parent)
        })
        .collect()
}

/// The ppid field of a /proc/<pid>/stat line (after the parenthesised
/// command name, which may itself hold spaces and parentheses).
fn parent_in_stat(stat: &str) -> Option<libc::pid_t> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_pid_is_read_after_the_command_name() {
        assert_eq!(parent_in_stat("42 (a) b) c) S 7 42 42 0"), Some(7));
        assert_eq!(parent_in_stat("garbage"), None);
    }
}
