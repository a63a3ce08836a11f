//! What the daemon remembers about each pod between reconcile passes: the workload that runs
//! it, the images it was created with, and when to look at StackPath next.
//!
//! Polling is adaptive: every `fast` interval while a pod is changing, doubling up to
//! `settled` once its status stops changing, back to `fast` after our own changes. Jitter
//! spreads pods created together so their polls do not arrive in bursts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// Per-pod memory. Keyed by `namespace/name`.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub uid: Option<String>,
    pub workload_id: Option<String>,
    pub instance_name: Option<String>,
    /// Container images the workload was created or last updated with, by container.
    pub images: Vec<(String, String)>,
    pub next_poll: Instant,
    pub interval: Duration,
    /// The pod was failed by us (rejected, workload deleted behind our back): nothing more to do.
    pub finished: bool,
    /// A transient error was already reported as an Event (one Event per outage, not per retry).
    pub transient_reported: bool,
    /// Consecutive transient failures, for backoff.
    pub failures: u32,
    /// Since when this settled pod's poll has been put off because the rate limit was exhausted.
    pub deferred_since: Option<Instant>,
    /// When deletion began (bounded by the pod's grace period).
    pub deleting_since: Option<Instant>,
    /// The instance is running (for the kubelet API: logs and exec need an instance).
    pub has_instance: bool,
}

impl Tracked {
    fn new(fast: Duration) -> Self {
        Self {
            uid: None,
            workload_id: None,
            instance_name: None,
            images: Vec::new(),
            next_poll: Instant::now(),
            interval: fast,
            finished: false,
            transient_reported: false,
            failures: 0,
            deferred_since: None,
            deleting_since: None,
            has_instance: false,
        }
    }
}

/// Poll pacing.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    pub fast: Duration,
    pub settled: Duration,
}

impl Pacing {
    /// The next interval after a poll: fast while changing; once settled, one look soon after
    /// (a container that crashes right after starting), then four times longer each time up
    /// to `settled`, so a new pod costs few calls on its way to the steady rate.
    pub fn next(&self, previous: Duration, changed: bool, settled: bool) -> Duration {
        let step = |d: Duration| (d * 4).clamp(self.fast, self.settled);
        match (settled, changed) {
            (false, _) => self.fast,
            (true, true) => step(self.fast),
            (true, false) => step(previous),
        }
    }

    /// ±10% (at least ±50 ms), so pods created together spread out; symmetric, so the mean
    /// interval (and the steady-state call rate) is the configured one.
    pub fn jitter(&self, d: Duration) -> Duration {
        let half = (d / 10).max(Duration::from_millis(50));
        (d + rand::rng().random_range(Duration::ZERO..half * 2)).saturating_sub(half)
    }
}

/// All tracked pods.
#[derive(Debug, Default)]
pub struct Tracker {
    pods: Mutex<HashMap<String, Tracked>>,
}

pub fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl Tracker {
    /// Runs `f` on the pod's entry, creating it if needed.
    pub fn with<R>(&self, key: &str, fast: Duration, f: impl FnOnce(&mut Tracked) -> R) -> R {
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        f(pods
            .entry(key.to_owned())
            .or_insert_with(|| Tracked::new(fast)))
    }

    pub fn get(&self, key: &str) -> Option<Tracked> {
        let pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        pods.get(key).cloned()
    }

    pub fn remove(&self, key: &str) -> Option<Tracked> {
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        pods.remove(key)
    }

    /// Records a workload found at start, before the pod's first pass.
    pub fn adopt(
        &self,
        key: &str,
        fast: Duration,
        workload_id: String,
        images: Vec<(String, String)>,
    ) {
        self.with(key, fast, |t| {
            t.workload_id = Some(workload_id);
            t.images = images;
        });
    }

    pub fn len(&self) -> usize {
        self.pods.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every tracked pod with its memory.
    pub fn snapshot(&self) -> Vec<(String, Tracked)> {
        let pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        pods.iter().map(|(k, t)| (k.clone(), t.clone())).collect()
    }

    /// Workload ids of every tracked pod (the orphan sweep must never touch these).
    pub fn workload_ids(&self) -> Vec<String> {
        let pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        pods.values()
            .filter_map(|t| t.workload_id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_backs_off_when_settled_and_resets_on_change() {
        let p = Pacing {
            fast: Duration::from_secs(1),
            settled: Duration::from_secs(60),
        };
        let mut d = p.fast;
        for _ in 0..10 {
            d = p.next(d, false, true);
        }
        assert_eq!(d, Duration::from_secs(60));
        assert_eq!(
            p.next(d, true, true),
            Duration::from_secs(4),
            "settled after a change"
        );
        assert_eq!(
            p.next(Duration::from_secs(4), false, true),
            Duration::from_secs(16)
        );
        assert_eq!(p.next(d, true, false), p.fast);
        assert_eq!(p.next(d, false, false), p.fast);
        let j = p.jitter(Duration::from_secs(60));
        assert!(j >= Duration::from_secs(54) && j < Duration::from_secs(66));
    }
}
