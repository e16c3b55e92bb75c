//! The step's process, started by pid 1 after pivot_root: user and groups
//! from the image's passwd/group, cwd, environment, umask 022, stdin from
//! /dev/null, stdout/stderr into the supervisor's pipes, no new privileges,
//! then execve with a PATH lookup done inside the rootfs using the step's own
//! PATH (not the host's).

use std::ffi::CString;
use std::fs;
use std::os::fd::RawFd;

use crate::sandbox::idmap::NEED_RANGE_HINT;
use crate::sandbox::sys::{self, frame};
use crate::sandbox::user::{ResolvedUser, read_account_file, resolve_user};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug)]
pub(crate) struct ExecPlan {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: String,
    pub user: Option<String>,
    pub hostname: String,
    /// Whether to set the hostname (only in a UTS namespace of our own).
    pub set_hostname: bool,
    /// Whether setgroups is allowed and ids beyond 0 exist (range mapping).
    pub range: bool,
    pub max_uid: u32,
    pub max_gid: u32,
    pub stdout: RawFd,
    pub stderr: RawFd,
    /// `--ulimit`s, set before exec.
    pub ulimits: Vec<super::limits::Ulimit>,
}

/// Why exec did not happen: a setup error (`frame::ERROR`) or a problem with
/// the command itself (`frame::EXEC`).
pub(crate) type ExecFailure = (u8, String);

fn setup_err(s: String) -> ExecFailure {
    (frame::ERROR, s)
}

fn resolve(plan: &ExecPlan) -> Result<ResolvedUser, ExecFailure> {
    let account = |p: &str| fs::File::open(p).map(read_account_file).unwrap_or_default();
    let passwd = account("/etc/passwd");
    let group = account("/etc/group");
    let spec = plan.user.as_deref().unwrap_or("0");
    let u = resolve_user(spec, &passwd, &group).map_err(|e| (frame::EXEC, e))?;
    if u.uid > plan.max_uid || u.gid > plan.max_gid {
        return Err((
            frame::EXEC,
            format!(
                "USER {spec} needs uid {} / gid {}, but {NEED_RANGE_HINT}",
                u.uid, u.gid
            ),
        ));
    }
    Ok(u)
}

fn find_in_path(cmd: &str, path: &str) -> Option<CString> {
    if cmd.contains('/') {
        return CString::new(cmd).ok();
    }
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let Ok(c) = CString::new(format!("{dir}/{cmd}")) else {
            continue;
        };
        // An eaccess-like check with the step's ids.
        if sys::executable(&c) && fs::metadata(format!("{dir}/{cmd}")).is_ok_and(|m| m.is_file()) {
            return Some(c);
        }
    }
    None
}

/// Gives the step default signal handling. Ignored signals survive execve,
/// and the Rust runtime ignores SIGPIPE, so without this `yes | head` inside
/// a step would see EPIPE errors instead of dying quietly as under a shell.
fn reset_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            sys::default_signal(sig);
        }
    }
    sys::unblock_all_signals();
}

/// Never returns on success (the process image is replaced).
pub(crate) fn exec_step(plan: &ExecPlan) -> ExecFailure {
    match exec_inner(plan) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

enum Never {}

fn exec_inner(plan: &ExecPlan) -> Result<Never, ExecFailure> {
    if plan.argv.is_empty() {
        return Err((frame::EXEC, "empty command line".into()));
    }
    // Best effort: the UTS namespace is ours, but some container engines'
    // seccomp profiles refuse sethostname anyway; /etc/hostname and
    // $HOSTNAME still carry the name.
    if plan.set_hostname {
        let _ = sys::sethostname(plan.hostname.as_bytes());
    }
    super::limits::apply(&plan.ulimits).map_err(setup_err)?;
    let user = resolve(plan)?;
    // Later entries win, as with repeated ENV; execve would keep both.
    let mut env: Vec<(String, String)> = Vec::new();
    for (k, v) in &plan.env {
        match env.iter_mut().find(|(n, _)| n == k) {
            Some(e) => e.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    let has = |env: &[(String, String)], k: &str| env.iter().any(|(n, _)| n == k);
    if !has(&env, "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    if !has(&env, "HOSTNAME") {
        env.push(("HOSTNAME".into(), plan.hostname.clone()));
    }
    if !has(&env, "HOME") {
        let home = user.home.clone().unwrap_or_else(|| {
            if user.uid == 0 {
                "/root".into()
            } else {
                "/".into()
            }
        });
        env.push(("HOME".into(), home));
    }
    let path_var = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let cenv: Vec<CString> = env
        .iter()
        .map(|(k, v)| CString::new(format!("{k}={v}")))
        .collect::<Result<_, _>>()
        .map_err(|_| {
            (
                frame::EXEC,
                "an environment variable contains a NUL byte".into(),
            )
        })?;
    let cargv: Vec<CString> = plan
        .argv
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|_| (frame::EXEC, "an argument contains a NUL byte".into()))?;

    // Working directory: created (as root) when missing, as BuildKit does.
    let cwd = if plan.cwd.is_empty() {
        "/"
    } else {
        plan.cwd.as_str()
    };
    fs::create_dir_all(cwd)
        .map_err(|e| setup_err(format!("creating working directory {cwd}: {e}")))?;
    let ccwd = sys::cstr(cwd).map_err(setup_err)?;
    if sys::chdir(&ccwd) != 0 {
        return Err(setup_err(sys::errno_msg(format!("chdir {cwd}"))));
    }
    sys::stdin_from_dev_null().map_err(|e| setup_err(format!("stdin from /dev/null: {e}")))?;
    if sys::dup2(plan.stdout, 1) < 0 || sys::dup2(plan.stderr, 2) < 0 {
        return Err(setup_err(sys::errno_msg("connecting stdout/stderr")));
    }
    sys::umask(0o022);
    reset_signals();
    if plan.range {
        let groups: Vec<libc::gid_t> = user
            .groups
            .iter()
            .copied()
            .filter(|g| *g <= plan.max_gid)
            .collect();
        if sys::setgroups(&groups) != 0 {
            return Err(setup_err(sys::errno_msg("setgroups")));
        }
    }
    if sys::setresgid(user.gid) != 0 {
        return Err(setup_err(sys::errno_msg(format!("setgid {}", user.gid))));
    }
    if sys::setresuid(user.uid) != 0 {
        return Err(setup_err(sys::errno_msg(format!("setuid {}", user.uid))));
    }
    if sys::no_new_privs() != 0 {
        return Err(setup_err(sys::errno_msg("PR_SET_NO_NEW_PRIVS")));
    }
    let prog = find_in_path(&plan.argv[0], &path_var).ok_or_else(|| {
        (
            frame::EXEC,
            format!(
                "command not found: {} (searched PATH={path_var} in the rootfs)",
                plan.argv[0]
            ),
        )
    })?;
    // Every inherited descriptor except 0..=2 is closed by exec.
    sys::close_on_exec_from(3);
    sys::execve(&prog, &cargv, &cenv);
    Err((
        frame::EXEC,
        sys::errno_msg(format!("exec {}", prog.to_string_lossy())),
    ))
}
