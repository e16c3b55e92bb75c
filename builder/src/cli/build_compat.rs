//! The `docker buildx build` flags a CI script passes besides the core
//! ones: `--load`, `--add-host`, `--annotation`, `--provenance`/`--sbom`,
//! `--shm-size`, `--ulimit` and `--insecure-registry`. Kept apart from
//! `build.rs` so that the core flags stay readable; each is validated here
//! into the typed [`crate::options`] values the build uses.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};
use clap::Args;

use super::not_yet::not_supported;
use crate::options::StepSandbox;

#[derive(Debug, Default, Args)]
pub struct CompatFlags {
    /// Load the image into the docker (else podman) found on PATH, as
    /// buildx loads into its daemon.
    #[arg(long)]
    pub load: bool,
    /// Add an /etc/hosts entry for RUN steps: `HOST:IP` (repeatable).
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_hosts: Vec<String>,
    /// Add a manifest annotation: `[manifest:]KEY=VALUE` (repeatable; the
    /// manifest is then written with OCI media types).
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Provenance attestation: only `false` (strata makes none).
    #[arg(
        long,
        value_name = "false",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub provenance: Option<String>,
    /// SBOM attestation: only `false` (strata makes none).
    #[arg(
        long,
        value_name = "false",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub sbom: Option<String>,
    /// Size of /dev/shm in RUN steps, e.g. `256m` (default 64m).
    #[arg(long = "shm-size", value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// Resource limit for RUN steps: `NAME=SOFT[:HARD]`, e.g. `nofile=1024:2048`.
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimits: Vec<String>,
    /// Talk plain HTTP to this registry host (repeatable): for bases,
    /// caches and pushes of this build.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// Entitlements: `network.host` is accepted (strata needs no
    /// entitlement for it); others are not supported yet.
    #[arg(long = "allow", value_name = "ENTITLEMENT", value_delimiter = ',')]
    pub allow: Vec<String>,
    /// Attestations: only `type=sbom|provenance,disabled=true` (strata
    /// makes none).
    #[arg(long = "attest", value_name = "SPEC")]
    pub attest: Vec<String>,
    /// Ignored: strata has no builder instances (the build runs in this
    /// process).
    #[arg(long, value_name = "NAME")]
    pub builder: Option<String>,
}

/// `HOST:IP` or `HOST=IP`, the address an IPv4 or IPv6 address (IPv6 may
/// be in brackets) or `host-gateway`: the host itself, which RUN steps
/// reach at 127.0.0.1 because they share the host's network.
fn parse_add_host(s: &str) -> anyhow::Result<(String, String)> {
    let (host, ip) = s
        .split_once('=')
        .or_else(|| s.split_once(':'))
        .filter(|(h, ip)| !h.is_empty() && !ip.is_empty())
        .ok_or_else(|| anyhow!("--add-host: expected HOST:IP, got {s:?}"))?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    let ip = if ip == "host-gateway" {
        "127.0.0.1"
    } else {
        ip
    };
    if ip.parse::<std::net::IpAddr>().is_err() {
        bail!("--add-host {s}: {ip:?} is not an IP address; use HOST:IP, e.g. db:10.0.0.5");
    }
    if host.contains(char::is_whitespace) {
        bail!("--add-host {s}: a host name has no spaces");
    }
    Ok((host.to_string(), ip.to_string()))
}

/// `KEY=VALUE` or `manifest:KEY=VALUE` (buildx's default type is the
/// manifest). Other types need an index or descriptors strata does not write.
fn parse_annotation(s: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| anyhow!("--annotation: expected [TYPE:]KEY=VALUE, got {s:?}"))?;
    // `TYPE[PLATFORM]:KEY`; a key without such a prefix may hold ':' itself.
    let prefix = k.split_once(':').map(|(ty, key)| {
        let ty = ty.split_once('[').map_or(ty, |(t, _)| t);
        (ty, key)
    });
    let key = match prefix {
        Some((ty, key)) if ty.chars().all(|c| c.is_ascii_lowercase() || c == '-') => match ty {
            "manifest" => key,
            "index" | "manifest-descriptor" | "index-descriptor" => {
                return Err(not_supported(&format!(
                    "--annotation {ty}:… (strata writes one manifest without an index; use manifest: or no prefix)"
                )));
            }
            other => bail!(
                "--annotation {s}: unknown type {other:?}: use manifest, index, manifest-descriptor or index-descriptor"
            ),
        },
        _ => k,
    };
    if key.is_empty() {
        bail!("--annotation {s}: the key is empty");
    }
    Ok((key.to_string(), v.to_string()))
}

/// `--provenance`/`--sbom`: strata makes no attestation, so only an
/// explicit `false` (or `0`, `mode=…` with `disabled`) is accepted.
fn check_attestation(flag: &str, v: Option<&str>) -> anyhow::Result<()> {
    match v {
        None | Some("false") | Some("0") | Some("disabled=true") => Ok(()),
        Some(other) => Err(not_supported(&format!(
            "{flag}={other}: strata makes no attestations; pass {flag}=false"
        ))),
    }
}

/// `--allow`: what strata needs no entitlement for is accepted.
fn check_allow(e: &str) -> anyhow::Result<()> {
    match e {
        "network.host" => Ok(()),
        other => Err(not_supported(&format!(
            "--allow {other} (strata knows network.host, which it allows without asking)"
        ))),
    }
}

/// `--attest`: only a disabled attestation.
fn check_attest(s: &str) -> anyhow::Result<()> {
    let items: Vec<(&str, &str)> = s.split(',').filter_map(|i| i.split_once('=')).collect();
    let ty = items.iter().find(|(k, _)| *k == "type").map(|(_, v)| *v);
    let disabled = items.iter().any(|(k, v)| *k == "disabled" && *v == "true");
    match ty {
        Some("sbom" | "provenance") if disabled => Ok(()),
        Some(_) | None => Err(not_supported(&format!(
            "--attest {s}: strata makes no attestations (type=…,disabled=true is accepted)"
        ))),
    }
}

/// The validated flags.
pub struct Compat {
    pub load: bool,
    pub sandbox: StepSandbox,
    pub annotations: BTreeMap<String, String>,
    pub insecure_registries: Vec<String>,
}

impl CompatFlags {
    pub fn validate(self) -> anyhow::Result<Compat> {
        check_attestation("--provenance", self.provenance.as_deref())?;
        check_attestation("--sbom", self.sbom.as_deref())?;
        for a in &self.allow {
            check_allow(a)?;
        }
        for a in &self.attest {
            check_attest(a)?;
        }
        let shm_size = match &self.shm_size {
            Some(s) => {
                runtime::sandbox::limits::parse_size(s).map_err(|e| anyhow!("--shm-size: {e}"))?
            }
            None => runtime::sandbox::limits::DEFAULT_SHM_SIZE,
        };
        let ulimits = self
            .ulimits
            .iter()
            .map(|u| u.parse().map_err(|e| anyhow!("--ulimit {u}: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Compat {
            load: self.load,
            sandbox: StepSandbox {
                extra_hosts: self
                    .add_hosts
                    .iter()
                    .map(|h| parse_add_host(h))
                    .collect::<anyhow::Result<_>>()?,
                shm_size,
                ulimits,
            },
            annotations: self
                .annotations
                .iter()
                .map(|a| parse_annotation(a))
                .collect::<anyhow::Result<_>>()?,
            insecure_registries: self.insecure_registries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_host_takes_host_colon_ip() {
        assert_eq!(
            parse_add_host("db:10.0.0.5").unwrap(),
            ("db".into(), "10.0.0.5".into())
        );
        assert_eq!(
            parse_add_host("v6=::1").unwrap(),
            ("v6".into(), "::1".into())
        );
        assert_eq!(
            parse_add_host("db:nowhere").unwrap_err().to_string(),
            "--add-host db:nowhere: \"nowhere\" is not an IP address; use HOST:IP, e.g. db:10.0.0.5"
        );
        assert_eq!(
            parse_add_host("host.docker.internal=host-gateway").unwrap(),
            ("host.docker.internal".into(), "127.0.0.1".into())
        );
        assert_eq!(
            parse_add_host("v6=[2001:db8::1]").unwrap(),
            ("v6".into(), "2001:db8::1".into())
        );
        assert_eq!(
            parse_add_host("db").unwrap_err().to_string(),
            "--add-host: expected HOST:IP, got \"db\""
        );
    }

    #[test]
    fn annotations_default_to_the_manifest() {
        assert_eq!(
            parse_annotation("org.opencontainers.image.title=app").unwrap(),
            ("org.opencontainers.image.title".into(), "app".into())
        );
        assert_eq!(
            parse_annotation("manifest:a.b=c=d").unwrap(),
            ("a.b".into(), "c=d".into())
        );
        assert_eq!(
            parse_annotation("index:a=b").unwrap_err().to_string(),
            "not supported yet: --annotation index:… (strata writes one manifest without an index; use manifest: or no prefix)"
        );
        assert_eq!(
            parse_annotation("novalue").unwrap_err().to_string(),
            "--annotation: expected [TYPE:]KEY=VALUE, got \"novalue\""
        );
    }

    #[test]
    fn entitlements_and_attest() {
        assert!(check_allow("network.host").is_ok());
        assert_eq!(
            check_allow("security.insecure").unwrap_err().to_string(),
            "not supported yet: --allow security.insecure (strata knows network.host, which it allows without asking)"
        );
        assert!(check_attest("type=provenance,disabled=true").is_ok());
        assert_eq!(
            check_attest("type=sbom").unwrap_err().to_string(),
            "not supported yet: --attest type=sbom: strata makes no attestations (type=…,disabled=true is accepted)"
        );
    }

    #[test]
    fn attestations_only_off() {
        assert!(check_attestation("--sbom", Some("false")).is_ok());
        assert!(check_attestation("--sbom", None).is_ok());
        assert_eq!(
            check_attestation("--provenance", Some("mode=max"))
                .unwrap_err()
                .to_string(),
            "not supported yet: --provenance=mode=max: strata makes no attestations; pass --provenance=false"
        );
        assert_eq!(
            check_attestation("--provenance", Some("true"))
                .unwrap_err()
                .to_string(),
            "not supported yet: --provenance=true: strata makes no attestations; pass --provenance=false"
        );
    }
}
