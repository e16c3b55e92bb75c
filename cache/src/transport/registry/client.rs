//! The HTTP engine under every registry operation: one blocking `ureq` agent,
//! requests that carry the right `Authorization`, answer a 401 challenge by
//! fetching a bearer token (or using basic credentials) and trying again, and
//! retry transient failures with backoff.
//!
//! Operations above this (manifests, blobs, uploads) only say *what* to send
//! and which repository scopes they need; they never see tokens or retries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::http::{Request, Response};

use super::auth::{Challenge, CredentialStore, token_from_response};
use super::endpoint::{Endpoint, EndpointPolicy};
use super::error::{RegistryError, Result};
use super::retry::{RetryPolicy, is_retryable_error, is_retryable_status, parse_retry_after};

/// The largest token, error or manifest body read into memory. Manifests and
/// indexes are a few KiB; 4 MiB is what containerd allows too.
pub const MAX_SMALL_BODY: u64 = 4 << 20;

/// Uploads bigger than this go in chunks (PATCH) rather than one PUT. A
/// PUT's body is held in memory and a push sends a few blobs at a time
/// (`parallel::TRANSFER_WORKERS`): 16 MiB keeps that under 50 MiB, where
/// 32 MiB took a push of 30-50 MB layers near 100 MiB.
pub const DEFAULT_CHUNK_THRESHOLD: u64 = 16 << 20;
/// The size of one PATCH chunk (held in memory while sent, so it can be retried).
pub const DEFAULT_CHUNK_SIZE: usize = 16 << 20;

/// Everything a [`RegistryClient`] is configured with.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Schemes, insecure hosts, Docker Hub mirror.
    pub endpoints: EndpointPolicy,
    /// Saved `docker login` credentials.
    pub credentials: CredentialStore,
    /// Retry policy for transient failures.
    pub retry: RetryPolicy,
    /// Blobs larger than this are uploaded with chunked PATCH requests.
    pub chunk_threshold: u64,
    /// Bytes per PATCH request.
    pub chunk_size: usize,
    /// How long a connection may take to open.
    pub connect_timeout: Duration,
    /// How long to wait for a response header, and for each read of a body.
    pub read_timeout: Duration,
    /// How long one blob download may take in all, retries included.
    pub blob_deadline: BlobDeadline,
}

/// The overall time one blob may take: `base` plus its size at `min_rate`.
/// A per-read timeout alone lets a registry that sends one byte every few
/// seconds hold a build for ever; this bounds the whole download, growing
/// with the blob so a big layer on a slow link still gets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobDeadline {
    pub base: Duration,
    /// Bytes per second below which a download is given up.
    pub min_rate: u64,
}

impl Default for BlobDeadline {
    fn default() -> Self {
        BlobDeadline {
            base: Duration::from_secs(120),
            min_rate: 32 * 1024,
        }
    }
}

impl BlobDeadline {
    /// The budget for a blob of `size` bytes (1 GiB when not known).
    pub fn for_size(&self, size: Option<u64>) -> Duration {
        let size = size.unwrap_or(1 << 30);
        let secs = size / self.min_rate.max(1);
        self.base.saturating_add(Duration::from_secs(secs))
    }

    /// `BASE_SECONDS[:MIN_BYTES_PER_SECOND]`, as `STRATA_BLOB_DEADLINE` gives it.
    pub fn parse(s: &str) -> std::result::Result<BlobDeadline, String> {
        let bad = || {
            format!(
                "STRATA_BLOB_DEADLINE={s:?}: expected BASE_SECONDS[:MIN_BYTES_PER_SECOND], e.g. 120:32768"
            )
        };
        let (base, rate) = match s.split_once(':') {
            Some((b, r)) => (b, Some(r)),
            None => (s, None),
        };
        let base: f64 = base.trim().parse().map_err(|_| bad())?;
        if !base.is_finite() || base <= 0.0 {
            return Err(bad());
        }
        let min_rate = match rate {
            Some(r) => r.trim().parse::<u64>().map_err(|_| bad())?.max(1),
            None => BlobDeadline::default().min_rate,
        };
        Ok(BlobDeadline {
            base: Duration::from_secs_f64(base),
            min_rate,
        })
    }
}

/// Seconds from `STRATA_REGISTRY_READ_TIMEOUT`, if set.
fn read_timeout_from_env() -> Result<Option<Duration>> {
    let Ok(v) = std::env::var("STRATA_REGISTRY_READ_TIMEOUT") else {
        return Ok(None);
    };
    match v.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        _ => Err(RegistryError::Other(format!(
            "STRATA_REGISTRY_READ_TIMEOUT={v:?}: expected a number of seconds, e.g. 120"
        ))),
    }
}

impl ClientOptions {
    /// Options from the environment: `STRATA_INSECURE_REGISTRIES`,
    /// `STRATA_REGISTRY_MIRROR`, `STRATA_BLOB_DEADLINE`,
    /// `STRATA_REGISTRY_READ_TIMEOUT` and the Docker credentials file.
    pub fn from_env() -> Result<Self> {
        let endpoints = EndpointPolicy::from_env().map_err(RegistryError::Other)?;
        let mut opts = ClientOptions {
            endpoints,
            credentials: CredentialStore::from_env()?,
            ..Self::anonymous()
        };
        if let Ok(v) = std::env::var("STRATA_BLOB_DEADLINE") {
            opts.blob_deadline = BlobDeadline::parse(&v).map_err(RegistryError::Other)?;
        }
        if let Some(t) = read_timeout_from_env()? {
            opts.read_timeout = t;
        }
        Ok(opts)
    }

    /// Options with no credentials and no environment, for tests and tools.
    pub fn anonymous() -> Self {
        ClientOptions {
            endpoints: EndpointPolicy::default(),
            credentials: CredentialStore::default(),
            retry: RetryPolicy::default(),
            chunk_threshold: DEFAULT_CHUNK_THRESHOLD,
            chunk_size: DEFAULT_CHUNK_SIZE,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(120),
            blob_deadline: BlobDeadline::default(),
        }
    }
}

/// One repository on one registry, the unit of auth scopes and API paths.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repo {
    /// The registry name as references spell it (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// The repository path (`library/busybox`).
    pub repository: String,
}

impl Repo {
    pub fn new(registry: impl Into<String>, repository: impl Into<String>) -> Self {
        Repo {
            registry: registry.into(),
            repository: repository.into(),
        }
    }

    /// The token scope for `actions` (`pull` or `pull,push`).
    pub fn scope(&self, actions: &str) -> String {
        format!("repository:{}:{}", self.repository, actions)
    }

    /// `registry/repository`, for messages.
    pub fn display(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

/// What an operation asks the engine to send.
pub(crate) struct Call<'a> {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<&'a [u8]>,
    /// The registry name the credentials are looked up by.
    pub registry: &'a str,
    /// The endpoint the URL points at (tokens are cached per endpoint host).
    pub endpoint: &'a Endpoint,
    /// Token scopes this request needs, e.g. `repository:a/b:pull`.
    pub scopes: Vec<String>,
    /// When the whole exchange, body included, must be over (a blob's
    /// overall deadline); `None` for the per-read timeouts only.
    pub deadline: Option<Instant>,
}

/// A blocking registry client. Cheap to share by reference across threads:
/// tokens are cached behind a mutex, the agent pools connections.
pub struct RegistryClient {
    agent: ureq::Agent,
    opts: ClientOptions,
    /// `Authorization` header values by (endpoint host, scopes).
    auth_cache: Mutex<HashMap<(String, String), String>>,
}

impl RegistryClient {
    /// A client with these options.
    pub fn new(opts: ClientOptions) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
            // Blobs are already compressed; a transparent gzip decode would
            // change the bytes we hash.
            .accept_encoding("identity")
            .timeout_connect(Some(opts.connect_timeout))
            .timeout_recv_response(Some(opts.read_timeout))
            .timeout_per_read(Some(opts.read_timeout))
            .max_redirects(10)
            .build();
        RegistryClient {
            agent: ureq::Agent::new_with_config(config),
            opts,
            auth_cache: Mutex::new(HashMap::new()),
        }
    }

    /// A client configured from the environment (see [`ClientOptions::from_env`]).
    pub fn from_env() -> Result<Self> {
        Ok(Self::new(ClientOptions::from_env()?))
    }

    /// The options in force.
    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// The endpoints to try for a registry, mirror first for reads.
    pub fn endpoints(&self, registry: &str, for_write: bool) -> Vec<Endpoint> {
        self.opts.endpoints.endpoints(registry, for_write)
    }

    /// Sends a call: with cached auth, answering one 401 challenge, retrying
    /// transient failures. Returns the final response whatever its status;
    /// callers map statuses to errors with [`check_status`].
    pub(crate) fn execute(&self, call: &Call<'_>) -> Result<Response<ureq::Body>> {
        let key = (call.endpoint.host.clone(), call.scopes.join(" "));
        let mut auth = self.cached_auth(&key);
        let mut answered_challenge = false;
        loop {
            let resp = self.send_with_retries(call, auth.as_deref())?;
            if resp.status().as_u16() != 401 || answered_challenge {
                return Ok(resp);
            }
            let header = resp
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            answered_challenge = true;
            let fresh = self.answer_challenge(call, &header)?;
            self.store_auth(key.clone(), fresh.clone());
            auth = Some(fresh);
        }
    }

    fn cached_auth(&self, key: &(String, String)) -> Option<String> {
        self.auth_cache
            .lock()
            .map(|m| m.get(key).cloned())
            .unwrap_or(None)
    }

    fn store_auth(&self, key: (String, String), value: String) {
        if let Ok(mut m) = self.auth_cache.lock() {
            m.insert(key, value);
        }
    }

    /// Turns a 401 challenge into an `Authorization` header value.
    fn answer_challenge(&self, call: &Call<'_>, header: &str) -> Result<String> {
        let creds = self.opts.credentials.get(call.registry);
        let unauthorized = |detail: String| RegistryError::Unauthorized {
            host: call.registry.to_string(),
            url: call.url.clone(),
            detail,
        };
        let Some(ch) = Challenge::parse(header) else {
            // No challenge: try basic credentials if we have them.
            return match creds {
                Some(c) => Ok(c.basic_header()),
                None => Err(unauthorized(self.opts.credentials.hint_for(call.registry))),
            };
        };
        match ch.scheme.as_str() {
            "basic" => match creds {
                Some(c) => Ok(c.basic_header()),
                None => Err(unauthorized(self.opts.credentials.hint_for(call.registry))),
            },
            "bearer" => {
                let realm = ch
                    .params
                    .get("realm")
                    .ok_or_else(|| RegistryError::Protocol {
                        url: call.url.clone(),
                        why: format!("bearer challenge without a realm: {header:?}"),
                    })?;
                let mut url = format!("{realm}{}", if realm.contains('?') { '&' } else { '?' });
                let mut params: Vec<(String, String)> = Vec::new();
                if let Some(s) = ch.params.get("service") {
                    params.push(("service".into(), s.clone()));
                }
                if call.scopes.is_empty() {
                    if let Some(s) = ch.params.get("scope") {
                        params.push(("scope".into(), s.clone()));
                    }
                } else {
                    for s in &call.scopes {
                        params.push(("scope".into(), s.clone()));
                    }
                }
                let query: Vec<String> = params
                    .iter()
                    .map(|(k, v)| format!("{k}={}", percent_encode(v)))
                    .collect();
                url.push_str(&query.join("&"));
                let token = self.fetch_token(call, &url, creds.map(|c| c.basic_header()))?;
                Ok(format!("Bearer {token}"))
            }
            other => Err(unauthorized(format!(
                "; it asks for the unsupported auth scheme {other:?}"
            ))),
        }
    }

    fn fetch_token(&self, call: &Call<'_>, url: &str, basic: Option<String>) -> Result<String> {
        // The token service is often another host (auth.docker.io); the
        // basic credentials go there, as Docker sends them.
        let token_endpoint = Endpoint {
            scheme: if url.starts_with("http://") {
                "http"
            } else {
                "https"
            },
            host: url_host(url).to_string(),
            mirror: false,
        };
        let token_call = Call {
            method: "GET",
            url: url.to_string(),
            headers: vec![("accept", "application/json".to_string())],
            body: None,
            registry: call.registry,
            endpoint: &token_endpoint,
            scopes: Vec::new(),
            deadline: None,
        };
        let mut resp = self.send_with_retries(&token_call, basic.as_deref())?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(RegistryError::Unauthorized {
                host: call.registry.to_string(),
                url: call.url.clone(),
                detail: format!(
                    "; the token service {} refused ({status}){}",
                    strip_query(url),
                    self.opts.credentials.hint_for(call.registry)
                ),
            });
        }
        let body = read_small(&mut resp, url)?;
        if status != 200 {
            return Err(RegistryError::Status {
                method: "GET".into(),
                url: strip_query(url).to_string(),
                status,
                detail: format!(" while fetching a registry token{}", error_detail(&body)),
            });
        }
        token_from_response(&body).map_err(|why| RegistryError::Protocol {
            url: strip_query(url).to_string(),
            why,
        })
    }

    /// One logical request, retried on connection errors and retryable statuses.
    fn send_with_retries(
        &self,
        call: &Call<'_>,
        auth: Option<&str>,
    ) -> Result<Response<ureq::Body>> {
        let policy = self.opts.retry;
        let mut attempt = 1;
        loop {
            let outcome = self.send_once(call, auth);
            let (retry, after) = match &outcome {
                Err(e) => (is_retryable_error(e), None),
                Ok(r) => (
                    is_retryable_status(r.status().as_u16()),
                    r.headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after),
                ),
            };
            let past_deadline = call.deadline.is_some_and(|d| Instant::now() >= d);
            if !retry || attempt >= policy.attempts || past_deadline {
                return outcome.map_err(|source| RegistryError::Transport {
                    method: call.method.to_string(),
                    url: call.url.clone(),
                    hint: transport_hint(&source, call.endpoint),
                    cause: Box::new(source),
                });
            }
            std::thread::sleep(policy.delay(attempt, after));
            attempt += 1;
        }
    }

    fn send_once(
        &self,
        call: &Call<'_>,
        auth: Option<&str>,
    ) -> std::result::Result<Response<ureq::Body>, ureq::Error> {
        let mut b = Request::builder().method(call.method).uri(&call.url);
        for (k, v) in &call.headers {
            b = b.header(*k, v);
        }
        // Credentials go only to the endpoint they were issued for (upload
        // locations may point at another host, e.g. object storage).
        if let Some(a) = auth
            && url_host(&call.url) == call.endpoint.host
        {
            b = b.header("authorization", a);
        }
        let global = match call.deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Err(ureq::Error::Timeout(ureq::Timeout::Global)),
            },
            None => None,
        };
        match call.body {
            Some(body) => {
                let req = b.body(body).map_err(ureq::Error::Http)?;
                self.run_within(req, global)
            }
            None => {
                let req = b.body(()).map_err(ureq::Error::Http)?;
                self.run_within(req, global)
            }
        }
    }

    /// Runs a request, with a total time limit (body included) if given.
    fn run_within<S: ureq::AsSendBody>(
        &self,
        req: Request<S>,
        global: Option<Duration>,
    ) -> std::result::Result<Response<ureq::Body>, ureq::Error> {
        match global {
            Some(t) => {
                let req = self
                    .agent
                    .configure_request(req)
                    .timeout_global(Some(t))
                    .build();
                self.agent.run(req)
            }
            None => self.agent.run(req),
        }
    }
}

/// Maps a non-success status to an error that names the URL and what to do;
/// passes successful responses (`ok` statuses) through.
pub(crate) fn check_status(
    mut resp: Response<ureq::Body>,
    call: &Call<'_>,
    what: &str,
    ok: &[u16],
) -> Result<Response<ureq::Body>> {
    let status = resp.status().as_u16();
    if ok.contains(&status) {
        return Ok(resp);
    }
    let body = if call.method == "HEAD" {
        Vec::new()
    } else {
        read_small(&mut resp, &call.url).unwrap_or_default()
    };
    let detail = error_detail(&body);
    Err(match status {
        401 => RegistryError::Unauthorized {
            host: call.registry.to_string(),
            url: call.url.clone(),
            detail,
        },
        403 => RegistryError::Forbidden {
            host: call.registry.to_string(),
            url: call.url.clone(),
            action: if call.scopes.iter().any(|s| s.ends_with("push")) {
                "push to"
            } else {
                "pull from"
            },
            detail,
        },
        404 => RegistryError::NotFound {
            what: what.to_string(),
            url: call.url.clone(),
        },
        _ => RegistryError::Status {
            method: call.method.to_string(),
            url: call.url.clone(),
            status,
            detail: if detail.is_empty() {
                format!(" ({what})")
            } else {
                format!(" ({what}){detail}")
            },
        },
    })
}

/// Reads a body that must be small (manifest, token, error).
pub(crate) fn read_small(resp: &mut Response<ureq::Body>, url: &str) -> Result<Vec<u8>> {
    resp.body_mut()
        .with_config()
        .limit(MAX_SMALL_BODY)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => RegistryError::Protocol {
                url: url.to_string(),
                why: format!("the response is larger than {MAX_SMALL_BODY} bytes"),
            },
            source => RegistryError::Transport {
                method: "GET".into(),
                url: url.to_string(),
                hint: String::new(),
                cause: Box::new(source),
            },
        })
}

/// `: CODE: message` from a distribution error body, or a short excerpt.
fn error_detail(body: &[u8]) -> String {
    if body.is_empty() {
        return String::new();
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(errs) = v.get("errors").and_then(|e| e.as_array())
    {
        let parts: Vec<String> = errs
            .iter()
            .map(|e| {
                let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("?");
                let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                format!("{code}: {msg}")
            })
            .collect();
        if !parts.is_empty() {
            return format!(": {}", parts.join("; "));
        }
    }
    let text = String::from_utf8_lossy(body);
    let excerpt: String = text.chars().take(200).collect();
    format!(": {}", excerpt.trim())
}

fn transport_hint(err: &ureq::Error, ep: &Endpoint) -> String {
    // A plain-HTTP server answering a TLS handshake shows up as a broken
    // connection or a TLS error; either way, name the flag that fixes it.
    // Docker Hub always speaks HTTPS: no such hint for it.
    let hub = ep.host == super::endpoint::DOCKER_HUB_API_HOST
        || ep.host == "index.docker.io"
        || ep.host == "registry.hub.docker.com";
    let plain_http_hint = if ep.scheme == "https" && !hub {
        format!(
            "; if {} speaks plain HTTP, pass --insecure-registry {} (or add it to STRATA_INSECURE_REGISTRIES)",
            ep.host, ep.host
        )
    } else {
        String::new()
    };
    match err {
        ureq::Error::ConnectionFailed | ureq::Error::Io(_) | ureq::Error::Timeout(_) => {
            format!(
                "{}; is the registry at {} up?{plain_http_hint}",
                if is_retryable_error(err) {
                    " (after retries)"
                } else {
                    ""
                },
                ep.base()
            )
        }
        ureq::Error::HostNotFound => "; check the registry name".to_string(),
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Protocol(_) => plain_http_hint,
        _ => String::new(),
    }
}

/// The `host[:port]` of an absolute URL.
pub(crate) fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

fn strip_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_helpers() {
        assert_eq!(url_host("http://127.0.0.1:5000/v2/x?y"), "127.0.0.1:5000");
        assert_eq!(url_host("https://h"), "h");
        assert_eq!(
            percent_encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
        assert_eq!(strip_query("https://a/token?x=1"), "https://a/token");
    }

    #[test]
    fn distribution_errors_are_summarized() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
        assert_eq!(error_detail(body), ": MANIFEST_UNKNOWN: manifest unknown");
        assert_eq!(error_detail(b""), "");
        assert_eq!(error_detail(b"oops"), ": oops");
    }
}
