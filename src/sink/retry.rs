//! Retry policy shared by every sink: exponential backoff with full jitter, a server's
//! `Retry-After` as a floor, unlimited attempts by default (lossless: the queue fills and
//! backpressure reaches the router instead of events being dropped).

use std::time::Duration;

use rand::Rng;

use crate::config::RetryConfig;

#[derive(Debug, Clone)]
pub struct Backoff {
    cfg: RetryConfig,
    attempt: u32,
}

impl Backoff {
    pub fn new(cfg: RetryConfig) -> Self {
        Self { cfg, attempt: 0 }
    }

    /// Failed attempts so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Records a failed attempt; returns how long to wait before the next one, or None when
    /// `maxAttempts` is used up.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        self.attempt += 1;
        if self.cfg.max_attempts.is_some_and(|max| self.attempt >= max) {
            return None;
        }
        let exp = self
            .cfg
            .initial_backoff
            .saturating_mul(1u32 << (self.attempt - 1).min(20));
        let cap = exp.min(self.cfg.max_backoff);
        // Full jitter: spreads retries of many clients over the whole window.
        let jittered = cap.mul_f64(rand::rng().random_range(0.0..=1.0));
        Some(match retry_after {
            Some(floor) => jittered.max(floor.min(self.cfg.max_backoff.max(floor))),
            None => jittered,
        })
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let now = jiff::Timestamp::now();
    Some(if at > now {
        now.duration_until(at).unsigned_abs()
    } else {
        Duration::ZERO
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max: Option<u32>) -> RetryConfig {
        RetryConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            max_attempts: max,
        }
    }

    #[test]
    fn delays_are_capped_and_jittered_and_respect_retry_after() {
        let mut b = Backoff::new(cfg(None));
        for _ in 0..30 {
            let d = b.next_delay(None).unwrap();
            assert!(d <= Duration::from_secs(1));
        }
        let d = b.next_delay(Some(Duration::from_secs(3))).unwrap();
        assert!(d >= Duration::from_secs(3), "Retry-After is a floor: {d:?}");
    }

    #[test]
    fn max_attempts_ends_retries() {
        let mut b = Backoff::new(cfg(Some(3)));
        assert!(b.next_delay(None).is_some());
        assert!(b.next_delay(None).is_some());
        assert!(
            b.next_delay(None).is_none(),
            "third failure is the last attempt"
        );
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
