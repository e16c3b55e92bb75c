//! The environment `git` runs in for `ADD <git repository>`: only what the
//! build was given, never what the host's user can reach.
//!
//! A Dockerfile comes from a stranger as often as not. Run as the CI user
//! with the user's environment, `git clone` would authenticate with the
//! user's ssh keys and agent, credential helpers, `~/.netrc` and
//! `url.*.insteadOf` rewrites, and it would clone local paths: `ADD
//! git@host:private/repo.git` or `ADD /home/ci/other.git` would put what
//! the CI user can read into an image. So, as BuildKit does, git gets a
//! cleared environment with an empty home, no system or global config,
//! only the network transports (`http`, `https`, `git`, `ssh`), and ssh
//! with no config and no identity of the host's. What it may authenticate
//! with comes from the command line only: `--ssh default` (an agent socket
//! or a key) for ssh remotes, and the `GIT_AUTH_TOKEN` / `GIT_AUTH_HEADER`
//! secrets (optionally `.<host>`) for HTTP(S) remotes, as BuildKit reads
//! them: a token becomes `Authorization: basic base64(x-access-token:TOKEN)`,
//! a header secret is the header's whole value.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;

use crate::options::{SecretSpec, SshSpec};

/// What a checkout may authenticate with.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GitAuth {
    /// `--ssh default`: an agent socket, or a private key file.
    pub ssh: Option<PathBuf>,
    /// The `Authorization` header value for an HTTP(S) remote.
    pub http_authorization: Option<String>,
}

impl GitAuth {
    /// The credentials the build was given for `url`.
    pub fn for_remote(url: &str, secrets: &[SecretSpec], ssh: &[SshSpec]) -> anyhow::Result<Self> {
        let host = host_of(url);
        let secret = |id: &str| secrets.iter().find(|s| s.id == id);
        let mut names = Vec::new();
        if let Some(h) = &host {
            names.push((format!("GIT_AUTH_HEADER.{h}"), false));
            names.push((format!("GIT_AUTH_TOKEN.{h}"), true));
        }
        names.push(("GIT_AUTH_HEADER".to_string(), false));
        names.push(("GIT_AUTH_TOKEN".to_string(), true));
        let mut http_authorization = None;
        for (id, token) in names {
            if let Some(s) = secret(&id) {
                let v = String::from_utf8_lossy(&s.value()?).trim().to_string();
                http_authorization = Some(if token {
                    let raw = format!("x-access-token:{v}");
                    format!(
                        "basic {}",
                        base64::engine::general_purpose::STANDARD.encode(raw)
                    )
                } else {
                    v
                });
                break;
            }
        }
        let ssh = ssh
            .iter()
            .find(|s| s.id == "default")
            .and_then(SshSpec::agent_or_key);
        Ok(GitAuth {
            ssh,
            http_authorization,
        })
    }
}

/// A `git` command in the isolated environment, with `home` (an empty
/// directory of the checkout's) as its home.
pub fn git_command(home: &Path, url: &str, auth: &GitAuth) -> Command {
    let mut c = Command::new("git");
    c.env_clear()
        .envs(passed_through())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ALLOW_PROTOCOL", "http:https:git:ssh")
        .env("GIT_SSH_COMMAND", ssh_command(home, auth.ssh.as_deref()))
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    if let Some(sock) = auth.ssh.as_deref().filter(|p| is_socket(p)) {
        c.env("SSH_AUTH_SOCK", sock);
    }
    if let Some(h) = &auth.http_authorization {
        // Through the environment, not `-c` on the command line, where
        // other users could read it in /proc.
        c.env("GIT_CONFIG_COUNT", "1")
            .env(
                "GIT_CONFIG_KEY_0",
                format!("http.{}.extraheader", token_scope(url)),
            )
            .env("GIT_CONFIG_VALUE_0", format!("Authorization: {h}"));
    }
    c
}

/// What a failed clone of `url` may be missing, for the error message.
pub fn auth_hint(url: &str, auth: &GitAuth) -> Option<&'static str> {
    let ssh = url.starts_with("ssh://") || !url.contains("://");
    if ssh && auth.ssh.is_none() {
        Some(
            "strata does not use this machine's ssh keys or agent for ADD: pass --ssh default to use the agent in SSH_AUTH_SOCK (or --ssh default=KEYFILE)",
        )
    } else if !ssh && auth.http_authorization.is_none() {
        Some(
            "strata does not use this machine's git credentials for ADD: pass a token with --secret id=GIT_AUTH_TOKEN (or id=GIT_AUTH_TOKEN.<host>)",
        )
    } else {
        None
    }
}

/// The variables kept from strata's environment: where programs are and
/// how to reach the network (proxies, CA certificates), no credentials.
const PASSED_THROUGH: [&str; 12] = [
    "PATH",
    "TMPDIR",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// [`PASSED_THROUGH`]'s variables that are set here.
fn passed_through() -> Vec<(OsString, OsString)> {
    PASSED_THROUGH
        .iter()
        .filter_map(|k| std::env::var_os(k).map(|v| (OsString::from(k), v)))
        .collect()
}

/// ssh with no config file and no identity but the one the build was
/// given; host keys are not checked (there is no known-hosts file of the
/// build's, as with BuildKit when none is given).
fn ssh_command(home: &Path, given: Option<&Path>) -> String {
    let mut cmd = String::from(
        "ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no \
         -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
    );
    // Naming an identity file keeps ssh from trying the user's ~/.ssh/id_*
    // (it adds those only when none is named); a missing one is skipped.
    let none = home.join("no-identity");
    let (agent, identity) = match given {
        Some(sock) if is_socket(sock) => (Some(sock), none.as_path()),
        Some(key) => (None, key),
        None => (None, none.as_path()),
    };
    match agent {
        Some(sock) => cmd.push_str(&format!(" -o IdentityAgent={}", shell_quote(sock))),
        None => cmd.push_str(" -o IdentityAgent=none -o IdentitiesOnly=yes"),
    }
    cmd.push_str(&format!(" -o IdentityFile={}", shell_quote(identity)));
    cmd
}

fn is_socket(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

/// `p` in single quotes for the shell git runs `GIT_SSH_COMMAND` with.
fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.to_string_lossy().replace('\'', r"'\''"))
}

/// The host (and port) of a URL, without user information.
fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host.is_empty()).then(|| host.to_string())
}

/// Which URLs the header is sent to: the remote itself, or all of
/// github.com (as BuildKit and actions/checkout do).
fn token_scope(url: &str) -> &str {
    for pfx in ["https://github.com/", "https://www.github.com/"] {
        if url.starts_with(pfx) {
            return pfx;
        }
    }
    url
}

#[cfg(test)]
mod tests;
