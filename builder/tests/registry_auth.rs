//! `strata pull` reads registry logins from `$DOCKER_CONFIG/config.json`:
//! against a loopback fake registry that demands a bearer token, whose token
//! service demands the basic credentials saved there. Bounded and local: the
//! fake answers each connection once and stops with the test.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache::digest::Digest;

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p =
            std::env::temp_dir().join(format!("strata-auth-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create dir");
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Serves `routes` (path → body) behind bearer auth; `/token` wants basic
/// `ci:s3cret`. Returns the address, a stop flag and the token-fetch count.
fn start_fake(routes: HashMap<String, Vec<u8>>) -> (String, Arc<AtomicBool>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr").to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let tokens = Arc::new(AtomicUsize::new(0));
    let (stop2, tokens2, addr2) = (stop.clone(), tokens.clone(), addr.clone());
    std::thread::spawn(move || {
        while !stop2.load(Ordering::SeqCst) {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            stream.set_nonblocking(false).ok();
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut r = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut auth = String::new();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if lower.starts_with("authorization:") {
                    auth = h["authorization:".len()..].trim().to_string();
                } else if lower.starts_with("content-length:") {
                    len = h["content-length:".len()..].trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let (status, extra, out): (u16, String, Vec<u8>) = if path.starts_with("/token") {
                if auth == "Basic Y2k6czNjcmV0" {
                    tokens2.fetch_add(1, Ordering::SeqCst);
                    (200, String::new(), br#"{"token":"t0k"}"#.to_vec())
                } else {
                    (401, String::new(), b"bad credentials".to_vec())
                }
            } else if auth != "Bearer t0k" {
                let h = format!(
                    "WWW-Authenticate: Bearer realm=\"http://{addr2}/token\",service=\"fake\"\r\n"
                );
                (401, h, b"{}".to_vec())
            } else if let Some(b) = routes.get(&path) {
                let ct = if path.contains("/manifests/") {
                    "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"
                } else {
                    ""
                };
                (200, ct.to_string(), b.clone())
            } else {
                (404, String::new(), b"{}".to_vec())
            };
            let mut s = stream;
            let head = format!(
                "HTTP/1.1 {status} X\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n",
                out.len()
            );
            let _ = s.write_all(head.as_bytes());
            if !line.starts_with("HEAD") {
                let _ = s.write_all(&out);
            }
        }
    });
    (addr, stop, tokens)
}

#[test]
fn pull_uses_the_login_saved_in_docker_config() {
    let layer = b"layer bytes".to_vec();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
        Digest::of(&layer)
    )
    .into_bytes();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
        Digest::of(&config),
        config.len(),
        Digest::of(&layer),
        layer.len()
    )
    .into_bytes();
    let mut routes = HashMap::new();
    routes.insert("/v2/t/img/manifests/v1".to_string(), manifest.clone());
    routes.insert(format!("/v2/t/img/blobs/{}", Digest::of(&config)), config);
    routes.insert(format!("/v2/t/img/blobs/{}", Digest::of(&layer)), layer);
    let (addr, stop, tokens) = start_fake(routes);

    let cfg = Dir::new("cfg");
    std::fs::write(
        cfg.0.join("config.json"),
        format!(r#"{{"auths":{{"{addr}":{{"auth":"Y2k6czNjcmV0"}}}}}}"#),
    )
    .expect("write config.json");
    let root = Dir::new("root");
    let pull = |docker_config: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--root")
            .arg(&root.0)
            .args(["pull", "-q", &format!("{addr}/t/img:v1")])
            .env("DOCKER_CONFIG", docker_config)
            .output()
            .expect("run strata")
    };
    let out = pull(&cfg.0);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        Digest::of(&manifest).to_string()
    );
    assert!(tokens.load(Ordering::SeqCst) >= 1);

    // With an empty DOCKER_CONFIG directory the same pull is refused, and the
    // message names the registry and says how to log in.
    let empty = Dir::new("empty");
    let out = pull(&empty.0);
    stop.store(true, Ordering::SeqCst);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("401") && stderr.contains(&addr) && stderr.contains("docker login"),
        "{stderr}"
    );
}
