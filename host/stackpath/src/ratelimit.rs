//! A client-side token bucket, shared by every clone of the client, so the daemon as a whole
//! stays under the rate StackPath allows however many workers call at once: StackPath limits
//! the account, not the process.
//!
//! Callers name a lane (the daemon uses one per city). While tokens are left, calls go at once;
//! once the bucket is empty, waiters queue per lane and the lanes are served round-robin, so a
//! burst of hundreds of calls in one city delays another city's status polling by at most one
//! token per busy lane, not by the whole burst.
//!
//! Hand-written rather than `governor`: governor has no notion of fairness between keys that
//! share one budget, and using tokio's clock lets tests run it under paused time.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
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

/// The bucket.
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
    /// Waiters by lane, each lane first come first served.
    lanes: BTreeMap<Arc<str>, VecDeque<oneshot::Sender<()>>>,
    /// The lane served last: the next token goes to the lane after it.
    served: Option<Arc<str>>,
    /// Whether a task is handing tokens to waiters (there is one while anyone waits).
    dispatching: bool,
}

impl State {
    fn refill(&mut self, rate: f64, burst: f64) {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last = now;
    }

    /// Gives one token to the next lane's first waiter still waiting; false when nobody is.
    fn hand_out(&mut self) -> bool {
        loop {
            let next = {
                let after = self.served.clone();
                let later = after.as_ref().and_then(|s| {
                    self.lanes
                        .range::<str, _>((
                            std::ops::Bound::Excluded(&**s),
                            std::ops::Bound::Unbounded,
                        ))
                        .next()
                        .map(|(k, _)| k.clone())
                });
                match later.or_else(|| self.lanes.keys().next().cloned()) {
                    Some(lane) => lane,
                    None => return false,
                }
            };
            let queue = self.lanes.get_mut(&next).expect("key just read");
            let waiter = queue.pop_front();
            if queue.is_empty() {
                self.lanes.remove(&next);
            }
            self.served = Some(next);
            // A waiter that gave up (its call was cancelled) is skipped and costs nothing.
            if let Some(w) = waiter
                && w.send(()).is_ok()
            {
                return true;
            }
        }
    }
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
                lanes: BTreeMap::new(),
                served: None,
                dispatching: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a request made now would have to wait for a token (none is left, or others
    /// already wait).
    pub(crate) fn is_exhausted(&self) -> bool {
        let mut s = self.lock();
        s.refill(self.rate, self.burst);
        s.tokens < 1.0 || !s.lanes.is_empty()
    }

    /// Waits for a token for a call of `lane`.
    pub(crate) async fn acquire(self: &Arc<Self>, lane: &str) {
        let ready = {
            let mut s = self.lock();
            s.refill(self.rate, self.burst);
            if s.lanes.is_empty() && s.tokens >= 1.0 {
                s.tokens -= 1.0;
                return;
            }
            let (tx, rx) = oneshot::channel();
            match s.lanes.get_mut(lane) {
                Some(q) => q.push_back(tx),
                None => {
                    s.lanes.insert(Arc::from(lane), VecDeque::from([tx]));
                }
            }
            if !s.dispatching {
                s.dispatching = true;
                tokio::spawn(self.clone().dispatch());
            }
            rx
        };
        tracing::trace!(lane, "StackPath client rate limit: waiting for a token");
        // The sender is only dropped once the token was handed over or the runtime is going
        // away; either way the call may proceed.
        let _ = ready.await;
    }

    /// Hands tokens to waiters as they become due, round-robin over lanes, until none waits.
    async fn dispatch(self: Arc<Self>) {
        loop {
            let wait = {
                let mut s = self.lock();
                s.refill(self.rate, self.burst);
                while s.tokens >= 1.0 && !s.lanes.is_empty() {
                    if s.hand_out() {
                        s.tokens -= 1.0;
                    }
                }
                if s.lanes.is_empty() {
                    s.dispatching = false;
                    return;
                }
                Duration::from_secs_f64((1.0 - s.tokens) / self.rate)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(per_second: f64, burst: u32) -> Arc<TokenBucket> {
        Arc::new(TokenBucket::new(RateLimit { per_second, burst }))
    }

    #[tokio::test(start_paused = true)]
    async fn exhausted_while_waiters_are_queued() {
        let bucket = bucket(10.0, 2);
        assert!(!bucket.is_exhausted());
        bucket.acquire("").await;
        bucket.acquire("").await;
        assert!(bucket.is_exhausted(), "both tokens taken");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(!bucket.is_exhausted(), "one token back after 1/rate");
    }

    #[tokio::test(start_paused = true)]
    async fn burst_then_steady_rate() {
        let bucket = bucket(10.0, 5);
        let start = Instant::now();
        for _ in 0..5 {
            bucket.acquire("").await;
        }
        assert!(
            start.elapsed() < Duration::from_millis(1),
            "burst should not wait"
        );
        for _ in 0..10 {
            bucket.acquire("").await;
        }
        let elapsed = start.elapsed();
        // 10 more at 10/s take one second.
        assert!(elapsed >= Duration::from_millis(999), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(1001), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn shared_between_tasks() {
        let bucket = bucket(100.0, 1);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let b = bucket.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..25 {
                    b.acquire("").await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // 200 tokens, 1 free, at 100/s: 1.99 s.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(1980), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(2010), "{elapsed:?}");
    }

    /// 300 calls queued in DFW, then 10 in LAX: LAX's wait is set by its own 10 calls taking
    /// turns with DFW (about 20 tokens), not by DFW's 300; and the account rate holds.
    #[tokio::test(start_paused = true)]
    async fn a_burst_in_one_lane_does_not_starve_another() {
        let bucket = bucket(10.0, 1);
        bucket.acquire("DFW").await;
        let start = Instant::now();
        let spawn_calls = |lane: &'static str, n: usize| {
            (0..n)
                .map(|_| {
                    let b = bucket.clone();
                    tokio::spawn(async move {
                        b.acquire(lane).await;
                        Instant::now()
                    })
                })
                .collect::<Vec<_>>()
        };
        let dfw = spawn_calls("DFW", 300);
        tokio::task::yield_now().await;
        let lax = spawn_calls("LAX", 10);
        let mut lax_done = Vec::new();
        for t in lax {
            lax_done.push(t.await.unwrap() - start);
        }
        let mut dfw_done = Vec::new();
        for t in dfw {
            dfw_done.push(t.await.unwrap() - start);
        }
        let lax_last = *lax_done.iter().max().unwrap();
        // Alternating with DFW: the 10th LAX call gets about the 20th token (2 s at 10/s);
        // first come first served would have made it wait for the 310th (31 s).
        assert!(lax_last <= Duration::from_millis(2100), "{lax_last:?}");
        let dfw_last = *dfw_done.iter().max().unwrap();
        // 310 tokens at 10/s, none free: 31 s; the shared budget is never exceeded.
        assert!(dfw_last >= Duration::from_millis(30_900), "{dfw_last:?}");
        assert!(dfw_last <= Duration::from_millis(31_100), "{dfw_last:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_costs_no_token() {
        let bucket = bucket(10.0, 1);
        bucket.acquire("A").await;
        let gone = {
            let b = bucket.clone();
            tokio::spawn(async move { b.acquire("A").await })
        };
        tokio::task::yield_now().await;
        gone.abort();
        let start = Instant::now();
        bucket.acquire("B").await;
        // One token's time, not two: the aborted waiter's turn was skipped.
        assert!(
            start.elapsed() <= Duration::from_millis(101),
            "{:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!bucket.is_exhausted(), "nobody waits any more");
    }
}
