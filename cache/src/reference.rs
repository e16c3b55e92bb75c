//! Image references (`busybox`, `ghcr.io/o/r:v1`, `host:5000/r@sha256:…`) and
//! the wider "image source" names a Dockerfile `FROM` or `strata load` may
//! use (`docker-archive:PATH`, `oci-layout:PATH[:tag]`).
//!
//! The grammar follows the Docker distribution reference rules, because that is
//! what users type and what registries accept: a short name means Docker Hub
//! (`busybox` is `docker.io/library/busybox:latest`), the first component is a
//! registry host only if it has a `.` or a `:` or is `localhost`, repository
//! components are lowercase, and a reference without tag or digest means
//! `:latest`. Normalizing here, once, keeps tags in the store unambiguous.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::digest::Digest;

/// The registry short names resolve to.
pub const DOCKER_HUB: &str = "docker.io";
/// The tag a reference without tag or digest gets.
pub const DEFAULT_TAG: &str = "latest";

const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A parsed, normalized image reference.
///
/// At least one of `tag` and `digest` is set: parsing adds `latest` when the
/// input names neither.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("empty image reference")]
    Empty,
    #[error("invalid image reference {input:?}: {why}")]
    Invalid { input: String, why: String },
}

fn invalid(input: &str, why: impl Into<String>) -> ReferenceError {
    ReferenceError::Invalid {
        input: input.to_string(),
        why: why.into(),
    }
}

impl Reference {
    /// Parses and normalizes a reference typed by a user.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if input.trim() != input {
            return Err(invalid(input, "it has leading or trailing whitespace"));
        }
        // `name@sha256:…` — the digest is everything after the first `@`.
        let (rest, digest) = match input.split_once('@') {
            Some((name, d)) => {
                let digest = d
                    .parse::<Digest>()
                    .map_err(|e| invalid(input, format!("bad digest: {e}")))?;
                (name, Some(digest))
            }
            None => (input, None),
        };
        // A tag is after the last `:` that follows the last `/` (a `:` before
        // it belongs to a registry port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(&rest[at + 1..]))
            }
            None => (rest, None),
        };
        if let Some(t) = tag {
            validate_tag(t).map_err(|why| invalid(input, why))?;
        }
        if name.is_empty() {
            return Err(invalid(input, "the repository name is empty"));
        }
        let (registry, repository) = split_registry(name);
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry.to_string()
        };
        validate_registry(&registry).map_err(|why| invalid(input, why))?;
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        validate_repository(&repository).map_err(|why| invalid(input, why))?;
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(invalid(
                input,
                format!("the name is longer than {MAX_NAME_LEN} characters"),
            ));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Builds a reference from its parts, validating each.
    pub fn from_parts(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<Digest>,
    ) -> Result<Self, ReferenceError> {
        let mut s = format!("{registry}/{repository}");
        if let Some(t) = tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        Self::parse(&s)
    }

    /// The registry host (with port), e.g. `docker.io`, `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short name Docker shows: `busybox`, `user/app`, `host:5000/app`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DOCKER_HUB {
            match self.repository.strip_prefix("library/") {
                Some(short) if !short.contains('/') => short.to_string(),
                _ => self.repository.clone(),
            }
        } else {
            self.name()
        }
    }

    /// The familiar form with tag and digest: `busybox:latest`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        self.push_suffix(&mut s);
        s
    }

    /// This reference with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        validate_tag(tag).map_err(|why| invalid(tag, why))?;
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// This reference pinned to a digest (the tag is kept).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// This reference without its digest; a tagless one gets `latest`.
    pub fn without_digest(&self) -> Self {
        Reference {
            digest: None,
            tag: Some(self.tag.clone().unwrap_or_else(|| DEFAULT_TAG.to_string())),
            ..self.clone()
        }
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
    }
}

/// Splits `name` into registry and repository by the distribution rule.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    }
}

fn validate_registry(reg: &str) -> Result<(), String> {
    let (host, port) = match reg.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || reg.starts_with('[') => (h, Some(p)),
        _ => (reg, None),
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err())
    {
        return Err(format!(
            "the registry port {p:?} is not a number from 0 to 65535"
        ));
    }
    let ipv6 = host.starts_with('[') && host.ends_with(']');
    let ok = !host.is_empty()
        && (ipv6
            && host[1..host.len() - 1]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':')
            || host.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the registry host {host:?} is not a valid host name"
        ))
    }
}

fn validate_repository(repo: &str) -> Result<(), String> {
    for comp in repo.split('/') {
        if comp.is_empty() {
            return Err(
                "the repository has an empty path component (`//` or a trailing `/`)".into(),
            );
        }
        if comp.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!("repository name must be lowercase (got {comp:?})"));
        }
        if !valid_path_component(comp) {
            return Err(format!(
                "path component {comp:?} may only use a-z, 0-9 and single `.`, `_`, `__` or `-` runs between them"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !b.first().copied().is_some_and(alnum) || !b.last().copied().is_some_and(alnum) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn validate_tag(tag: &str) -> Result<(), String> {
    let b = tag.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    if b.is_empty() {
        return Err("the tag after `:` is empty".into());
    }
    if b.len() > MAX_TAG_LEN {
        return Err(format!("the tag is longer than {MAX_TAG_LEN} characters"));
    }
    if !word(b[0]) || !b.iter().all(|&x| word(x) || x == b'.' || x == b'-') {
        return Err(format!(
            "tag {tag:?} may only use letters, digits, `_`, `.` and `-`, and must not start with `.` or `-`"
        ));
    }
    Ok(())
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// The normalized form: `docker.io/library/busybox:latest`. Use
/// [`Reference::familiar`] for the short form Docker prints.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

/// Where a base image comes from. A plain name is looked up in the local store
/// first and in the registry second; the prefixed forms read a file or
/// directory directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// A local tag or a registry reference.
    Reference(Reference),
    /// `docker-archive:PATH`: a `docker save` tarball.
    DockerArchive(PathBuf),
    /// `oci-layout:PATH[:tag]`: an OCI image layout directory (or tar).
    OciLayout { path: PathBuf, tag: Option<String> },
}

impl ImageSource {
    /// Parses `docker-archive:PATH`, `oci-layout:PATH[:tag]` or a reference.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        if let Some(path) = input.strip_prefix("docker-archive:") {
            if path.is_empty() {
                return Err(invalid(input, "docker-archive: needs a file path after it"));
            }
            return Ok(ImageSource::DockerArchive(PathBuf::from(path)));
        }
        if let Some(rest) = input.strip_prefix("oci-layout:") {
            if rest.is_empty() {
                return Err(invalid(
                    input,
                    "oci-layout: needs a directory path after it",
                ));
            }
            // A `:tag` suffix is only taken when it cannot be part of a path.
            let (path, tag) = match rest.rsplit_once(':') {
                Some((p, t)) if !p.is_empty() && !t.contains('/') => {
                    validate_tag(t).map_err(|why| invalid(input, why))?;
                    (p, Some(t.to_string()))
                }
                _ => (rest, None),
            };
            return Ok(ImageSource::OciLayout {
                path: PathBuf::from(path),
                tag,
            });
        }
        Reference::parse(input).map(ImageSource::Reference)
    }
}

impl FromStr for ImageSource {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageSource::parse(s)
    }
}

impl fmt::Display for ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageSource::Reference(r) => write!(f, "{r}"),
            ImageSource::DockerArchive(p) => write!(f, "docker-archive:{}", p.display()),
            ImageSource::OciLayout { path, tag: None } => {
                write!(f, "oci-layout:{}", path.display())
            }
            ImageSource::OciLayout { path, tag: Some(t) } => {
                write!(f, "oci-layout:{}:{t}", path.display())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalization_table() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "busybox:1.36",
                "docker.io/library/busybox:1.36",
                "busybox:1.36",
            ),
            (
                "library/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "index.docker.io/library/busybox:x",
                "docker.io/library/busybox:x",
                "busybox:x",
            ),
            ("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
            (
                "localhost/app",
                "localhost/app:latest",
                "localhost/app:latest",
            ),
            (
                "localhost:5000/a/b:t",
                "localhost:5000/a/b:t",
                "localhost:5000/a/b:t",
            ),
            (
                "127.0.0.1:5000/library/busybox:latest",
                "127.0.0.1:5000/library/busybox:latest",
                "127.0.0.1:5000/library/busybox:latest",
            ),
            ("ghcr.io/o/r", "ghcr.io/o/r:latest", "ghcr.io/o/r:latest"),
            (
                "ab-c__d/x.y",
                "docker.io/ab-c__d/x.y:latest",
                "ab-c__d/x.y:latest",
            ),
            ("Foo.io/app", "Foo.io/app:latest", "Foo.io/app:latest"),
        ];
        for (input, full, familiar) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), *full, "normalized form of {input}");
            assert_eq!(r.familiar(), *familiar, "familiar form of {input}");
            // The normalized form parses to the same reference.
            assert_eq!(Reference::parse(&r.to_string()).ok(), Some(r));
        }
    }

    #[test]
    fn digest_references() {
        let r = Reference::parse(&format!("busybox@{D}")).expect("parse");
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().map(|d| d.to_string()), Some(D.to_string()));
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        let r = Reference::parse(&format!("h:1/x:t@{D}")).expect("parse");
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("h:1", "x", Some("t"))
        );
        assert_eq!(r.without_digest().to_string(), "h:1/x:t");
    }

    #[test]
    fn rejects_bad_references_with_reasons() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "busybox@sha256:abc",
            "busybox@md5:abc",
            "a//b",
            "a/",
            "a..b",
            "host:99999/x",
            "host:port/x",
            " busybox",
            "bad_-x",
            &format!("x:{}", "t".repeat(129)),
        ] {
            let err = Reference::parse(bad);
            assert!(err.is_err(), "{bad:?} should be rejected, got {err:?}");
        }
        let msg = Reference::parse("Busybox").unwrap_err().to_string();
        assert!(msg.contains("lowercase"), "{msg}");
    }

    #[test]
    fn image_sources() {
        assert_eq!(
            ImageSource::parse("docker-archive:/tmp/a.tar"),
            Ok(ImageSource::DockerArchive("/tmp/a.tar".into()))
        );
        assert_eq!(
            ImageSource::parse("oci-layout:/var/x:v1"),
            Ok(ImageSource::OciLayout {
                path: "/var/x".into(),
                tag: Some("v1".into())
            })
        );
        assert_eq!(
            ImageSource::parse("oci-layout:./dir"),
            Ok(ImageSource::OciLayout {
                path: "./dir".into(),
                tag: None
            })
        );
        assert!(matches!(
            ImageSource::parse("alpine:3"),
            Ok(ImageSource::Reference(_))
        ));
        assert!(ImageSource::parse("docker-archive:").is_err());
        assert!(ImageSource::parse("oci-layout:/x:bad tag").is_err());
    }
}
