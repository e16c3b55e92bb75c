//! Go duration strings (`1m30s`, `100ms`) as HEALTHCHECK flags use them,
//! parsed to nanoseconds and formatted back the way Go prints them (for
//! history text such as `Interval:1s`).

const NS: [(&str, i128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a Go duration (`300ms`, `-1.5h`, `2h45m`, `0`).
pub(crate) fn parse(s: &str) -> Result<i64, String> {
    let err = || format!("time: invalid duration {s:?}");
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(err());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." {
            return Err(err());
        }
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let scale = NS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, n)| *n)
            .ok_or_else(|| {
                if unit.is_empty() {
                    format!("time: missing unit in duration {s:?}")
                } else {
                    format!("time: unknown unit {unit:?} in duration {s:?}")
                }
            })?;
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        let int: i128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| err())?
        };
        let mut value = int.checked_mul(scale).ok_or_else(err)?;
        let mut div = 1i128;
        let mut frac_val = 0i128;
        for d in frac.chars().take(18) {
            div *= 10;
            frac_val = frac_val * 10 + i128::from(d.to_digit(10).ok_or_else(err)?);
        }
        value += frac_val * scale / div;
        total = total.checked_add(value).ok_or_else(err)?;
        if total > i128::from(i64::MAX) {
            return Err(err());
        }
    }
    let total = if neg { -total } else { total };
    i64::try_from(total).map_err(|_| err())
}

/// Formats nanoseconds as Go's `time.Duration.String()` does.
pub(crate) fn format(ns: i64) -> String {
    if ns == 0 {
        return "0s".to_string();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let body = if u < 1_000_000_000 {
        let (unit, scale) = if u < 1_000 {
            ("ns", 1)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        format!("{}{unit}", frac(u, scale))
    } else {
        let h = u / 3_600_000_000_000;
        let m = (u / 60_000_000_000) % 60;
        let s_ns = u % 60_000_000_000;
        let secs = format!("{}s", frac(s_ns, 1_000_000_000));
        if h > 0 {
            format!("{h}h{m}m{secs}")
        } else if m > 0 {
            format!("{m}m{secs}")
        } else {
            secs
        }
    };
    if neg { format!("-{body}") } else { body }
}

/// `value / scale` with the fraction's trailing zeros dropped.
fn frac(value: u64, scale: u64) -> String {
    let int = value / scale;
    let rem = value % scale;
    if rem == 0 {
        return int.to_string();
    }
    let width = scale.to_string().len() - 1;
    let digits = format!("{rem:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_go_durations() {
        assert_eq!(parse("1s"), Ok(1_000_000_000));
        assert_eq!(parse("100ms"), Ok(100_000_000));
        assert_eq!(parse("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse("0"), Ok(0));
        assert!(parse("10").is_err());
        assert!(parse("abc").is_err());
        assert!(parse("").is_err());
        assert!(parse("1x").is_err());
        assert!(parse("99999999999h").is_err());
    }

    #[test]
    fn format_like_go() {
        for s in [
            "1s", "10s", "3s", "100ms", "1m30s", "1h0m0s", "1.5s", "0s", "250µs",
        ] {
            let ns = parse(s).unwrap();
            let expected = if s == "1m30s" { "1m30s" } else { s };
            assert_eq!(format(ns), expected);
        }
        assert_eq!(format(parse("90m").unwrap()), "1h30m0s");
    }
}
