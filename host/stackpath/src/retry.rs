//! When and how long to wait before trying a call again: exponential backoff with full
//! jitter, and the server's `Retry-After` when it gives one.

use std::time::Duration;

use rand::Rng;

/// Retry settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included; 1 disables retries.
    pub max_attempts: u32,
    /// The backoff cap for the first retry; doubles each retry.
    pub base_delay: Duration,
    /// The largest backoff.
    pub max_delay: Duration,
    /// The longest `Retry-After` the client waits out itself; a longer one is returned to the
    /// caller as a rate-limit error to requeue.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Whether another attempt is allowed after `attempt` attempts were made.
    pub(crate) fn may_retry(&self, attempt: u32) -> bool {
        attempt < self.max_attempts.max(1)
    }

    /// Full jitter: uniform in `[0, min(max_delay, base_delay * 2^(attempt-1))]`, where
    /// `attempt` is the number of attempts made so far (1 after the first).
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let cap = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        if cap.is_zero() {
            return Duration::ZERO;
        }
        let nanos = rand::rng().random_range(0..=cap.as_nanos() as u64);
        Duration::from_nanos(nanos)
    }

    /// The wait before the next attempt: the server's `Retry-After` when it sent one (plus a
    /// little jitter so that many callers told the same do not return together), else the
    /// backoff. `None` when the server asks for longer than [`Self::max_retry_after`].
    pub(crate) fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        match retry_after {
            Some(ra) if ra > self.max_retry_after => None,
            Some(ra) => {
                let jitter_cap = self.base_delay.min(Duration::from_millis(250));
                let jitter = if jitter_cap.is_zero() {
                    Duration::ZERO
                } else {
                    Duration::from_nanos(rand::rng().random_range(0..=jitter_cap.as_nanos() as u64))
                };
                Some(ra + jitter)
            }
            None => Some(self.backoff(attempt)),
        }
    }
}

/// The longest `Retry-After` believed; longer ones are read as this. A day is far past any
/// real rate-limit window, and small enough that callers may add it to a clock.
pub(crate) const RETRY_AFTER_CAP: Duration = Duration::from_secs(24 * 3600);

/// Parses `Retry-After` in its seconds form (the form API gateways send), clamped to
/// [`RETRY_AFTER_CAP`]. An HTTP date, a negative or non-numeric value is not understood and
/// reads as absent, which falls back to the backoff.
pub(crate) fn parse_retry_after(value: Option<&reqwest::header::HeaderValue>) -> Option<Duration> {
    let text = value?.to_str().ok()?.trim();
    let secs = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let secs: f64 = text.parse().ok()?;
            if secs.is_nan() || secs < 0.0 {
                return None;
            }
            // Saturates instead of panicking past u64::MAX seconds (or at infinity).
            Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
        }
    };
    Some(secs.min(RETRY_AFTER_CAP))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_is_bounded_and_grows() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(5),
        };
        for attempt in 1..12 {
            let cap = Duration::from_millis(100 * (1 << (attempt - 1).min(20))).min(p.max_delay);
            for _ in 0..50 {
                assert!(p.backoff(attempt) <= cap);
            }
        }
        // Jitter actually spreads: 200 draws in [0, 1s] are not all equal.
        let draws: std::collections::BTreeSet<_> = (0..200).map(|_| p.backoff(8)).collect();
        assert!(draws.len() > 100);
    }

    #[test]
    fn retry_after_honoured_and_capped() {
        let p = RetryPolicy::default();
        let d = p.delay(1, Some(Duration::from_secs(2))).unwrap();
        assert!(
            d >= Duration::from_secs(2) && d <= Duration::from_millis(2250),
            "{d:?}"
        );
        assert_eq!(p.delay(1, Some(Duration::from_secs(3600))), None);
        assert!(p.may_retry(4) && !p.may_retry(5));
    }

    #[test]
    fn parses_retry_after() {
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static("3"))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static("0.5"))),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static(
                "Wed, 21 Oct 2015 07:28:00 GMT"
            ))),
            None
        );
        assert_eq!(parse_retry_after(None), None);
        for huge in [
            "1e30",
            "inf",
            "99999999999999999999999",
            "18446744073709551615",
        ] {
            assert_eq!(
                parse_retry_after(Some(&HeaderValue::from_static(huge))),
                Some(RETRY_AFTER_CAP),
                "{huge}"
            );
        }
        for junk in ["-1", "NaN", "-inf", "1 2", ""] {
            assert_eq!(
                parse_retry_after(Some(&HeaderValue::from_static(junk))),
                None
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn any_header_parses_within_the_cap(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            if let Ok(value) = HeaderValue::from_bytes(&bytes)
                && let Some(d) = parse_retry_after(Some(&value))
            {
                proptest::prop_assert!(d <= RETRY_AFTER_CAP);
            }
        }

        #[test]
        fn any_number_parses_within_the_cap(
            text in proptest::prop_oneof![
                proptest::num::f64::ANY.prop_map(|f| f.to_string()),
                proptest::num::f64::ANY.prop_map(|f| format!("{f:e}")),
                proptest::num::u128::ANY.prop_map(|n| n.to_string()),
                "[0-9]{1,60}(\\.[0-9]{0,20})?",
            ],
        ) {
            let value = HeaderValue::from_str(&text).expect("ASCII");
            if let Some(d) = parse_retry_after(Some(&value)) {
                proptest::prop_assert!(d <= RETRY_AFTER_CAP);
                // What a caller may do with it.
                let _ = tokio::time::Instant::now() + d;
            }
            let p = RetryPolicy::default();
            let _ = p.delay(1, parse_retry_after(Some(&value)));
        }
    }
}
