//! When and how long to wait before trying a failed request again.
//!
//! Exponential backoff with jitter, so that many clients failing together do
//! not retry in lock step, and `Retry-After` honoured when the server gives
//! one. The router applies the policy; adapters only classify errors
//! ([`ProviderError::is_retryable`]).

use std::time::Duration;

use crate::ProviderError;

/// How a provider's failed requests are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: never retry).
    pub max_retries: u32,
    /// The backoff before the first retry; it doubles for each later one.
    pub initial_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
    /// The longest `Retry-After` to wait for; a server asking for longer makes
    /// the router give up at once rather than hang.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 2,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// How long to wait before retry number `retry` (0 for the first) after
    /// `error`, or `None` if the request should not be retried.
    pub fn delay(&self, retry: u32, error: &ProviderError) -> Option<Duration> {
        if retry >= self.max_retries || !error.is_retryable() {
            return None;
        }
        match error.retry_after() {
            Some(wait) if wait > self.max_retry_after => None,
            Some(wait) => Some(wait),
            None => Some(self.backoff(retry, rand::random::<f64>())),
        }
    }

    /// The backoff before retry number `retry`: the doubled delay capped at
    /// `max_backoff`, of which the upper half is scaled by `jitter` in `[0, 1)`.
    pub fn backoff(&self, retry: u32, jitter: f64) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(31));
        let full = self
            .initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff);
        let half = full / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            max_retry_after: Duration::from_secs(5),
        }
    }

    fn status(code: u16, retry_after: Option<Duration>) -> ProviderError {
        ProviderError::Status {
            provider: "p".into(),
            status: code,
            message: String::new(),
            retry_after,
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let p = policy();
        assert_eq!(p.backoff(0, 0.0), Duration::from_millis(50));
        assert_eq!(p.backoff(0, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(1, 0.5), Duration::from_millis(150));
        assert_eq!(p.backoff(5, 1.0), Duration::from_millis(300));
        assert_eq!(p.backoff(40, 0.0), Duration::from_millis(150));
    }

    #[test]
    fn honours_retry_after_and_limits() {
        let p = policy();
        assert_eq!(
            p.delay(0, &status(503, Some(Duration::from_secs(2)))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            p.delay(0, &status(503, Some(Duration::from_secs(50)))),
            None
        );
        assert_eq!(p.delay(0, &status(400, None)), None);
        assert_eq!(p.delay(3, &status(500, None)), None);
        let d = p.delay(0, &status(500, None)).unwrap();
        assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(100));
    }
}
