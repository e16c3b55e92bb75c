//! `RUN --mount=...` options: parsing and validation, BuildKit-compatible.
//!
//! The option value is a CSV record of `key=value` fields (and a few bare
//! flags: `ro`, `rw`, `required`). Values are word-expanded with the RUN's
//! environment, except `from=`, which BuildKit refuses to expand. Defaults
//! are filled in here so the builder never has to guess: a cache mount's id
//! is its target, a secret's id is its target's basename, an ssh mount's id
//! is `default`, and relative targets are resolved against WORKDIR.

use serde::{Deserialize, Serialize};

use crate::lower::suggest::closest;

/// The kind of a run mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// A directory from the context or another stage (default).
    Bind,
    /// A persistent cache directory shared between builds.
    Cache,
    /// An empty in-memory filesystem.
    Tmpfs,
    /// A secret file (or environment variable).
    Secret,
    /// An ssh-agent socket.
    Ssh,
}

impl MountType {
    const NAMES: [&'static str; 5] = ["bind", "cache", "tmpfs", "secret", "ssh"];

    fn parse(s: &str) -> Option<MountType> {
        Some(match s {
            "bind" => MountType::Bind,
            "cache" => MountType::Cache,
            "tmpfs" => MountType::Tmpfs,
            "secret" => MountType::Secret,
            "ssh" => MountType::Ssh,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// Concurrency policy of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    /// Several builds use it at once.
    Shared,
    /// Each concurrent user gets its own copy.
    Private,
    /// Users take turns (a file lock).
    Locked,
}

/// One parsed `--mount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunMount {
    #[serde(rename = "type")]
    pub kind: MountType,
    /// Absolute path in the container. For a secret with only `env=` it is
    /// `None`; secrets without a target otherwise use `/run/secrets/<id>`
    /// and ssh mounts `/run/buildkit/ssh_agent.<n>` (the builder numbers
    /// them).
    pub target: Option<String>,
    /// `source=`: path inside `from` (bind, cache) or the context.
    pub source: Option<String>,
    /// `from=`: a stage name/index or image; `None` is the build context
    /// (bind) or an empty cache.
    pub from: Option<String>,
    /// The stage `from` names, resolved by lowering (`None` for the context
    /// or an image).
    pub from_stage: Option<usize>,
    /// Cache/secret/ssh id, defaults filled in.
    pub id: Option<String>,
    /// Cache sharing; `shared` by default for cache mounts.
    pub sharing: Option<Sharing>,
    /// Permission bits (octal in the Dockerfile, even without a leading 0).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Bind mounts and secrets default to read-only; cache and tmpfs to
    /// read-write.
    pub readonly: bool,
    /// Secret/ssh: fail when the build does not provide it.
    pub required: bool,
    /// tmpfs size limit in bytes.
    pub size: Option<u64>,
    /// Secret exposed as this environment variable.
    pub env: Option<String>,
}

/// Splits a CSV record like Go's `encoding/csv` does for one line: fields
/// separated by `,`, a field may be `"quoted"` with `""` for a quote.
fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("invalid mount option {s:?}: unterminated quote")),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {}
                Some(_) => return Err(format!("invalid mount option {s:?}: extraneous quote")),
            }
            fields.push(field);
            continue;
        }
        loop {
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => break,
                Some(c) => field.push(c),
            }
        }
        fields.push(field);
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid value for {key}: {value}")),
    }
}

/// Parses a size like `128m`, `1g`, `4096` (binary units, as Docker's
/// `MemBytes`).
fn parse_size(value: &str) -> Option<u64> {
    let v = value.trim().to_ascii_lowercase();
    let digits_end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(digits_end);
    let num: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        "p" | "pb" | "pib" => 1 << 50,
        _ => return None,
    };
    let bytes = num * mult as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

const ALL_KEYS: [&str; 19] = [
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

/// Parses one `--mount` value. `expand` expands a value with the RUN's
/// environment; `cwd` resolves relative targets. Errors use BuildKit's
/// wording plus a suggestion where one helps.
pub fn parse_mount(
    value: &str,
    expand: &mut dyn FnMut(&str) -> Result<String, String>,
    cwd: &str,
) -> Result<RunMount, String> {
    let mut m = RunMount {
        kind: MountType::Bind,
        target: None,
        source: None,
        from: None,
        from_stage: None,
        id: None,
        sharing: None,
        mode: None,
        uid: None,
        gid: None,
        readonly: false,
        required: false,
        size: None,
        env: None,
    };
    let mut ro_auto = true;
    let mut raw_size: Option<String> = None;
    for field in csv_fields(value)? {
        let Some((key, val)) = field.split_once('=') else {
            match field.to_ascii_lowercase().as_str() {
                "readonly" | "ro" => {
                    m.readonly = true;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = false;
                    ro_auto = false;
                }
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                    m.required = true;
                }
                "required" => {
                    return Err(format!(
                        "unexpected key 'required' for mount type '{}'",
                        m.kind.as_str()
                    ));
                }
                _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
            }
            continue;
        };
        let key = key.to_ascii_lowercase();
        let val = if key == "from" {
            if has_variable(val) {
                return Err(
                    "'from' doesn't support variable expansion, define alias stage instead"
                        .to_string(),
                );
            }
            val.to_string()
        } else {
            expand(val)?
        };
        match key.as_str() {
            "type" => {
                let lower = val.to_ascii_lowercase();
                m.kind = MountType::parse(&lower).ok_or_else(|| {
                    let mut e = format!("unsupported mount type {val:?}");
                    if let Some(s) = closest(&lower, &MountType::NAMES) {
                        e.push_str(&format!(" (did you mean {s}?)"));
                    }
                    e
                })?;
            }
            "from" => m.from = Some(val),
            "source" | "src" => m.source = Some(val),
            "target" | "dst" | "destination" | "dest" => m.target = Some(val),
            "readonly" | "ro" => {
                m.readonly = parse_bool(&key, &val)?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.readonly = !parse_bool(&key, &val)?;
                ro_auto = false;
            }
            "required" => {
                if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                    return Err(format!(
                        "unexpected key 'required' for mount type '{}'",
                        m.kind.as_str()
                    ));
                }
                m.required = parse_bool(&key, &val)?;
            }
            "size" => {
                if m.kind != MountType::Tmpfs {
                    return Err(format!(
                        "unexpected key 'size' for mount type '{}'",
                        m.kind.as_str()
                    ));
                }
                raw_size = Some(val);
            }
            "id" => m.id = Some(val),
            "sharing" => {
                m.sharing = match val.to_ascii_lowercase().as_str() {
                    "" => None,
                    "shared" => Some(Sharing::Shared),
                    "private" => Some(Sharing::Private),
                    "locked" => Some(Sharing::Locked),
                    _ => return Err(format!("unsupported sharing value {val:?}")),
                }
            }
            "mode" => {
                m.mode = Some(
                    u32::from_str_radix(&val, 8)
                        .map_err(|_| format!("invalid value {val} for mode"))?,
                )
            }
            "uid" => {
                m.uid = Some(
                    val.parse()
                        .map_err(|_| format!("invalid value {val} for uid"))?,
                )
            }
            "gid" => {
                m.gid = Some(
                    val.parse()
                        .map_err(|_| format!("invalid value {val} for gid"))?,
                )
            }
            "env" => m.env = Some(val),
            _ => {
                let mut e = format!("unexpected key '{key}' in '{field}'");
                if let Some(s) = closest(&key, &ALL_KEYS) {
                    e.push_str(&format!(" (did you mean {s}?)"));
                }
                return Err(e);
            }
        }
    }
    if let Some(size) = raw_size
        && !size.is_empty()
    {
        m.size = Some(parse_size(&size).ok_or_else(|| format!("invalid value for size: {size}"))?);
    }
    validate_and_default(m, ro_auto, cwd)
}

/// Whether a `from=` value tries to use a variable (`$` followed by
/// something), which BuildKit rejects.
fn has_variable(v: &str) -> bool {
    v.char_indices()
        .any(|(i, c)| c == '$' && v[i + 1..].chars().next().is_some())
}

fn validate_and_default(mut m: RunMount, ro_auto: bool, cwd: &str) -> Result<RunMount, String> {
    let kind = m.kind.as_str();
    let file_info_allowed = matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    );
    if !file_info_allowed {
        for (name, set) in [
            ("mode", m.mode.is_some()),
            ("uid", m.uid.is_some()),
            ("gid", m.gid.is_some()),
        ] {
            if set {
                return Err(format!("{name} not allowed for \"{kind}\" type mounts"));
            }
        }
    }
    if ro_auto {
        m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(format!("invalid cache sharing set for {kind} mount"));
    }
    if m.env.is_some() && m.kind != MountType::Secret {
        return Err(format!("unexpected key 'env' for mount type '{kind}'"));
    }
    if let Some(t) = &m.target {
        if t.is_empty() {
            m.target = None;
        } else if !t.starts_with('/') {
            m.target = Some(crate::lower::paths::join(cwd, t));
        }
    }
    match m.kind {
        MountType::Secret => {
            if m.from.is_some() {
                return Err("secret mount should not have a from".into());
            }
            if m.source.is_some() {
                return Err("secret mount should not have a source".into());
            }
            if m.id.as_deref().unwrap_or("").is_empty() {
                let base = m
                    .target
                    .as_deref()
                    .and_then(|t| t.trim_end_matches('/').rsplit('/').next())
                    .filter(|b| !b.is_empty());
                match base {
                    Some(b) => m.id = Some(b.to_string()),
                    None => return Err("one of source, target required".into()),
                }
            }
            if m.target.is_none() && m.env.is_none() {
                m.target = Some(format!("/run/secrets/{}", m.id.as_deref().unwrap_or("")));
            }
        }
        MountType::Ssh => {
            if m.id.as_deref().unwrap_or("").is_empty() {
                m.id = Some("default".into());
            }
        }
        MountType::Cache => {
            if m.sharing.is_none() {
                m.sharing = Some(Sharing::Shared);
            }
            if m.target.is_none() {
                return Err("mount target must be specified for cache mounts".into());
            }
            if m.id.as_deref().unwrap_or("").is_empty() {
                m.id = m.target.clone();
            }
        }
        MountType::Bind | MountType::Tmpfs => {
            if m.target.is_none() {
                return Err(format!("mount target must be specified for {kind} mounts"));
            }
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Result<RunMount, String> {
        parse_mount(v, &mut |s: &str| Ok(s.replace("$P", "/p")), "/w")
    }

    #[test]
    fn defaults() {
        let m = parse("target=/context").unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert!(m.readonly);
        let c = parse("type=cache,target=/mycache,uid=1001,gid=1002,mode=0751").unwrap();
        assert_eq!(c.id.as_deref(), Some("/mycache"));
        assert_eq!(c.mode, Some(0o751));
        assert_eq!(c.sharing, Some(Sharing::Shared));
        assert!(!c.readonly);
        let s = parse("type=secret,target=/etc/passwd,required=true").unwrap();
        assert_eq!(s.id.as_deref(), Some("passwd"));
        assert!(s.required);
        let s = parse("type=secret,required,mode=741,id=x").unwrap();
        assert_eq!(s.mode, Some(0o741));
        assert_eq!(s.target.as_deref(), Some("/run/secrets/x"));
        assert_eq!(parse("type=ssh").unwrap().id.as_deref(), Some("default"));
        let t = parse("type=tmpfs,target=/dev/shm,size=128m").unwrap();
        assert_eq!(t.size, Some(128 << 20));
        assert_eq!(
            parse("type=cache,target=rel").unwrap().target.as_deref(),
            Some("/w/rel")
        );
        assert_eq!(
            parse("type=cache,target=$P").unwrap().target.as_deref(),
            Some("/p")
        );
    }

    #[test]
    fn errors() {
        let e = parse("typ=tmpfs").unwrap_err();
        assert!(
            e.contains("unexpected key 'typ'") && e.contains("did you mean type?"),
            "{e}"
        );
        let e = parse("type=tmp").unwrap_err();
        assert!(e.contains("unsupported mount type \"tmp\"") && e.contains("did you mean tmpfs?"));
        let e = parse("from=$ttt,type=cache,target=/tmp").unwrap_err();
        assert!(e.contains("'from' doesn't support variable expansion"));
        assert!(parse("type=bind,target=/x,mode=0755").is_err());
        assert!(parse("type=bind,target=/x,sharing=locked").is_err());
        assert!(parse("type=cache,target=/x,sharing=bogus").is_err());
        assert!(parse("type=bind,target=/x,required").is_err());
        assert!(parse("type=tmpfs,target=/x,size=lots").is_err());
        assert!(parse("type=secret,id=a,source=b").is_err());
        assert!(parse("type=bind").is_err());
        assert!(parse("bogus").is_err());
    }

    #[test]
    fn csv_quotes() {
        assert_eq!(
            csv_fields(r#""target=/a,b",ro"#).unwrap(),
            vec!["target=/a,b".to_string(), "ro".to_string()]
        );
        assert!(csv_fields(r#""unterminated"#).is_err());
    }
}

/// One parsed `RUN --device` value (a CDI device request).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDevice {
    /// The device name, e.g. `vendor1.com/device=foo` (may contain `=`).
    pub name: String,
    /// Fail when the device is not available.
    pub required: bool,
}

/// Parses a `RUN --device` value as BuildKit does: CSV fields; the first
/// field may be the bare name, `name=` sets it explicitly (once),
/// `required[=bool]` marks it mandatory.
pub fn parse_device(value: &str) -> Result<RunDevice, String> {
    let mut d = RunDevice::default();
    for (i, field) in csv_fields(value)?.into_iter().enumerate() {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        match key.as_str() {
            "name" => {
                if !d.name.is_empty() {
                    return Err(format!("device name already set to {}", d.name));
                }
                d.name = val.unwrap_or_default().to_string();
            }
            "required" => {
                d.required = match val {
                    None => true,
                    Some(v) => parse_bool("required", v)?,
                }
            }
            _ if i == 0 => d.name = field.clone(),
            _ => return Err(format!("unexpected key '{key}' in '{field}'")),
        }
    }
    Ok(d)
}
