//! The platform an image runs on (`linux/amd64`, `linux/arm64/v8`), used to
//! pick one manifest out of an image index.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An OS / architecture / variant triple in OCI spelling.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Why a string is not a platform.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid platform {0:?}: expected OS/ARCH[/VARIANT], for example linux/amd64")]
pub struct PlatformError(pub String);

impl Platform {
    /// `linux/amd64`, the default when nothing else is asked for.
    pub fn linux_amd64() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }

    /// The platform of the machine strata runs on, in OCI spelling. This is
    /// the one host-platform table: the builder hands this platform to the
    /// frontend (BUILDPLATFORM, the default TARGETPLATFORM) as well as to
    /// the store, so both agree on every architecture.
    pub fn host() -> Self {
        Platform::for_rust_arch(std::env::consts::ARCH)
    }

    /// `linux/<arch>` for a Rust target architecture name
    /// (`std::env::consts::ARCH`), in Go's spelling as OCI images use it.
    /// An architecture the table does not know keeps Rust's name: the
    /// store then finds no image for it and says so, where guessing
    /// `amd64` would pull an image the machine cannot run.
    pub fn for_rust_arch(rust_arch: &str) -> Self {
        let little = cfg!(target_endian = "little");
        let architecture = match rust_arch {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" if little => "ppc64le",
            "powerpc64" => "ppc64",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            "loongarch64" => "loong64",
            "mips64" if little => "mips64le",
            "mips" if little => "mipsle",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    /// Whether an image built for `other` satisfies a request for `self`.
    /// A missing variant on either side matches any variant, except that
    /// `arm64` with no variant means `v8`.
    pub fn matches(&self, other: &Platform) -> bool {
        if self.os != other.os || self.architecture != other.architecture {
            return false;
        }
        let norm = |p: &Platform| match (p.architecture.as_str(), p.variant.as_deref()) {
            ("arm64", None) => Some("v8".to_string()),
            (_, v) => v.map(str::to_string),
        };
        match (norm(self), norm(other)) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }
}

impl Default for Platform {
    fn default() -> Self {
        Platform::linux_amd64()
    }
}

impl FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok_part = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| ok_part(p)) {
            return Err(PlatformError(s.to_string()));
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture: parts[1].to_ascii_lowercase(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_table_maps_rust_names_and_keeps_unknown_ones() {
        assert_eq!(Platform::for_rust_arch("x86_64").to_string(), "linux/amd64");
        assert_eq!(
            Platform::for_rust_arch("aarch64").to_string(),
            "linux/arm64"
        );
        assert_eq!(
            Platform::for_rust_arch("loongarch64").to_string(),
            "linux/loong64"
        );
        // Unknown: Rust's name, never a guessed amd64.
        assert_eq!(
            Platform::for_rust_arch("sparc64").to_string(),
            "linux/sparc64"
        );
        assert_eq!(
            Platform::host(),
            Platform::for_rust_arch(std::env::consts::ARCH)
        );
    }

    #[test]
    fn parse_display_and_match() {
        let p: Platform = "linux/arm64".parse().expect("parse");
        assert_eq!(p.to_string(), "linux/arm64");
        assert!(p.matches(&"linux/arm64/v8".parse().expect("parse")));
        assert!(!p.matches(&"linux/amd64".parse().expect("parse")));
        let v7: Platform = "linux/arm/v7".parse().expect("parse");
        assert!(!v7.matches(&"linux/arm/v6".parse().expect("parse")));
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux/amd64/v1/x".parse::<Platform>().is_err());
        assert!("linux//v1".parse::<Platform>().is_err());
    }
}
