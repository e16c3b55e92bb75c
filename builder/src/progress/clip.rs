//! A step's output is shown up to a limit, as BuildKit does: 2 MiB by
//! default, `BUILDKIT_STEP_LOG_MAX_SIZE` bytes when set (`-1`: no limit).
//! Past it one notice is shown, `[output clipped, log limit 2MiB reached]`,
//! and nothing more, so a step that prints without end cannot fill a CI
//! log (GitLab stops a job's log at 4 MiB) or the terminal.

/// BuildKit's default per-step log limit.
pub const DEFAULT_LIMIT: u64 = 2 << 20;

/// What to do with one line of a step's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    Show,
    /// The limit was just passed: show this notice instead.
    Clip(String),
    Drop,
}

/// The bytes of one step's output shown so far.
#[derive(Debug)]
pub struct StepLog {
    limit: Option<u64>,
    shown: u64,
    clipped: bool,
}

impl StepLog {
    /// With the limit from `BUILDKIT_STEP_LOG_MAX_SIZE`, or the default.
    pub fn from_env() -> StepLog {
        let v = std::env::var("BUILDKIT_STEP_LOG_MAX_SIZE").ok();
        StepLog::with_limit(parse_limit(v.as_deref()))
    }

    pub fn with_limit(limit: Option<u64>) -> StepLog {
        StepLog {
            limit,
            shown: 0,
            clipped: false,
        }
    }

    pub fn admit(&mut self, line: &str) -> Admit {
        if self.clipped {
            return Admit::Drop;
        }
        self.shown += line.len() as u64 + 1;
        match self.limit {
            Some(limit) if self.shown > limit => {
                self.clipped = true;
                Admit::Clip(format!(
                    "[output clipped, log limit {} reached]",
                    size_words(limit)
                ))
            }
            _ => Admit::Show,
        }
    }
}

/// `None` for no limit (a negative value); the default when unset or not
/// a number.
fn parse_limit(v: Option<&str>) -> Option<u64> {
    match v.map(str::trim).map(str::parse::<i64>) {
        Some(Ok(n)) if n < 0 => None,
        Some(Ok(n)) => Some(n as u64),
        _ => Some(DEFAULT_LIMIT),
    }
}

/// `2MiB`, `512KiB`, `1000B`: the limit as BuildKit names it.
fn size_words(n: u64) -> String {
    if n > 0 && n.is_multiple_of(1 << 20) {
        format!("{}MiB", n >> 20)
    } else if n > 0 && n.is_multiple_of(1 << 10) {
        format!("{}KiB", n >> 10)
    } else {
        format!("{n}B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_pass_until_the_limit_then_one_notice() {
        let mut log = StepLog::with_limit(Some(10));
        assert_eq!(log.admit("12345"), Admit::Show); // 6 bytes with its newline
        assert_eq!(
            log.admit("6789"),
            Admit::Clip("[output clipped, log limit 10B reached]".into())
        );
        assert_eq!(log.admit("more"), Admit::Drop);
        let mut none = StepLog::with_limit(None);
        for _ in 0..1000 {
            assert_eq!(none.admit(&"x".repeat(10_000)), Admit::Show);
        }
    }

    #[test]
    fn the_limit_reads_like_buildkits() {
        assert_eq!(parse_limit(None), Some(DEFAULT_LIMIT));
        assert_eq!(parse_limit(Some("-1")), None);
        assert_eq!(parse_limit(Some("4096")), Some(4096));
        assert_eq!(parse_limit(Some("lots")), Some(DEFAULT_LIMIT));
        assert_eq!(size_words(DEFAULT_LIMIT), "2MiB");
        assert_eq!(size_words(512 << 10), "512KiB");
    }
}
