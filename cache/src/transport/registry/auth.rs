//! Registry authentication: the credentials a user saved with `docker login`,
//! the `WWW-Authenticate` challenge a registry answers 401 with, and the
//! bearer-token exchange.
//!
//! Docker keeps credentials in `$DOCKER_CONFIG/config.json` (else
//! `~/.docker/config.json`) as `auths.<host>.auth = base64(user:password)`.
//! Reading the same file means a `docker login` (or `podman login
//! --authfile`, `skopeo login`) is all a user needs. Credential helpers
//! (`credsStore`, `credHelpers`) run external programs and are not supported;
//! an error mentions them when a host has only a helper entry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::error::{RegistryError, Result};

/// A user name and password (or personal access token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret, not even in debug output.
        write!(f, "Credentials({:?}, <redacted>)", self.username)
    }
}

impl Credentials {
    /// The `Authorization: Basic …` header value.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// The credentials found in a Docker config file, by normalized host.
#[derive(Debug, Clone, Default)]
pub struct CredentialStore {
    by_host: BTreeMap<String, Credentials>,
    /// Hosts that have only a credential-helper entry (which we cannot run).
    helper_hosts: Vec<String>,
    /// A global `credsStore` is configured.
    has_creds_store: bool,
    /// The file the credentials came from, for messages.
    source: Option<PathBuf>,
}

impl CredentialStore {
    /// Loads `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. A
    /// missing file means no credentials (anonymous access), not an error.
    pub fn from_env() -> Result<Self> {
        match config_path(std::env::var_os("DOCKER_CONFIG"), std::env::var_os("HOME")) {
            Some(path) => Self::from_file(&path),
            None => Ok(CredentialStore::default()),
        }
    }

    /// Loads a Docker `config.json`; a missing file gives an empty store.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(CredentialStore::default());
            }
            Err(e) => {
                return Err(RegistryError::Credentials {
                    path: path.display().to_string(),
                    why: e.to_string(),
                });
            }
        };
        let mut store = Self::parse(&text).map_err(|why| RegistryError::Credentials {
            path: path.display().to_string(),
            why,
        })?;
        store.source = Some(path.to_path_buf());
        Ok(store)
    }

    /// Parses the JSON text of a Docker config file.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let mut store = CredentialStore::default();
        if let Some(auths) = v.get("auths").and_then(|a| a.as_object()) {
            for (key, entry) in auths {
                let host = normalize_host(key);
                if let Some(creds) = decode_entry(key, entry)? {
                    store.by_host.insert(host, creds);
                }
            }
        }
        if let Some(helpers) = v.get("credHelpers").and_then(|a| a.as_object()) {
            store.helper_hosts = helpers.keys().map(|k| normalize_host(k)).collect();
        }
        store.has_creds_store = v
            .get("credsStore")
            .and_then(|s| s.as_str())
            .is_some_and(|s| !s.is_empty());
        Ok(store)
    }

    /// The credentials for a registry name (`docker.io` also matches the
    /// `https://index.docker.io/v1/` key `docker login` writes).
    pub fn get(&self, registry: &str) -> Option<&Credentials> {
        let host = normalize_host(registry);
        self.by_host.get(&host)
    }

    /// Extra words for a 401 message: where we looked, and whether a helper
    /// we cannot run holds the credentials.
    pub fn hint_for(&self, registry: &str) -> String {
        let host = normalize_host(registry);
        let mut s = String::new();
        if self.by_host.contains_key(&host) {
            s.push_str("; the saved credentials for it were rejected");
        } else if self.helper_hosts.contains(&host) || self.has_creds_store {
            s.push_str(
                "; credential helpers (credsStore/credHelpers) are not supported: \
                 put an `auths` entry with `auth` in a config.json and point DOCKER_CONFIG at its directory",
            );
        } else if let Some(p) = &self.source {
            s.push_str(&format!("; {} has no entry for it", p.display()));
        }
        s
    }
}

fn decode_entry(
    key: &str,
    entry: &serde_json::Value,
) -> std::result::Result<Option<Credentials>, String> {
    if let Some(auth) = entry
        .get("auth")
        .and_then(|a| a.as_str())
        .filter(|a| !a.is_empty())
    {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| format!("auths.{key:?}.auth is not base64: {e}"))?;
        let raw = String::from_utf8(raw)
            .map_err(|_| format!("auths.{key:?}.auth is not UTF-8 after base64 decoding"))?;
        let Some((user, pass)) = raw.split_once(':') else {
            return Err(format!(
                "auths.{key:?}.auth must encode `user:password` (no `:` found)"
            ));
        };
        return Ok(Some(Credentials {
            username: user.to_string(),
            password: pass.to_string(),
        }));
    }
    // Some tools write the parts separately.
    let user = entry.get("username").and_then(|u| u.as_str());
    let pass = entry.get("password").and_then(|p| p.as_str());
    match (user, pass) {
        (Some(u), Some(p)) if !u.is_empty() => Ok(Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        })),
        _ => Ok(None),
    }
}

/// Where Docker keeps logins: `$DOCKER_CONFIG/config.json`, else
/// `$HOME/.docker/config.json` (empty variables count as unset).
pub fn config_path(
    docker_config: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    match (
        docker_config.filter(|v| !v.is_empty()),
        home.filter(|v| !v.is_empty()),
    ) {
        (Some(dir), _) => Some(PathBuf::from(dir).join("config.json")),
        (None, Some(h)) => Some(PathBuf::from(h).join(".docker/config.json")),
        (None, None) => None,
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `http://h:5000/` → `h:5000`.
pub fn normalize_host(key: &str) -> String {
    let k = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

/// One parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `bearer` or `basic` (lowercased).
    pub scheme: String,
    /// Auth parameters (`realm`, `service`, `scope`, …), keys lowercased.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// Parses the first challenge of a `WWW-Authenticate` header value.
    /// Registries send one; quoted values may contain commas (`pull,push`).
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = match header.split_once(char::is_whitespace) {
            Some((s, r)) => (s, r),
            None => (header, ""),
        };
        if scheme.is_empty() {
            return None;
        }
        let mut params = BTreeMap::new();
        let mut chars = rest.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
                chars.next();
            }
            let mut key = String::new();
            while let Some(&c) = chars.peek() {
                if c == '=' || c == ',' {
                    break;
                }
                key.push(c);
                chars.next();
            }
            if key.trim().is_empty() {
                break;
            }
            if chars.next() != Some('=') {
                break;
            }
            let mut value = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
            params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
        }
        Some(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }
}

/// The body of a token endpoint's answer: Docker's `token`, OAuth's
/// `access_token` (registries send one or both).
pub fn token_from_response(body: &[u8]) -> std::result::Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("token response is not JSON: {e}"))?;
    ["token", "access_token"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|t| t.as_str()).filter(|t| !t.is_empty()))
        .map(str::to_string)
        .ok_or_else(|| "token response has neither `token` nor `access_token`".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_docker_hub_bearer_challenge_with_comma_in_scope() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        )
        .expect("challenge");
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:library/busybox:pull,push");
        let b = Challenge::parse(r#"Basic realm="Registry Realm""#).expect("basic");
        assert_eq!(b.scheme, "basic");
        assert_eq!(b.params["realm"], "Registry Realm");
    }

    #[test]
    fn reads_auths_and_normalizes_docker_hub_keys() {
        let json = r#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNzOndpdGg6Y29sb25z"},
            "127.0.0.1:5000":{"auth":"YTpi"},
            "http://reg.lan:8080/":{"username":"u","password":"p"}},
            "credHelpers":{"gcr.io":"gcloud"}}"#;
        let s = CredentialStore::parse(json).expect("parse");
        let hub = s.get("docker.io").expect("hub creds");
        assert_eq!(hub.username, "user");
        assert_eq!(hub.password, "pass:with:colons");
        assert_eq!(
            s.get("127.0.0.1:5000").map(|c| c.password.as_str()),
            Some("b")
        );
        assert_eq!(
            s.get("reg.lan:8080").map(|c| c.username.as_str()),
            Some("u")
        );
        assert!(s.get("ghcr.io").is_none());
        assert!(s.hint_for("gcr.io").contains("not supported"));
        assert_eq!(
            s.get("127.0.0.1:5000").map(Credentials::basic_header),
            Some("Basic YTpi".to_string())
        );
        assert!(!format!("{hub:?}").contains("pass"));
    }

    #[test]
    fn bad_auth_entries_are_errors_not_silence() {
        assert!(CredentialStore::parse(r#"{"auths":{"h":{"auth":"!!"}}}"#).is_err());
        assert!(CredentialStore::parse(r#"{"auths":{"h":{"auth":"bm9jb2xvbg=="}}}"#).is_err());
        assert!(CredentialStore::parse("not json").is_err());
    }

    #[test]
    fn docker_config_wins_over_home_and_missing_files_mean_anonymous() {
        assert_eq!(
            config_path(Some("/cfg".into()), Some("/home/u".into())),
            Some(PathBuf::from("/cfg/config.json"))
        );
        assert_eq!(
            config_path(Some("".into()), Some("/home/u".into())),
            Some(PathBuf::from("/home/u/.docker/config.json"))
        );
        assert_eq!(config_path(None, None), None);
        let t = std::env::temp_dir().join(format!("strata-no-config-{}", std::process::id()));
        let s = CredentialStore::from_file(&t.join("config.json")).expect("missing is fine");
        assert!(s.get("docker.io").is_none());
    }

    #[test]
    fn token_bodies() {
        assert_eq!(
            token_from_response(br#"{"token":"t1"}"#),
            Ok("t1".to_string())
        );
        assert_eq!(
            token_from_response(br#"{"access_token":"t2"}"#),
            Ok("t2".to_string())
        );
        assert!(token_from_response(br#"{"x":1}"#).is_err());
    }
}
