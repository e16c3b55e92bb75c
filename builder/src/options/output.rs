//! `-o/--output`: where the image goes and in what form.

use std::path::PathBuf;

use anyhow::{anyhow, bail};

use super::{parse_bool, split_kv};

/// `-o/--output type=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// docker-archive tarball (`docker load`).
    Docker,
    /// OCI image layout tarball.
    Oci,
    /// The final root filesystem as a tar.
    Tar,
    /// The final root filesystem written to a directory.
    Local,
    /// The local store (the default), optionally pushed with `push=true`.
    Image,
    /// Push to a registry.
    Registry,
}

/// Layer compression of an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    Uncompressed,
}

/// One `--output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    pub kind: OutputKind,
    /// `dest=`: a file (`-` = stdout) or, for `local`, a directory.
    pub dest: Option<PathBuf>,
    /// `name=`: image names (comma lists are not allowed inside one key;
    /// repeat `-t` instead).
    pub name: Option<String>,
    pub compression: Option<Compression>,
    /// `push=true` on `type=image`.
    pub push: bool,
}

impl std::str::FromStr for OutputSpec {
    type Err = anyhow::Error;

    /// `type=docker,dest=out.tar`, or a bare path (`-o dir` = `type=local,dest=dir`,
    /// `-o -` = `type=tar,dest=-`), as docker buildx accepts.
    fn from_str(s: &str) -> anyhow::Result<OutputSpec> {
        const FLAG: &str = "--output";
        if !s.contains('=') {
            let kind = if s == "-" {
                OutputKind::Tar
            } else {
                OutputKind::Local
            };
            return Ok(OutputSpec {
                kind,
                dest: Some(PathBuf::from(s)),
                name: None,
                compression: None,
                push: false,
            });
        }
        let mut kind = None;
        let mut spec = OutputSpec {
            kind: OutputKind::Image,
            dest: None,
            name: None,
            compression: None,
            push: false,
        };
        for item in s.split(',') {
            let (k, v) = split_kv(FLAG, item)?;
            match k.as_str() {
                "type" => {
                    kind = Some(match v.as_str() {
                        "docker" => OutputKind::Docker,
                        "oci" => OutputKind::Oci,
                        "tar" => OutputKind::Tar,
                        "local" => OutputKind::Local,
                        "image" => OutputKind::Image,
                        "registry" => OutputKind::Registry,
                        "cacheonly" => return Err(crate::not_supported("--output type=cacheonly")),
                        other => bail!(
                            "{FLAG}: unknown type {other:?}: use docker, oci, tar, local, image or registry"
                        ),
                    })
                }
                "dest" => spec.dest = Some(PathBuf::from(v)),
                "name" => spec.name = Some(v),
                "push" => spec.push = parse_bool(FLAG, "push", &v)?,
                "compression" => {
                    spec.compression = Some(match v.as_str() {
                        "gzip" => Compression::Gzip,
                        "zstd" => Compression::Zstd,
                        "uncompressed" => Compression::Uncompressed,
                        other => bail!(
                            "{FLAG}: unknown compression {other:?}: use gzip, zstd or uncompressed"
                        ),
                    })
                }
                other => bail!(
                    "{FLAG}: unknown key {other:?}: use type, dest, name, compression or push"
                ),
            }
        }
        spec.kind = kind.ok_or_else(|| {
            anyhow!("{FLAG}: missing type= (docker, oci, tar, local, image or registry)")
        })?;
        match spec.kind {
            OutputKind::Docker | OutputKind::Oci | OutputKind::Tar | OutputKind::Local
                if spec.dest.is_none() =>
            {
                bail!(
                    "{FLAG}: type={} needs dest=FILE (or dest=- for stdout)",
                    type_name(spec.kind)
                )
            }
            OutputKind::Local if spec.dest.as_deref() == Some(std::path::Path::new("-")) => {
                bail!("{FLAG}: type=local writes a directory; use type=tar,dest=- for stdout")
            }
            _ => {}
        }
        Ok(spec)
    }
}

fn type_name(k: OutputKind) -> &'static str {
    match k {
        OutputKind::Docker => "docker",
        OutputKind::Oci => "oci",
        OutputKind::Tar => "tar",
        OutputKind::Local => "local",
        OutputKind::Image => "image",
        OutputKind::Registry => "registry",
    }
}
