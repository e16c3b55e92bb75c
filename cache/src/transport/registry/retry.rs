//! How often and how patiently to retry: registries (and the proxies and
//! object stores behind them) fail transiently with 5xx, 429 and dropped
//! connections, and a pull of a dozen layers should survive one blip. Retries
//! are bounded so that a registry that is really down fails in seconds, with
//! the last error, instead of hanging a build.

use std::time::Duration;

/// Exponential backoff with a cap and a bounded number of attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries, the first included (1 = never retry).
    pub attempts: u32,
    /// The wait before the first retry; it doubles each time.
    pub base_delay: Duration,
    /// No single wait is longer than this (a `Retry-After` is capped too).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first retry), honouring
    /// a server's `Retry-After` seconds when given.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(ra) = retry_after {
            return ra.min(self.max_delay);
        }
        let factor = 1u32 << retry.saturating_sub(1).min(16);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Statuses worth another try: server errors and rate limiting.
pub fn is_retryable_status(status: u16) -> bool {
    status == 429 || status == 408 || (500..=599).contains(&status) && status != 501
}

/// Transport errors worth another try: the connection could not be made, was
/// dropped, or timed out. Bad URLs, TLS failures and unknown hosts are not
/// transient and fail at once.
pub fn is_retryable_error(err: &ureq::Error) -> bool {
    match err {
        // InvalidData is a TLS handshake with something that is not TLS
        // (a plain-HTTP registry): asking again gives the same answer.
        ureq::Error::Io(e) => e.kind() != std::io::ErrorKind::InvalidData,
        ureq::Error::ConnectionFailed | ureq::Error::Timeout(_) => true,
        _ => false,
    }
}

/// Parses a `Retry-After` header given in seconds (the HTTP-date form is rare
/// from registries and is ignored, falling back to backoff).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy {
            attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        assert_eq!(p.delay(1, None), Duration::from_millis(100));
        assert_eq!(p.delay(2, None), Duration::from_millis(200));
        assert_eq!(p.delay(3, None), Duration::from_millis(400));
        assert_eq!(p.delay(4, None), Duration::from_millis(500));
        assert_eq!(p.delay(40, None), Duration::from_millis(500));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(60))),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn which_statuses_are_retried() {
        for s in [500, 502, 503, 504, 429, 408] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 501] {
            assert!(!is_retryable_status(s), "{s}");
        }
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015"), None);
        let io = |k| ureq::Error::Io(std::io::Error::from(k));
        assert!(is_retryable_error(&io(std::io::ErrorKind::ConnectionReset)));
        assert!(!is_retryable_error(&io(std::io::ErrorKind::InvalidData)));
        assert!(!is_retryable_error(&ureq::Error::HostNotFound));
    }
}
