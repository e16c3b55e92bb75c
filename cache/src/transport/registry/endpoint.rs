//! Where requests for a registry name actually go: the scheme, the host the
//! name maps to (`docker.io` is served by `registry-1.docker.io`), an optional
//! Docker Hub pull mirror, and which hosts may be spoken to over plain HTTP.
//!
//! The rule for plain HTTP follows Docker's: loopback (`localhost`,
//! `127.0.0.0/8`, `::1`) and hosts the user names as insecure; everything else
//! is HTTPS with certificate checks, so a typo never silently downgrades.

use std::net::{IpAddr, Ipv6Addr};

/// The name users and references give Docker Hub.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's distribution API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// Environment variable: a comma-separated list of hosts to speak plain HTTP to.
pub const ENV_INSECURE: &str = "STRATA_INSECURE_REGISTRIES";
/// Environment variable: a Docker Hub pull mirror, e.g. `https://mirror.example`
/// or `http://127.0.0.1:5001`.
pub const ENV_MIRROR: &str = "STRATA_REGISTRY_MIRROR";

/// A base URL to send distribution API requests to, e.g. `http://127.0.0.1:5000`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Host with optional port, as it goes into the URL and the `Host` header.
    pub host: String,
    /// True when this is a pull mirror rather than the registry itself.
    pub mirror: bool,
}

impl Endpoint {
    /// `scheme://host`.
    pub fn base(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }

    /// The URL of an API path (which starts with `/v2/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base(), path)
    }

    /// Resolves a `Location` header, which may be absolute or relative to this
    /// endpoint (distribution returns both forms).
    pub fn resolve(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else if location.starts_with('/') {
            self.url(location)
        } else {
            format!("{}/{}", self.base(), location)
        }
    }
}

/// Which hosts get plain HTTP and where Docker Hub pulls go.
#[derive(Debug, Clone, Default)]
pub struct EndpointPolicy {
    insecure: Vec<String>,
    mirror: Option<Endpoint>,
}

impl EndpointPolicy {
    /// Reads `STRATA_INSECURE_REGISTRIES` and `STRATA_REGISTRY_MIRROR`.
    pub fn from_env() -> Result<Self, String> {
        let mut p = EndpointPolicy::default();
        if let Ok(list) = std::env::var(ENV_INSECURE) {
            for h in list.split([',', ' ']).filter(|h| !h.is_empty()) {
                p.add_insecure(h);
            }
        }
        if let Ok(m) = std::env::var(ENV_MIRROR)
            && !m.trim().is_empty()
        {
            p.set_mirror(m.trim())?;
        }
        Ok(p)
    }

    /// Lets `host` (with or without port) be spoken to over plain HTTP.
    pub fn add_insecure(&mut self, host: &str) {
        let h = host
            .trim()
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_ascii_lowercase();
        if !h.is_empty() && !self.insecure.contains(&h) {
            self.insecure.push(h);
        }
    }

    /// Sets the Docker Hub pull mirror from a URL (`https://…` or `http://…`;
    /// a bare host means HTTPS unless it is loopback or insecure).
    pub fn set_mirror(&mut self, url: &str) -> Result<(), String> {
        let (scheme, rest) = if let Some(r) = url.strip_prefix("https://") {
            ("https", r)
        } else if let Some(r) = url.strip_prefix("http://") {
            ("http", r)
        } else {
            ("", url)
        };
        let host = rest.trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            return Err(format!(
                "{ENV_MIRROR}={url:?} is not a registry URL: give scheme and host only, e.g. https://mirror.example:5000"
            ));
        }
        let scheme = if scheme.is_empty() {
            self.scheme_for(host)
        } else {
            scheme
        };
        self.mirror = Some(Endpoint {
            scheme,
            host: host.to_string(),
            mirror: true,
        });
        Ok(())
    }

    /// The scheme for a host: HTTP for loopback and insecure hosts, else HTTPS.
    pub fn scheme_for(&self, host: &str) -> &'static str {
        let lower = host.to_ascii_lowercase();
        let bare = strip_port(&lower);
        // An entry with a port matches only that port; one without, any port.
        if is_loopback(bare) || self.insecure.iter().any(|h| *h == lower || h == bare) {
            "http"
        } else {
            "https"
        }
    }

    /// The endpoints to try, in order, for `registry` (a reference's registry
    /// name). Reads of Docker Hub go to the mirror first when one is set;
    /// writes always go to the registry itself.
    pub fn endpoints(&self, registry: &str, for_write: bool) -> Vec<Endpoint> {
        let host = if registry == DOCKER_HUB || registry == "index.docker.io" {
            DOCKER_HUB_API_HOST.to_string()
        } else {
            registry.to_string()
        };
        let main = Endpoint {
            scheme: self.scheme_for(&host),
            host,
            mirror: false,
        };
        match (&self.mirror, for_write) {
            (Some(m), false) if main.host == DOCKER_HUB_API_HOST => vec![m.clone(), main],
            _ => vec![main],
        }
    }
}

/// `host:port` → `host`, `[::1]:5000` → `::1`, `[::1]` → `::1`.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        // More than one colon without brackets: a bare IPv6 address.
        Some((h, _)) if h.contains(':') => host,
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

fn is_loopback(bare: &str) -> bool {
    if bare == "localhost" {
        return true;
    }
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.octets()[0] == 127,
        // `::ffff:127.x.y.z` is IPv4 loopback too (Go, and so Docker, agree).
        Ok(IpAddr::V6(v6)) => {
            v6 == Ipv6Addr::LOCALHOST || v6.to_ipv4_mapped().is_some_and(|v4| v4.octets()[0] == 127)
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_plain_http_and_the_rest_https() {
        let p = EndpointPolicy::default();
        assert_eq!(p.scheme_for("127.0.0.1:5000"), "http");
        assert_eq!(p.scheme_for("127.3.2.1"), "http");
        assert_eq!(p.scheme_for("localhost:5000"), "http");
        assert_eq!(p.scheme_for("[::1]:5000"), "http");
        assert_eq!(p.scheme_for("[::ffff:127.0.0.1]:5000"), "http");
        assert_eq!(p.scheme_for("[::2]:5000"), "https");
        assert_eq!(p.scheme_for("128.0.0.1:5000"), "https");
        assert_eq!(p.scheme_for("ghcr.io"), "https");
        assert_eq!(p.scheme_for("localhost.example.com"), "https");
    }

    #[test]
    fn insecure_hosts_match_with_and_without_port() {
        let mut p = EndpointPolicy::default();
        p.add_insecure("reg.lan");
        p.add_insecure("other.lan:5000");
        assert_eq!(p.scheme_for("reg.lan"), "http");
        assert_eq!(p.scheme_for("reg.lan:8443"), "http");
        assert_eq!(p.scheme_for("other.lan:5000"), "http");
        assert_eq!(p.scheme_for("other.lan:5001"), "https");
        assert_eq!(p.scheme_for("other.lan"), "https");
    }

    #[test]
    fn docker_hub_maps_to_its_api_host_and_mirror_is_for_reads_only() {
        let mut p = EndpointPolicy::default();
        assert_eq!(
            p.endpoints("docker.io", false)[0].url("/v2/"),
            "https://registry-1.docker.io/v2/"
        );
        p.set_mirror("http://127.0.0.1:5001/")
            .expect("valid mirror");
        let reads = p.endpoints("docker.io", false);
        assert_eq!(reads.len(), 2);
        assert_eq!(reads[0].base(), "http://127.0.0.1:5001");
        assert!(reads[0].mirror);
        assert_eq!(reads[1].host, DOCKER_HUB_API_HOST);
        assert_eq!(p.endpoints("docker.io", true).len(), 1);
        assert_eq!(p.endpoints("quay.io", false).len(), 1);
        assert!(p.set_mirror("https://m.example/path").is_err());
    }

    #[test]
    fn locations_resolve_against_the_endpoint() {
        let e = Endpoint {
            scheme: "http",
            host: "127.0.0.1:5000".into(),
            mirror: false,
        };
        assert_eq!(
            e.resolve("/v2/a/blobs/uploads/x?_state=1"),
            "http://127.0.0.1:5000/v2/a/blobs/uploads/x?_state=1"
        );
        assert_eq!(e.resolve("https://s3.example/x"), "https://s3.example/x");
    }
}
