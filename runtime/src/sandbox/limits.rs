//! A step's resource settings that `docker build` takes on its command line:
//! `--ulimit` (resource limits set in the step's process before exec) and
//! `--shm-size` (the size of the `/dev/shm` tmpfs). Parsed here, where they
//! are applied, so that every caller gets the same names and checks.

use std::str::FromStr;

/// The size of `/dev/shm` when `--shm-size` is not given: 64 MiB, as Docker.
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// One `--ulimit name=soft[:hard]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ulimit {
    /// The `RLIMIT_*` resource.
    pub resource: i32,
    pub soft: u64,
    pub hard: u64,
}

/// The names Docker's `--ulimit` accepts, with their resources.
const RESOURCES: [(&str, libc::__rlimit_resource_t); 15] = [
    ("core", libc::RLIMIT_CORE),
    ("cpu", libc::RLIMIT_CPU),
    ("data", libc::RLIMIT_DATA),
    ("fsize", libc::RLIMIT_FSIZE),
    ("locks", libc::RLIMIT_LOCKS),
    ("memlock", libc::RLIMIT_MEMLOCK),
    ("msgqueue", libc::RLIMIT_MSGQUEUE),
    ("nice", libc::RLIMIT_NICE),
    ("nofile", libc::RLIMIT_NOFILE),
    ("nproc", libc::RLIMIT_NPROC),
    ("rss", libc::RLIMIT_RSS),
    ("rtprio", libc::RLIMIT_RTPRIO),
    ("rttime", libc::RLIMIT_RTTIME),
    ("sigpending", libc::RLIMIT_SIGPENDING),
    ("stack", libc::RLIMIT_STACK),
];

fn limit_value(s: &str) -> Option<u64> {
    match s {
        "-1" | "unlimited" => Some(libc::RLIM_INFINITY),
        n => n.parse().ok(),
    }
}

impl FromStr for Ulimit {
    type Err = String;

    /// `nofile=1024:2048`, `nproc=512` (soft = hard), `-1` for unlimited.
    fn from_str(s: &str) -> Result<Ulimit, String> {
        let (name, value) = s
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=SOFT[:HARD], got {s:?}"))?;
        let resource = RESOURCES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| *r as i32)
            .ok_or_else(|| {
                let names: Vec<&str> = RESOURCES.iter().map(|(n, _)| *n).collect();
                format!("unknown limit {name:?}: use one of {}", names.join(", "))
            })?;
        let (soft, hard) = value.split_once(':').unwrap_or((value, value));
        let bad = || format!("{name}: {value:?} is not SOFT[:HARD] (numbers, or -1 for unlimited)");
        let soft = limit_value(soft).ok_or_else(bad)?;
        let hard = limit_value(hard).ok_or_else(bad)?;
        if soft > hard {
            return Err(format!(
                "{name}: the soft limit {soft} is above the hard limit {hard}"
            ));
        }
        Ok(Ulimit {
            resource,
            soft,
            hard,
        })
    }
}

impl Ulimit {
    /// The name Docker uses for this limit.
    pub fn name(&self) -> &'static str {
        RESOURCES
            .iter()
            .find(|(_, r)| *r as i32 == self.resource)
            .map_or("?", |(n, _)| n)
    }
}

/// Docker's `--shm-size` syntax: a number of bytes with an optional unit
/// `b`, `k`, `m`, `g` (binary multiples, case-insensitive, optional
/// trailing `b` as in `64mb`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let t = lower
        .strip_suffix('b')
        .filter(|t| !t.is_empty())
        .unwrap_or(&lower);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{s:?} is not a size: use a number with b, k, m or g, e.g. 256m"))
}

/// Sets every limit in the calling process (the step's, before exec).
/// Raising a hard limit above the one strata itself runs with is refused by
/// the kernel, which the message says.
pub(crate) fn apply(ulimits: &[Ulimit]) -> Result<(), String> {
    for u in ulimits {
        let lim = libc::rlimit {
            rlim_cur: u.soft,
            rlim_max: u.hard,
        };
        if super::sys::setrlimit(u.resource as libc::c_int, &lim) != 0 {
            return Err(format!(
                "{} (an unprivileged build cannot raise a hard limit above its own; see `ulimit -H -a`)",
                super::sys::errno_msg(format_args!("--ulimit {}={}:{}", u.name(), u.soft, u.hard))
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_parse_as_docker_writes_them() {
        let u: Ulimit = "nofile=1024:2048".parse().unwrap();
        assert_eq!((u.soft, u.hard, u.name()), (1024, 2048, "nofile"));
        let u: Ulimit = "nproc=512".parse().unwrap();
        assert_eq!((u.soft, u.hard), (512, 512));
        let u: Ulimit = "core=-1".parse().unwrap();
        assert_eq!(u.hard, libc::RLIM_INFINITY);
        assert_eq!(
            "nofile=2048:1024".parse::<Ulimit>().unwrap_err(),
            "nofile: the soft limit 2048 is above the hard limit 1024"
        );
        assert!(
            "files=1"
                .parse::<Ulimit>()
                .unwrap_err()
                .starts_with("unknown limit \"files\": use one of core, cpu,")
        );
        assert_eq!(
            "nofile=lots".parse::<Ulimit>().unwrap_err(),
            "nofile: \"lots\" is not SOFT[:HARD] (numbers, or -1 for unlimited)"
        );
    }

    #[test]
    fn sizes_parse_as_docker_writes_them() {
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("256m"), Ok(256 << 20));
        assert_eq!(parse_size("64MB"), Ok(64 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2k"), Ok(2048));
        assert!(parse_size("big").is_err());
        assert!(parse_size("0").is_err());
    }
}
