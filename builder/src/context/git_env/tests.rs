use std::collections::BTreeMap;

use super::*;
use crate::options::SecretSource;

fn secret(id: &str, file: &Path, value: &str) -> SecretSpec {
    std::fs::write(file, value).unwrap();
    SecretSpec {
        id: id.into(),
        source: SecretSource::File(file.to_path_buf()),
    }
}

#[test]
fn http_credentials_come_from_the_builds_secrets_as_buildkit_reads_them() {
    let t = tempfile::tempdir().unwrap();
    let url = "https://git.example:8443/team/app.git";
    let none = GitAuth::for_remote(url, &[], &[]).unwrap();
    assert_eq!(none.http_authorization, None);
    // A token becomes basic x-access-token; the host's own beats the
    // generic one; a header secret is the header's whole value and beats a
    // token.
    let generic = secret("GIT_AUTH_TOKEN", &t.path().join("a"), "generic\n");
    let for_host = secret(
        "GIT_AUTH_TOKEN.git.example:8443",
        &t.path().join("b"),
        "t0k",
    );
    let auth = GitAuth::for_remote(url, &[generic.clone(), for_host], &[]).unwrap();
    assert_eq!(
        auth.http_authorization.as_deref(),
        Some("basic eC1hY2Nlc3MtdG9rZW46dDBr") // base64("x-access-token:t0k")
    );
    let header = secret("GIT_AUTH_HEADER", &t.path().join("c"), "Bearer xyz");
    let auth = GitAuth::for_remote(url, &[generic, header], &[]).unwrap();
    assert_eq!(auth.http_authorization.as_deref(), Some("Bearer xyz"));
    // Another host's secret is not sent.
    let other = secret("GIT_AUTH_TOKEN.other.example", &t.path().join("d"), "no");
    let auth = GitAuth::for_remote(url, &[other], &[]).unwrap();
    assert_eq!(auth.http_authorization, None);
}

/// The variables a checkout's git runs with: nothing of the caller's but
/// PATH, TMPDIR, proxies and CA locations.
fn envs(c: &Command) -> BTreeMap<String, String> {
    c.get_envs()
        .filter_map(|(k, v)| {
            Some((
                k.to_string_lossy().into_owned(),
                v?.to_string_lossy().into_owned(),
            ))
        })
        .collect()
}

#[test]
fn git_runs_without_the_hosts_config_keys_or_agent() {
    let home = Path::new("/tmp/checkout/home");
    let url = "https://git.example/app.git";
    let e = envs(&git_command(home, url, &GitAuth::default()));
    let set_here = [
        "HOME",
        "XDG_CONFIG_HOME",
        "GIT_CONFIG_NOSYSTEM",
        "GIT_CONFIG_GLOBAL",
        "GIT_TERMINAL_PROMPT",
        "GIT_ALLOW_PROTOCOL",
        "GIT_SSH_COMMAND",
        "LC_ALL",
    ];
    for k in e.keys() {
        let k = k.as_str();
        assert!(
            PASSED_THROUGH.contains(&k) || set_here.contains(&k),
            "{k} reaches git"
        );
    }
    assert_eq!(e["HOME"], "/tmp/checkout/home");
    assert_eq!(e["GIT_CONFIG_GLOBAL"], "/dev/null");
    assert_eq!(e["GIT_ALLOW_PROTOCOL"], "http:https:git:ssh");
    let ssh = &e["GIT_SSH_COMMAND"];
    assert!(ssh.starts_with("ssh -F /dev/null "), "{ssh}");
    assert!(
        ssh.contains("-o IdentityAgent=none -o IdentitiesOnly=yes -o IdentityFile='/tmp/checkout/home/no-identity'"),
        "{ssh}"
    );
    // A header goes through the environment, scoped to the remote.
    let auth = GitAuth {
        ssh: None,
        http_authorization: Some("basic abc".into()),
    };
    let e = envs(&git_command(home, url, &auth));
    assert_eq!(
        e["GIT_CONFIG_KEY_0"],
        "http.https://git.example/app.git.extraheader"
    );
    assert_eq!(e["GIT_CONFIG_VALUE_0"], "Authorization: basic abc");
    let e = envs(&git_command(home, "https://github.com/o/r.git", &auth));
    assert_eq!(
        e["GIT_CONFIG_KEY_0"],
        "http.https://github.com/.extraheader"
    );
}

#[test]
fn a_given_key_or_agent_is_the_only_ssh_identity() {
    let t = tempfile::tempdir().unwrap();
    let key = t.path().join("it's a key");
    std::fs::write(&key, "k").unwrap();
    let cmd = ssh_command(t.path(), Some(&key));
    assert!(
        cmd.ends_with(&format!(
            "-o IdentityAgent=none -o IdentitiesOnly=yes -o IdentityFile='{}/it'\\''s a key'",
            t.path().display()
        )),
        "{cmd}"
    );
    let sock = t.path().join("agent.sock");
    let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let cmd = ssh_command(t.path(), Some(&sock));
    assert!(
        cmd.contains(&format!("-o IdentityAgent='{}'", sock.display())),
        "{cmd}"
    );
    let e = envs(&git_command(
        t.path(),
        "git@host:r.git",
        &GitAuth {
            ssh: Some(sock.clone()),
            http_authorization: None,
        },
    ));
    assert_eq!(e["SSH_AUTH_SOCK"], sock.display().to_string());
}

#[test]
fn hosts_and_hints() {
    assert_eq!(
        host_of("https://u:p@h.example:81/x.git").as_deref(),
        Some("h.example:81")
    );
    assert_eq!(host_of("git@h:x.git"), None);
    let none = GitAuth::default();
    assert!(
        auth_hint("git@h:x.git", &none)
            .unwrap()
            .contains("--ssh default")
    );
    assert!(
        auth_hint("https://h/x.git", &none)
            .unwrap()
            .contains("GIT_AUTH_TOKEN")
    );
}
