//! EXPOSE port specifications, as Docker's `nat.ParsePortSpec` reads them:
//! `[ip:[hostPort]:]containerPort[-end][/proto]`. Only the container port
//! and protocol matter for an image; ranges expand to one port each.

/// Parses one spec into `port/proto` keys, e.g. `0.0.0.0:80:8080-8081/udp`
/// gives `8080/udp` and `8081/udp`. Errors use Docker's wording.
pub fn parse_spec(spec: &str) -> Result<Vec<String>, String> {
    let (raw, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    let proto = if proto.is_empty() {
        "tcp".to_string()
    } else {
        proto
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let (ip, _host_port, container) = split_parts(raw);
    if !ip.is_empty() && !is_ip(ip.trim_start_matches('[').trim_end_matches(']')) {
        return Err(format!("invalid IP address: {ip}"));
    }
    if container.is_empty() {
        return Err(format!("invalid port: {spec:?}: no port specified"));
    }
    let (start, end) =
        parse_range(container).ok_or_else(|| format!("invalid containerPort: {container}"))?;
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// What BuildKit's EXPOSE checks see in a spec: whether its protocol is
/// not lower case (ExposeProtoCasing) and whether it names an IP address
/// or a host port (ExposeInvalidFormat).
pub(crate) fn lint_spec(spec: &str) -> (bool, bool) {
    let (raw, proto) = spec.rsplit_once('/').unwrap_or((spec, ""));
    let (ip, host_port, _) = split_parts(raw);
    (
        proto != proto.to_lowercase(),
        !ip.is_empty() || !host_port.is_empty(),
    )
}

/// Splits `ip:hostPort:containerPort` from the right, the way Docker does
/// (the IP part may itself contain colons: IPv6).
fn split_parts(raw: &str) -> (&str, &str, &str) {
    match raw.rsplit_once(':') {
        None => ("", "", raw),
        Some((rest, container)) => match rest.rsplit_once(':') {
            None => ("", rest, container),
            Some((ip, host)) => (ip, host, container),
        },
    }
}

fn is_ip(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

fn parse_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let start: u16 = a.parse().ok()?;
    let end: u16 = b.parse().ok()?;
    (start <= end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(parse_spec("80").unwrap(), ["80/tcp"]);
        assert_eq!(parse_spec("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(parse_spec("1-3/tcp").unwrap(), ["1/tcp", "2/tcp", "3/tcp"]);
        assert!(parse_spec("abc").is_err());
        assert!(parse_spec("80/foo").is_err());
        assert!(parse_spec("5-1").is_err());
    }
}
