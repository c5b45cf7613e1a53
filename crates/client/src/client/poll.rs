//! Polling with `Retry-After`: a short first interval, bounded exponential backoff and an
//! overall deadline; never a fixed multi-second sleep.

use std::time::Duration;

use reqwest::header::HeaderMap;

/// How to poll a resource until it reaches a final state.
#[derive(Debug, Clone, Copy)]
pub struct PollPolicy {
    /// The first wait.
    pub first_interval: Duration,
    /// The longest wait between two polls (also caps a server's `Retry-After`).
    pub max_interval: Duration,
    /// Give up after this long.
    pub timeout: Duration,
}

impl Default for PollPolicy {
    fn default() -> Self {
        Self {
            first_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(10),
            timeout: Duration::from_secs(180),
        }
    }
}

/// The waits of one poll: doubles from the first interval up to the maximum; a server's
/// `Retry-After` replaces the computed wait (still bounded by the maximum).
#[derive(Debug)]
pub struct Backoff {
    policy: PollPolicy,
    next: Duration,
    started: std::time::Instant,
}

impl Backoff {
    /// Starts a poll under `policy`.
    pub fn new(policy: PollPolicy) -> Self {
        Self {
            policy,
            next: policy.first_interval,
            started: std::time::Instant::now(),
        }
    }

    /// The wait before the next poll, or `None` once the deadline would be passed.
    pub fn next_wait(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        let computed = self.next;
        self.next = (self.next * 2).min(self.policy.max_interval);
        let wait = retry_after
            .unwrap_or(computed)
            .min(self.policy.max_interval);
        let elapsed = self.started.elapsed();
        if elapsed + wait > self.policy.timeout {
            return None;
        }
        Some(wait)
    }

    /// The policy's timeout in whole seconds (for error messages).
    pub fn timeout_secs(&self) -> u64 {
        self.policy.timeout.as_secs()
    }
}

/// Parses `Retry-After` (delay-seconds or an HTTP-date) into a duration from now.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let mut b = Backoff::new(PollPolicy {
            first_interval: Duration::from_millis(100),
            max_interval: Duration::from_millis(350),
            timeout: Duration::from_secs(60),
        });
        let waits: Vec<_> = (0..4).map(|_| b.next_wait(None).unwrap()).collect();
        assert_eq!(
            waits,
            [100, 200, 350, 350].map(Duration::from_millis).to_vec()
        );
        assert_eq!(
            b.next_wait(Some(Duration::from_secs(3600))),
            Some(Duration::from_millis(350))
        );
        let mut b = Backoff::new(PollPolicy {
            first_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
        });
        assert_eq!(b.next_wait(None), None);
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        let later =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let d = retry_after(&h).unwrap();
        assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120));
    }
}
