//! The registry client against a tiny fake registry on 127.0.0.1:0, for what
//! a real registry will not do on demand: serve tampered manifests and blobs,
//! demand bearer tokens, and fail with 503s. Loopback only, bounded: every
//! connection is answered and closed, and each test's server stops with it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use cache::digest::Digest;
use cache::image::Descriptor;
use cache::platform::Platform;
use cache::reference::Reference;
use cache::store::Store;
use cache::transport::registry::auth::CredentialStore;
use cache::transport::registry::retry::RetryPolicy;
use cache::transport::registry::{
    BlobDeadline, ClientOptions, RegistryClient, RegistryError, Repo, fetch_blob,
    fetch_manifest_and_config, pull,
};

/// One request as the fake saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }
    fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_string(), v.into()));
        self
    }
}

type Handler = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

/// A one-thread HTTP/1.1 server that answers with `handler(request, n)`,
/// where `n` counts earlier requests with the same method and path.
struct FakeRegistry {
    addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeRegistry {
    fn start(handler: Box<Handler>) -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr").to_string();
        let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, &*handler, &seen2),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => break,
                }
            }
        });
        FakeRegistry {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    fn count(&self, method: &str, path_prefix: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && s.path.starts_with(path_prefix))
            .count()
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, handler: &Handler, seen: &Mutex<Vec<Seen>>) {
    stream.set_nonblocking(false).ok();
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let req = Seen {
        method,
        path,
        headers,
        body,
    };
    let n = {
        let mut s = seen.lock().expect("lock");
        let n = s
            .iter()
            .filter(|x| x.method == req.method && x.path == req.path)
            .count();
        s.push(req.clone());
        n
    };
    let reply = handler(&req, n);
    let mut out = stream;
    let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", reply.status);
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", reply.body.len()));
    let _ = out.write_all(head.as_bytes());
    if req.method != "HEAD" {
        let _ = out.write_all(&reply.body);
    }
    let _ = out.flush();
}

/// A small image: config, one layer, an OCI manifest naming them.
struct Fixture {
    layer: Vec<u8>,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

impl Fixture {
    fn new() -> Fixture {
        let layer = b"not really a tar, but blobs are opaque to the client".to_vec();
        let diff = Digest::of(&layer);
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{diff}"]}}}}"#
        )
        .into_bytes();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
            Digest::of(&config),
            config.len(),
            diff,
            layer.len()
        )
        .into_bytes();
        Fixture {
            layer,
            config,
            manifest,
        }
    }

    /// Answers like a registry holding this image as `test/img:v1`; the
    /// `tamper` function may change what is served for a path.
    fn handler(self, tamper: fn(&str, Vec<u8>) -> Vec<u8>) -> Box<Handler> {
        let manifest_digest = Digest::of(&self.manifest);
        Box::new(move |req, _| {
            let blob = |data: &Vec<u8>| {
                Reply::new(200, tamper(&req.path, data.clone()))
                    .header("Content-Type", "application/octet-stream")
            };
            match req.path.as_str() {
                "/v2/test/img/manifests/v1" => {
                    Reply::new(200, tamper(&req.path, self.manifest.clone()))
                        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                        .header("Docker-Content-Digest", manifest_digest.to_string())
                }
                p if p == format!("/v2/test/img/manifests/{manifest_digest}") => {
                    Reply::new(200, tamper(&req.path, self.manifest.clone()))
                        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                }
                p if p == format!("/v2/test/img/blobs/{}", Digest::of(&self.config)) => {
                    blob(&self.config)
                }
                p if p == format!("/v2/test/img/blobs/{}", Digest::of(&self.layer)) => {
                    blob(&self.layer)
                }
                _ => Reply::new(404, r#"{"errors":[{"code":"NOT_FOUND","message":"nope"}]}"#),
            }
        })
    }
}

/// A client for the upload tests: 300-byte chunks (blobs over
/// `chunk_threshold` go in chunks) and no per-request retry, so a broken
/// upload shows as the whole upload failing or restarting.
fn chunking_client(chunk_threshold: Option<u64>) -> RegistryClient {
    let mut o = ClientOptions::anonymous();
    if let Some(t) = chunk_threshold {
        o.chunk_threshold = t;
    }
    o.chunk_size = 300;
    o.retry = RetryPolicy {
        attempts: 1,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
    };
    RegistryClient::new(o)
}

fn fast_client(creds: CredentialStore) -> RegistryClient {
    let mut o = ClientOptions::anonymous();
    o.credentials = creds;
    o.retry = RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    };
    RegistryClient::new(o)
}

/// Every file under the store's blob directory and scratch space.
fn stored_blobs(root: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for sub in ["blobs/sha256", "index/tags"] {
        if let Ok(rd) = std::fs::read_dir(root.join(sub)) {
            for e in rd.flatten() {
                v.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    v
}

fn tmp_files(root: &Path) -> Vec<String> {
    walk(&root.join("tmp"))
}

fn walk(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                v.extend(walk(&p));
            } else {
                v.push(p.display().to_string());
            }
        }
    }
    v
}

#[test]
fn an_honest_fake_pulls_fine_so_the_tamper_tests_mean_something() {
    let fx = Fixture::new();
    let want = Digest::of(&fx.manifest);
    let reg = FakeRegistry::start(fx.handler(|_, b| b));
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let r = Reference::parse(&format!("{}/test/img:v1", reg.addr)).expect("ref");
    let report = pull(
        &fast_client(CredentialStore::default()),
        &store,
        &r,
        &Platform::default(),
    )
    .expect("pull");
    assert_eq!(report.digest, want);
    assert_eq!(store.resolve_digest(&r).expect("resolve"), Some(want));
    assert_eq!(
        stored_blobs(root.path()).len(),
        4,
        "{:?}",
        stored_blobs(root.path())
    );
}

/// The fake registry's layer blob with its first byte changed: the same
/// length, different bytes.
fn tamper_layer(path: &str, mut b: Vec<u8>) -> Vec<u8> {
    if path.contains("/blobs/") && b.starts_with(b"not really") {
        b[0] = b'N';
    }
    b
}

#[test]
fn a_tampered_layer_is_rejected_and_nothing_is_stored() {
    let fx = Fixture::new();
    let layer_digest = Digest::of(&fx.layer);
    let reg = FakeRegistry::start(fx.handler(tamper_layer));
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let r = Reference::parse(&format!("{}/test/img:v1", reg.addr)).expect("ref");
    let err = pull(
        &fast_client(CredentialStore::default()),
        &store,
        &r,
        &Platform::default(),
    )
    .expect_err("tampered layer must fail");
    assert!(
        matches!(&err, RegistryError::DigestMismatch { expected, .. } if *expected == layer_digest),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("expected") && msg.contains(&layer_digest.to_string()),
        "{msg}"
    );
    assert_eq!(stored_blobs(root.path()), Vec::<String>::new());
    assert_eq!(tmp_files(root.path()), Vec::<String>::new());
    assert_eq!(store.resolve_digest(&r).expect("resolve"), None);
}

#[test]
fn a_truncated_or_overlong_layer_is_rejected() {
    for tamper in [
        (|p: &str, mut b: Vec<u8>| {
            if p.contains("/blobs/") && b.starts_with(b"not really") {
                b.truncate(5);
            }
            b
        }) as fn(&str, Vec<u8>) -> Vec<u8>,
        |p, mut b| {
            if p.contains("/blobs/") && b.starts_with(b"not really") {
                b.extend_from_slice(&[0u8; 4096]);
            }
            b
        },
    ] {
        let reg = FakeRegistry::start(Fixture::new().handler(tamper));
        let root = tempfile::tempdir().expect("tempdir");
        let store = Store::open(root.path()).expect("store");
        let r = Reference::parse(&format!("{}/test/img:v1", reg.addr)).expect("ref");
        let err = pull(
            &fast_client(CredentialStore::default()),
            &store,
            &r,
            &Platform::default(),
        )
        .expect_err("wrong size must fail");
        assert!(matches!(err, RegistryError::SizeMismatch { .. }), "{err}");
        assert_eq!(stored_blobs(root.path()), Vec::<String>::new());
    }
}

#[test]
fn a_manifest_that_does_not_match_its_digest_is_rejected() {
    let fx = Fixture::new();
    let manifest_digest = Digest::of(&fx.manifest);
    // Served under the tag with the honest Docker-Content-Digest header, and
    // under its digest, but with one extra space: valid JSON, wrong hash.
    let reg = FakeRegistry::start(fx.handler(|path, mut b| {
        if path.contains("/manifests/") {
            b.insert(1, b' ');
        }
        b
    }));
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let client = fast_client(CredentialStore::default());
    for r in [
        format!("{}/test/img:v1", reg.addr),
        format!("{}/test/img@{manifest_digest}", reg.addr),
    ] {
        let r = Reference::parse(&r).expect("ref");
        let err = pull(&client, &store, &r, &Platform::default()).expect_err("tampered manifest");
        match &err {
            RegistryError::DigestMismatch {
                expected, actual, ..
            } => {
                assert_eq!(*expected, manifest_digest);
                assert_ne!(*actual, manifest_digest);
            }
            other => panic!("expected a digest mismatch for {r}, got: {other}"),
        }
        let err = fetch_manifest_and_config(&client, &r, &Platform::default())
            .expect_err("the builder's metadata fetch checks too");
        assert!(err.is_integrity_error(), "{err}");
    }
    assert_eq!(stored_blobs(root.path()), Vec::<String>::new());
    // No layer was even requested once the manifest failed.
    assert_eq!(reg.count("GET", "/v2/test/img/blobs/"), 0);
}

#[test]
fn bearer_challenge_is_answered_with_a_token_fetched_with_basic_credentials() {
    let fx = Fixture::new();
    let want = Digest::of(&fx.manifest);
    let inner = fx.handler(|_, b| b);
    // The token endpoint is on the same fake: /token, which wants basic auth
    // for user "ci" / password "s3cret" and the repository scope.
    let addr_cell: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
    let addr2 = addr_cell.clone();
    let reg = FakeRegistry::start(Box::new(move |req, n| {
        let addr = addr2.lock().expect("lock").clone();
        if req.path.starts_with("/token") {
            let basic = req
                .headers
                .get("authorization")
                .cloned()
                .unwrap_or_default();
            // base64("ci:s3cret")
            if basic != "Basic Y2k6czNjcmV0" {
                return Reply::new(401, "bad credentials");
            }
            if !req.path.contains("scope=repository%3Atest%2Fimg%3Apull") {
                return Reply::new(400, format!("missing scope in {}", req.path));
            }
            return Reply::new(200, r#"{"token":"tok-123"}"#);
        }
        if req.headers.get("authorization").map(String::as_str) != Some("Bearer tok-123") {
            return Reply::new(401, r#"{"errors":[{"code":"UNAUTHORIZED","message":"auth"}]}"#)
                .header(
                    "WWW-Authenticate",
                    format!(
                        r#"Bearer realm="http://{addr}/token",service="fake",scope="repository:test/img:pull""#
                    ),
                );
        }
        inner(req, n)
    }));
    *addr_cell.lock().expect("lock") = reg.addr.clone();

    // Credentials come from a DOCKER_CONFIG directory's config.json, as
    // `docker login` writes it.
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let host = reg.addr.clone();
    std::fs::write(
        cfg_dir.path().join("config.json"),
        format!(r#"{{"auths":{{"{host}":{{"auth":"Y2k6czNjcmV0"}}}}}}"#),
    )
    .expect("write config");
    let creds = CredentialStore::from_file(&cfg_dir.path().join("config.json")).expect("creds");

    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let r = Reference::parse(&format!("{}/test/img:v1", reg.addr)).expect("ref");
    let client = fast_client(creds);
    let report = pull(&client, &store, &r, &Platform::default()).expect("pull with auth");
    assert_eq!(report.digest, want);
    // One token fetch serves every later request of the same scope.
    assert_eq!(reg.count("GET", "/token"), 1, "{:#?}", reg.seen());

    // Without credentials the token service refuses and the error says how
    // to log in, naming the registry.
    let anon = fast_client(CredentialStore::default());
    let err = fetch_manifest_and_config(&anon, &r, &Platform::default()).expect_err("no creds");
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{msg}");
    assert!(
        msg.contains(&reg.addr) && msg.contains("docker login"),
        "{msg}"
    );
}

#[test]
fn a_503_then_200_is_retried_and_a_lasting_500_gives_up_after_the_bound() {
    let fx = Fixture::new();
    let want = Digest::of(&fx.manifest);
    let inner = fx.handler(|_, b| b);
    let reg = FakeRegistry::start(Box::new(move |req, n| {
        // The first request for each path fails with 503.
        if n == 0 {
            return Reply::new(503, "try later");
        }
        inner(req, n)
    }));
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let r = Reference::parse(&format!("{}/test/img:v1", reg.addr)).expect("ref");
    let report = pull(
        &fast_client(CredentialStore::default()),
        &store,
        &r,
        &Platform::default(),
    )
    .expect("pull after retries");
    assert_eq!(report.digest, want);
    assert_eq!(reg.count("GET", "/v2/test/img/manifests/v1"), 2);

    let down = FakeRegistry::start(Box::new(|_, _| Reply::new(500, "down")));
    let client = fast_client(CredentialStore::default());
    let repo = Repo::new(down.addr.clone(), "test/img");
    let err = client.get_manifest(&repo, "v1").expect_err("always 500");
    assert!(
        matches!(err, RegistryError::Status { status: 500, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&down.addr), "{err}");
    assert_eq!(
        down.count("GET", "/v2/test/img/manifests/v1"),
        3,
        "bounded by attempts"
    );
}

#[test]
fn a_closed_port_fails_fast_with_the_address_in_the_message() {
    // Bind and drop to get a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let client = fast_client(CredentialStore::default());
    let repo = Repo::new(format!("127.0.0.1:{port}"), "a/b");
    let err = client
        .get_manifest(&repo, "latest")
        .expect_err("nothing listens");
    let msg = err.to_string();
    assert!(err.is_transient(), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
}

#[test]
fn docker_hub_reads_go_to_the_configured_mirror() {
    let fx = Fixture::new();
    let want = Digest::of(&fx.manifest);
    let inner = fx.handler(|_, b| b);
    // The mirror serves Hub's `library/…` repositories; map the fixture's
    // `test/img` paths onto `library/img`.
    let mirror = FakeRegistry::start(Box::new(move |req, n| {
        let mut r = req.clone();
        r.path = r.path.replacen("/v2/library/img/", "/v2/test/img/", 1);
        inner(&r, n)
    }));
    let mut o = ClientOptions::anonymous();
    o.endpoints
        .set_mirror(&format!("http://{}", mirror.addr))
        .expect("mirror url");
    let client = RegistryClient::new(o);
    // A short name: docker.io/library/img:v1.
    let r = Reference::parse("img:v1").expect("ref");
    assert_eq!(r.registry(), "docker.io");
    let (digest, config) =
        fetch_manifest_and_config(&client, &r, &Platform::default()).expect("via mirror");
    assert_eq!(digest, want);
    assert!(!config.is_empty());
    assert!(mirror.count("GET", "/v2/library/img/manifests/v1") >= 1);
}

/// A fake that accepts uploads the way distribution does: POST opens a
/// session, PATCH appends (the Content-Range must continue where the
/// session is), PUT ?digest= closes it and checks the digest. The very
/// first PATCH fails with a 500 when `flaky` is set.
/// Blobs (or upload sessions) by digest (or session id).
type BlobMap = Arc<Mutex<HashMap<String, Vec<u8>>>>;

fn upload_registry(flaky: bool) -> (FakeRegistry, BlobMap) {
    let blobs: BlobMap = Arc::new(Mutex::new(HashMap::new()));
    let sessions: BlobMap = Arc::new(Mutex::new(HashMap::new()));
    let counter = Arc::new(Mutex::new(0usize));
    let failed_once = AtomicBool::new(false);
    let blobs2 = blobs.clone();
    let reg = FakeRegistry::start(Box::new(move |req, _| {
        let path = req.path.split('?').next().unwrap_or("").to_string();
        let query = req.path.split_once('?').map_or("", |(_, q)| q).to_string();
        match req.method.as_str() {
            "HEAD" if path.starts_with("/v2/up/blobs/") => {
                let d = path.trim_start_matches("/v2/up/blobs/");
                match blobs2.lock().expect("lock").get(d) {
                    Some(b) => Reply::new(200, Vec::new()).header("X-Len", b.len().to_string()),
                    None => Reply::new(404, Vec::new()),
                }
            }
            "POST" if path == "/v2/up/blobs/uploads/" => {
                // A mount request is answered like a plain POST: this fake
                // cannot mount, so it opens an upload (202) instead.
                let mut c = counter.lock().expect("lock");
                *c += 1;
                let id = format!("s{}", *c);
                sessions
                    .lock()
                    .expect("lock")
                    .insert(id.clone(), Vec::new());
                Reply::new(202, Vec::new())
                    .header("Location", format!("/v2/up/blobs/uploads/{id}?_state=x"))
            }
            "PATCH" => {
                let id = path.trim_start_matches("/v2/up/blobs/uploads/").to_string();
                if flaky && !failed_once.swap(true, Ordering::SeqCst) {
                    return Reply::new(500, "disk hiccup");
                }
                let mut s = sessions.lock().expect("lock");
                let Some(buf) = s.get_mut(&id) else {
                    return Reply::new(404, "unknown upload");
                };
                let range = req
                    .headers
                    .get("content-range")
                    .cloned()
                    .unwrap_or_default();
                let start: usize = range
                    .split('-')
                    .next()
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(usize::MAX);
                if start != buf.len() {
                    return Reply::new(416, format!("range {range} but have {}", buf.len()));
                }
                buf.extend_from_slice(&req.body.clone());
                Reply::new(202, Vec::new())
                    .header("Location", format!("/v2/up/blobs/uploads/{id}?_state=y"))
            }
            "PUT" if path.starts_with("/v2/up/blobs/uploads/") => {
                let id = path.trim_start_matches("/v2/up/blobs/uploads/").to_string();
                let mut s = sessions.lock().expect("lock");
                let Some(mut buf) = s.remove(&id) else {
                    return Reply::new(404, "unknown upload");
                };
                buf.extend_from_slice(&req.body.clone());
                let want = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("digest="))
                    .unwrap_or("")
                    .replace("%3A", ":");
                let got = Digest::of(&buf).to_string();
                if want != got {
                    return Reply::new(400, format!("DIGEST_INVALID: want {want} got {got}"));
                }
                blobs2.lock().expect("lock").insert(got, buf);
                Reply::new(201, Vec::new())
            }
            _ => Reply::new(404, "nope"),
        }
    }));
    (reg, blobs)
}

#[test]
fn uploads_are_monolithic_when_small_chunked_when_big_and_restart_after_a_failure() {
    use cache::transport::registry::BlobPushed;
    for flaky in [false, true] {
        let (reg, stored) = upload_registry(flaky);
        // No per-request retry: the whole upload restarts.
        let client = chunking_client(Some(1000));
        let repo = Repo::new(reg.addr.clone(), "up");
        let small: Vec<u8> = (0..200u32).map(|i| (i % 251) as u8).collect();
        let big: Vec<u8> = (0..2500u32).map(|i| (i * 7 % 253) as u8).collect();
        for (data, want) in [
            (&small, BlobPushed::Monolithic),
            (&big, BlobPushed::Chunked),
        ] {
            let d = Digest::of(data);
            let how = client
                .push_blob(
                    &repo,
                    &d,
                    data.len() as u64,
                    Some("other/repo"),
                    &mut std::io::Cursor::new(data.clone()),
                )
                .unwrap_or_else(|e| panic!("upload (flaky={flaky}): {e}"));
            assert_eq!(how, want, "flaky={flaky}");
            assert_eq!(stored.lock().expect("lock").get(&d.to_string()), Some(data));
            // Now it exists: nothing is sent again.
            let how = client
                .push_blob(
                    &repo,
                    &d,
                    data.len() as u64,
                    None,
                    &mut std::io::Cursor::new(data.clone()),
                )
                .expect("second push");
            assert_eq!(how, BlobPushed::Existed);
        }
        // A mount from the named repository was tried first.
        assert!(
            reg.seen().iter().any(|s| s.method == "POST"
                && s.path.contains("mount=sha256%3A")
                && s.path.contains("from=other%2Frepo")),
            "{:#?}",
            reg.seen()
        );
        // 2500 bytes in 300-byte chunks: 9 PATCHes (plus the failed one).
        let patches = reg.count("PATCH", "/v2/up/blobs/uploads/");
        assert_eq!(patches, if flaky { 10 } else { 9 }, "flaky={flaky}");
    }
}

#[test]
fn a_non_loopback_name_gets_https_until_named_insecure() {
    // The machine's host name resolves to a loopback address through
    // /etc/hosts, but as a name it is not `localhost`: strata must not
    // assume plain HTTP for it.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    use std::net::ToSocketAddrs;
    let resolves_to_loopback = (host.as_str(), 80)
        .to_socket_addrs()
        .map(|mut a| a.any(|x| x.ip().is_loopback()))
        .unwrap_or(false);
    assert!(
        !host.is_empty() && host != "localhost" && resolves_to_loopback,
        "this test needs the host name ({host:?}) to resolve to 127.0.0.1 (/etc/hosts), as on the CI machine"
    );
    let reg = FakeRegistry::start(Fixture::new().handler(|_, b| b));
    let port = reg
        .addr
        .rsplit_once(':')
        .map(|(_, p)| p.to_string())
        .unwrap_or_default();
    let name = format!("{host}:{port}");
    let repo = Repo::new(name.clone(), "test/img");

    let err = fast_client(CredentialStore::default())
        .get_manifest(&repo, "v1")
        .expect_err("HTTPS to a plain-HTTP server fails");
    let msg = err.to_string();
    assert!(msg.contains(&format!("https://{name}")), "{msg}");
    assert!(
        msg.contains(&format!("--insecure-registry {name}")),
        "{msg}"
    );
    assert_eq!(
        reg.count("GET", "/v2/"),
        0,
        "no plain HTTP request was made"
    );

    let mut o = ClientOptions::anonymous();
    o.endpoints.add_insecure(&name);
    let m = RegistryClient::new(o)
        .get_manifest(&repo, "v1")
        .expect("plain HTTP once named insecure");
    assert_eq!(m.digest, Digest::of(&Fixture::new().manifest));
}

/// How a slow blob server sends the body after its headers.
#[derive(Clone, Copy)]
enum Slow {
    /// A few bytes, then nothing (the connection stays open).
    Stall,
    /// One byte every 200 ms: every read returns, the download never ends
    /// in reasonable time.
    Trickle,
}

/// A registry serving one blob of `body` slowly, a thread per connection
/// (a stalled connection must not hold up the next attempt). The server
/// threads stop sending when the client goes away or `stop` is set.
fn slow_blob_registry(body: Vec<u8>, mode: Slow) -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("addr").to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            if stop2.load(Ordering::SeqCst) {
                break;
            }
            let (body, stop3) = (body.clone(), stop2.clone());
            std::thread::spawn(move || send_slowly(stream, &body, mode, &stop3));
        }
    });
    (addr, stop)
}

fn send_slowly(stream: TcpStream, body: &[u8], mode: Slow, stop: &AtomicBool) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
    }
    let mut out = stream;
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    if out.write_all(head.as_bytes()).is_err() {
        return;
    }
    let (first, pause) = match mode {
        Slow::Stall => (16, Duration::from_secs(60)),
        Slow::Trickle => (0, Duration::from_millis(200)),
    };
    let _ = out.write_all(&body[..first]);
    let _ = out.flush();
    for b in &body[first..] {
        let until = std::time::Instant::now() + pause;
        while std::time::Instant::now() < until {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if out.write_all(&[*b]).is_err() || out.flush().is_err() {
            return;
        }
    }
}

/// A client whose per-read timeout (30 s) is far longer than the blob's
/// overall deadline (2 s), so only the deadline can end the download.
fn deadline_client() -> RegistryClient {
    let mut o = ClientOptions::anonymous();
    o.retry = RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    };
    o.read_timeout = Duration::from_secs(30);
    o.blob_deadline = BlobDeadline {
        base: Duration::from_secs(2),
        min_rate: 1 << 20,
    };
    RegistryClient::new(o)
}

fn assert_deadline_hit(mode: Slow) {
    let body = vec![7u8; 4096];
    let digest = Digest::of(&body);
    let (addr, stop) = slow_blob_registry(body.clone(), mode);
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let r = Reference::parse(&format!("{addr}/test/slow:v1")).expect("ref");
    let desc = Descriptor::new(
        "application/vnd.oci.image.layer.v1.tar",
        digest.clone(),
        body.len() as u64,
    );
    let t0 = std::time::Instant::now();
    let err = fetch_blob(&deadline_client(), &store, &r, &desc).expect_err("must time out");
    let took = t0.elapsed();
    stop.store(true, Ordering::SeqCst);
    assert!(matches!(err, RegistryError::Deadline { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&addr)
            && msg.contains(&digest.to_string())
            && msg.contains("STRATA_BLOB_DEADLINE"),
        "{msg}"
    );
    // One 2 s budget for all attempts, not 2 s (or 30 s) per attempt.
    assert!(took < Duration::from_secs(5), "took {took:?}: {msg}");
    assert!(took >= Duration::from_millis(1900), "took {took:?}: {msg}");
    assert!(!store.blobs().has(&digest));
    assert_eq!(tmp_files(root.path()), Vec::<String>::new());
}

#[test]
fn a_stalled_blob_fails_at_its_deadline_naming_registry_and_digest() {
    assert_deadline_hit(Slow::Stall);
}

#[test]
fn a_trickling_blob_fails_at_its_deadline() {
    assert_deadline_hit(Slow::Trickle);
}

#[test]
fn the_deadline_grows_with_the_blob_and_parses_from_the_environment_form() {
    let d = BlobDeadline::parse("10:1000").expect("parse");
    assert_eq!(d.for_size(Some(5000)), Duration::from_secs(15));
    assert_eq!(
        BlobDeadline::parse("0.5").expect("parse").base,
        Duration::from_millis(500)
    );
    for bad in ["", "x", "-1", "10:y", "nan"] {
        let e = BlobDeadline::parse(bad).expect_err(bad);
        assert!(e.contains("STRATA_BLOB_DEADLINE"), "{e}");
    }
}

#[test]
fn a_one_pass_fetch_hands_every_byte_once_and_keeps_the_blob() {
    use cache::transport::registry::{Teed, fetch_blob_teed};
    let fx = Fixture::new();
    let layer = fx.layer.clone();
    let desc = Descriptor::new(
        "application/vnd.oci.image.layer.v1.tar",
        Digest::of(&layer),
        layer.len() as u64,
    );
    let reg = FakeRegistry::start(fx.handler(|_, b| b));
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let r = Reference::parse(&format!("{}/test/img:v1", reg.addr)).expect("ref");
    let client = fast_client(CredentialStore::default());
    let mut got = Vec::new();
    let teed = fetch_blob_teed(&client, &store, &desc, Some(&r), &mut got).expect("fetch");
    assert!(matches!(teed, Teed::Fetched), "{teed:?}");
    assert_eq!(got, layer, "the consumer gets the bytes exactly once");
    assert!(
        store.blobs().has(&desc.digest),
        "the blob is kept for a re-push"
    );
    // Present now: the consumer gets nothing and nothing is downloaded.
    let before = reg.seen().len();
    let mut again = Vec::new();
    let teed = fetch_blob_teed(&client, &store, &desc, Some(&r), &mut again).expect("present");
    assert!(
        matches!(teed, Teed::Present) && again.is_empty(),
        "{teed:?}"
    );
    assert_eq!(reg.seen().len(), before);
}

#[test]
fn a_tampered_layer_fetched_in_one_pass_is_refused_and_not_kept() {
    use cache::transport::registry::fetch_blob_teed;
    let fx = Fixture::new();
    let desc = Descriptor::new(
        "application/vnd.oci.image.layer.v1.tar",
        Digest::of(&fx.layer),
        fx.layer.len() as u64,
    );
    let reg = FakeRegistry::start(fx.handler(tamper_layer));
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let r = Reference::parse(&format!("{}/test/img:v1", reg.addr)).expect("ref");
    let mut got = Vec::new();
    let err = fetch_blob_teed(
        &fast_client(CredentialStore::default()),
        &store,
        &desc,
        Some(&r),
        &mut got,
    )
    .expect_err("a tampered layer must fail");
    assert!(err.is_integrity_error(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&desc.digest.to_string()) && msg.contains(&reg.addr),
        "the error names the digest and the registry: {msg}"
    );
    assert!(!store.blobs().has(&desc.digest));
    assert_eq!(stored_blobs(root.path()), Vec::<String>::new());
    assert_eq!(tmp_files(root.path()), Vec::<String>::new());
}

#[test]
fn a_streamed_upload_is_one_put_when_small_chunks_when_big_and_digest_checked() {
    use cache::transport::registry::BlobPushed;
    let (reg, stored) = upload_registry(false);
    let client = chunking_client(None);
    let repo = Repo::new(reg.addr.clone(), "up");
    let small: Vec<u8> = (0..200u32).map(|i| (i % 251) as u8).collect();
    let big: Vec<u8> = (0..2500u32).map(|i| (i * 7 % 253) as u8).collect();
    for (data, want) in [
        (&small, BlobPushed::Monolithic),
        (&big, BlobPushed::Chunked),
    ] {
        let d = Digest::of(data);
        let ((), how) = client
            .upload_while_made(&repo, |up| {
                // Writes of odd sizes, as an encoder makes them.
                for piece in data.chunks(77) {
                    up.write_all(piece)?;
                }
                Ok::<_, std::io::Error>(((), d.clone()))
            })
            .expect("made");
        assert_eq!(how.expect("uploaded"), want);
        assert_eq!(stored.lock().expect("lock").get(&d.to_string()), Some(data));
    }
    // 2500 bytes in 300-byte chunks: 8 full PATCHes; the last 100 bytes
    // ride on the closing PUT.
    assert_eq!(reg.count("PATCH", "/v2/up/blobs/uploads/"), 8);
    // The digest is the registry's to check.
    let ((), how) = client
        .upload_while_made(&repo, |up| {
            up.write_all(&big)?;
            Ok::<_, std::io::Error>(((), Digest::of(b"other bytes")))
        })
        .expect("made");
    let err = how.expect_err("wrong digest");
    assert!(err.to_string().contains("DIGEST_INVALID"), "{err}");
}

#[test]
fn a_broken_streamed_upload_keeps_accepting_bytes_and_reports_at_the_end() {
    let (reg, _) = upload_registry(true); // the first PATCH fails
    let client = chunking_client(None);
    let repo = Repo::new(reg.addr.clone(), "up");
    let big: Vec<u8> = (0..2500u32).map(|i| (i * 3 % 251) as u8).collect();
    let ((), how) = client
        .upload_while_made(&repo, |up| {
            // The tee's other half (the store) must not see an error
            // mid-stream: writes never fail.
            up.write_all(&big)?;
            Ok::<_, std::io::Error>(((), Digest::of(&big)))
        })
        .expect("the maker is not stopped by a broken upload");
    assert!(how.is_err());
    assert_eq!(
        reg.count("PATCH", "/v2/up/blobs/uploads/"),
        1,
        "nothing more is sent after the failure"
    );
}
