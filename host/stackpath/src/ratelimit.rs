//! A client-side token bucket, shared by every clone of the client, so the daemon as a whole
//! stays under the rate StackPath allows however many workers call at once.
//!
//! Hand-written rather than `governor`: it is a dozen lines, and using tokio's clock lets
//! tests run it under paused time.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Rate limit settings: a steady rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests per second on average; must be > 0.
    pub per_second: f64,
    /// How many requests may go at once after a quiet period; at least 1.
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 20.0,
            burst: 40,
        }
    }
}

/// The bucket. Callers reserve a token; when none is left the balance goes negative and the
/// caller sleeps until its reservation matures, so waiters are served in arrival order.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(limit: RateLimit) -> Self {
        let burst = f64::from(limit.burst.max(1));
        // A rate of zero or less would block forever; treat it as "one per hour" instead.
        let rate = if limit.per_second.is_finite() && limit.per_second > 0.0 {
            limit.per_second
        } else {
            1.0 / 3600.0
        };
        Self {
            rate,
            burst,
            state: Mutex::new(State {
                tokens: burst,
                last: Instant::now(),
            }),
        }
    }

    /// How long the caller must wait before its request may go; the token is taken now.
    fn reserve(&self) -> Duration {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
        s.tokens = (s.tokens + elapsed * self.rate).min(self.burst);
        s.last = now;
        s.tokens -= 1.0;
        if s.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.tokens / self.rate)
        }
    }

    /// Whether a request made now would have to wait for a token (none is left).
    pub(crate) fn is_exhausted(&self) -> bool {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = Instant::now()
            .saturating_duration_since(s.last)
            .as_secs_f64();
        (s.tokens + elapsed * self.rate).min(self.burst) < 1.0
    }

    /// Waits for a token.
    pub(crate) async fn acquire(&self) {
        let wait = self.reserve();
        if !wait.is_zero() {
            tracing::trace!(
                wait_ms = wait.as_millis() as u64,
                "StackPath client rate limit"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn exhausted_while_waiters_are_queued() {
        let bucket = TokenBucket::new(RateLimit {
            per_second: 10.0,
            burst: 2,
        });
        assert!(!bucket.is_exhausted());
        bucket.acquire().await;
        bucket.acquire().await;
        assert!(bucket.is_exhausted(), "both tokens taken");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(!bucket.is_exhausted(), "one token back after 1/rate");
    }

    #[tokio::test(start_paused = true)]
    async fn burst_then_steady_rate() {
        let bucket = TokenBucket::new(RateLimit {
            per_second: 10.0,
            burst: 5,
        });
        let start = Instant::now();
        for _ in 0..5 {
            bucket.acquire().await;
        }
        assert!(
            start.elapsed() < Duration::from_millis(1),
            "burst should not wait"
        );
        for _ in 0..10 {
            bucket.acquire().await;
        }
        let elapsed = start.elapsed();
        // 10 more at 10/s take one second.
        assert!(elapsed >= Duration::from_millis(999), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(1001), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn shared_between_tasks() {
        let bucket = std::sync::Arc::new(TokenBucket::new(RateLimit {
            per_second: 100.0,
            burst: 1,
        }));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let b = bucket.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..25 {
                    b.acquire().await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // 200 tokens, 1 free, at 100/s: 1.99 s.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(1980), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(2000), "{elapsed:?}");
    }
}
