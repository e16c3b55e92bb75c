//! `ADD <url>`: files fetched over HTTP(S) become a small context of their
//! own, so the COPY rules, checksums and layer writing are the context's.
//!
//! Docker's rules: the file is named after the last segment of the URL's
//! path (else the `Content-Disposition` filename), gets mode 0600, and is
//! never unpacked unless `--unpack=true`; `--checksum=sha256:…` must match
//! the bytes. The cache key is the downloaded content, so every build
//! fetches the URL again (as BuildKit does without an ETag cache), and an
//! unchanged file is a cache hit.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use cache::digest::{Digest, Sha256};

/// One fetched file: its name in the download directory and its digest.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub url: String,
    pub name: String,
    pub digest: Digest,
}

/// Downloads every URL into `dir` (mode 0600 each) and checks `checksum`.
pub fn fetch_all(
    urls: &[String],
    dir: &Path,
    checksum: Option<&str>,
) -> anyhow::Result<Vec<Fetched>> {
    if checksum.is_some() && urls.len() != 1 {
        bail!("ADD --checksum needs exactly one URL source");
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
        // The bytes as the server stores them: a .gz stays compressed.
        .accept_encoding("identity")
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .max_redirects(10)
        .build()
        .into();
    let mut out = Vec::new();
    for url in urls {
        let f = fetch(&agent, url, dir).with_context(|| format!("ADD {url}"))?;
        if out.iter().any(|o: &Fetched| o.name == f.name) {
            bail!(
                "ADD: two URLs download to the same file name {:?}; add them in separate instructions",
                f.name
            );
        }
        out.push(f);
    }
    if let (Some(want), Some(got)) = (checksum, out.first()) {
        let want: Digest = want
            .parse()
            .map_err(|e| anyhow!("ADD --checksum={want}: {e}"))?;
        if want != got.digest {
            bail!(
                "ADD --checksum: {} has digest {}, not {want}; the file changed or the checksum is wrong",
                got.url,
                got.digest
            );
        }
    }
    Ok(out)
}

fn fetch(agent: &ureq::Agent, url: &str, dir: &Path) -> anyhow::Result<Fetched> {
    let scheme = url.split("://").next().unwrap_or("").to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        bail!("unsupported URL scheme {scheme:?}: ADD fetches http:// and https:// URLs");
    }
    let mut resp = agent.get(url).call().map_err(|e| anyhow!("{e}"))?;
    let name = file_name(url, resp.headers().get("content-disposition"));
    let modified = last_modified(resp.headers().get("last-modified"));
    let path = dir.join(&name);
    let mut file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut body = resp.body_mut().with_config().limit(u64::MAX).reader();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = body.read(&mut buf).context("downloading")?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .with_context(|| format!("writing {}", path.display()))?;
    }
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    // Docker's rule: the file's time is the server's Last-Modified (the
    // epoch without one, so the layer does not depend on when it ran).
    let t = filetime::FileTime::from_unix_time(modified.unwrap_or(0), 0);
    filetime::set_file_handle_times(&file, Some(t), Some(t))
        .with_context(|| format!("setting the time of {}", path.display()))?;
    Ok(Fetched {
        url: url.to_string(),
        name,
        digest: hasher.finalize(),
    })
}

/// The Unix time of an HTTP `Last-Modified` header (RFC 7231's IMF-fixdate,
/// `Sun, 06 Nov 1994 08:49:37 GMT`); `None` when absent or unreadable.
fn last_modified(h: Option<&ureq::http::HeaderValue>) -> Option<i64> {
    let v = h?.to_str().ok()?;
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(v.trim(), &fmt)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

/// The name Docker gives a downloaded file.
fn file_name(url: &str, disposition: Option<&ureq::http::HeaderValue>) -> String {
    let path = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split_once('/').map(|(_, p)| p))
        .unwrap_or("");
    let path = path.split(['?', '#']).next().unwrap_or("");
    let from_path = path.rsplit('/').next().unwrap_or("");
    let from_header = disposition
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(';')
                .find_map(|p| p.trim().strip_prefix("filename="))
        })
        .map(|f| {
            f.trim_matches('"')
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string()
        });
    [Some(from_path.to_string()), from_header]
        .into_iter()
        .flatten()
        .find(|n| !n.is_empty() && n != "." && n != "..")
        .unwrap_or_else(|| "download".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_modified_is_read_as_an_http_date() {
        let h = ureq::http::HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(last_modified(Some(&h)), Some(784111777));
        let bad = ureq::http::HeaderValue::from_static("yesterday");
        assert_eq!(last_modified(Some(&bad)), None);
        assert_eq!(last_modified(None), None);
    }

    #[test]
    fn names_come_from_the_path_then_the_header() {
        assert_eq!(file_name("https://x.org/a/b.tar.gz?x=1", None), "b.tar.gz");
        let h = ureq::http::HeaderValue::from_static("attachment; filename=\"r.zip\"");
        assert_eq!(file_name("https://x.org/", Some(&h)), "r.zip");
        assert_eq!(file_name("https://x.org", None), "download");
    }
}
