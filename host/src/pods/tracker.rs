//! What the daemon remembers about each pod between reconcile passes: the workload that runs
//! it, the images it was created with, and when to look at StackPath next.
//!
//! Polling is adaptive: every `fast` interval while a pod is changing, doubling up to
//! `settled` once its status stops changing, back to `fast` after our own changes. Jitter
//! spreads pods created together so their polls do not arrive in bursts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use super::kept::{Budget, KeptLogs};
use crate::resolve::Fingerprints;

/// Per-pod memory. Keyed by `namespace/name`. Read through its accessors, changed only
/// through its transitions (below), each named for what happened to the pod.
#[derive(Debug, Clone)]
pub struct Tracked {
    uid: Option<String>,
    workload_id: Option<String>,
    instance_name: Option<String>,
    /// Container images the workload was created or last updated with, by container.
    images: Vec<(String, String)>,
    /// When to poll next; `None`: due now (never polled).
    next_poll: Option<Instant>,
    interval: Duration,
    /// The pod was failed by us (rejected, workload deleted behind our back): nothing more to do.
    finished: bool,
    /// A transient error was already reported as an Event (one Event per outage, not per retry).
    transient_reported: bool,
    /// Consecutive transient failures, for backoff.
    failures: u32,
    /// Since when this settled pod's poll has been put off because the rate limit was exhausted.
    deferred_since: Option<Instant>,
    /// When deletion began (bounded by the pod's grace period).
    deleting_since: Option<Instant>,
    /// The instance is running (for the kubelet API: logs and exec need an instance).
    has_instance: bool,
    /// The ConfigMaps and Secrets the workload was made from (`None`: unknown, adopted).
    config: Option<Fingerprints>,
    /// When they were last compared with the API server's.
    config_checked: Option<Instant>,
    /// Those that changed since the workload was made: it must be updated.
    config_changed: Vec<String>,
    /// The containers' last output, read before a finished pod's workload was deleted.
    kept_logs: Option<Arc<KeptLogs>>,
}

/// Read access.
impl Tracked {
    /// The pod (by uid) this memory is for; `None` before its first pass.
    pub fn uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }
    /// The workload that runs the pod, once created or adopted.
    pub fn workload_id(&self) -> Option<&str> {
        self.workload_id.as_deref()
    }
    /// The instance StackPath runs the workload as (`<slug>-city-code-<city>-0`).
    pub fn instance_name(&self) -> Option<&str> {
        self.instance_name.as_deref()
    }
    /// Container images the workload was created or last updated with, by container.
    pub fn images(&self) -> &[(String, String)] {
        &self.images
    }
    /// When the next poll is due; `None`: now.
    pub fn next_poll(&self) -> Option<Instant> {
        self.next_poll
    }
    /// The current poll pace.
    pub fn interval(&self) -> Duration {
        self.interval
    }
    /// The daemon failed the pod: nothing more to do until it changes.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
    /// Consecutive transient failures.
    pub fn failures(&self) -> u32 {
        self.failures
    }
    pub fn deferred_since(&self) -> Option<Instant> {
        self.deferred_since
    }
    pub fn deleting_since(&self) -> Option<Instant> {
        self.deleting_since
    }
    /// StackPath reported an instance (logs and exec need one).
    pub fn has_instance(&self) -> bool {
        self.has_instance
    }
    /// The ConfigMaps and Secrets the workload was made from, when known.
    pub fn config(&self) -> Option<&Fingerprints> {
        self.config.as_ref()
    }
    pub fn config_checked(&self) -> Option<Instant> {
        self.config_checked
    }
    /// Objects (`configMap/<name>`, `secret/<name>`) changed since the workload was made.
    pub fn config_changed(&self) -> &[String] {
        &self.config_changed
    }
    /// What was kept of a finished pod's output (its workload is gone).
    pub fn kept_logs(&self) -> Option<&KeptLogs> {
        self.kept_logs.as_deref()
    }
}

/// Consecutive failures double the wait, up to this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// 1 s, 2 s, 4 s, … up to [`BACKOFF_MAX`].
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(6)).min(BACKOFF_MAX)
}

/// The transitions of a pod's memory: each is one thing that happened to the pod. They are the
/// only writers of [`Tracked`]'s fields (reconcile reads the fields, then records what it did).
impl Tracked {
    pub fn new(fast: Duration) -> Self {
        Self {
            uid: None,
            workload_id: None,
            instance_name: None,
            images: Vec::new(),
            next_poll: None,
            interval: fast,
            finished: false,
            transient_reported: false,
            failures: 0,
            deferred_since: None,
            deleting_since: None,
            has_instance: false,
            config: None,
            config_checked: None,
            config_changed: Vec::new(),
            kept_logs: None,
        }
    }

    /// A workload of this pod existed at start (an earlier run's, or the Go provider's).
    pub fn adopted(&mut self, workload_id: String, images: Vec<(String, String)>) {
        self.workload_id = Some(workload_id);
        self.images = images;
    }

    /// The pod's first pass in this process: remember which pod (by uid) the entry is for.
    pub fn seen(&mut self, uid: Option<String>) {
        if self.uid.is_none() {
            self.uid = uid;
        }
    }

    /// The workload was created (or found by its slug) for the pod.
    pub fn created(
        &mut self,
        workload_id: String,
        images: Vec<(String, String)>,
        instance_name: Option<String>,
        fast: Duration,
        now: Instant,
    ) {
        self.workload_id = Some(workload_id);
        self.images = images;
        self.instance_name = instance_name;
        self.interval = fast;
        self.next_poll = Some(now + fast);
        self.failures = 0;
        self.transient_reported = false;
    }

    /// The workload follows the pod's images now (updated, or the update was refused and the
    /// user told: either way it is not retried until the images change again).
    pub fn updated(&mut self, images: Vec<(String, String)>, fast: Duration, now: Instant) {
        self.images = images;
        self.interval = fast;
        self.next_poll = Some(now + fast);
    }

    /// An update the pod asked for will not be made (refused by the policy or StackPath).
    pub fn update_refused(&mut self, images: Vec<(String, String)>) {
        self.images = images;
        self.config_changed.clear();
    }

    /// The workload was made (created or updated) from these ConfigMaps and Secrets.
    pub fn config_applied(&mut self, config: Fingerprints, now: Instant) {
        self.config = Some(config);
        self.config_checked = Some(now);
        self.config_changed.clear();
    }

    /// The ConfigMaps and Secrets were compared with the API server's at `now`: `current` is
    /// what it holds. Changes are remembered until an update (or its refusal) takes them.
    pub fn config_compared(&mut self, current: Fingerprints, now: Instant) {
        self.config_checked = Some(now);
        let Some(before) = &self.config else {
            // Adopted: what the workload was made from is unknown; from now on it is this.
            self.config = Some(current);
            return;
        };
        let names: std::collections::BTreeSet<&String> =
            before.keys().chain(current.keys()).collect();
        self.config_changed = names
            .into_iter()
            .filter(|n| before.get(*n) != current.get(*n))
            .cloned()
            .collect();
        self.config = Some(current);
    }

    /// A settled pod's poll is put off while the rate limit is exhausted.
    pub fn deferred(&mut self, since: Instant, until: Instant) {
        self.deferred_since = Some(since);
        self.next_poll = Some(until);
    }

    /// StackPath answered a poll: poll again after `wait`, at pace `interval`.
    pub fn polled(
        &mut self,
        interval: Duration,
        next_poll: Instant,
        instance_name: Option<String>,
        has_instance: bool,
    ) {
        self.interval = interval;
        self.next_poll = Some(next_poll);
        self.failures = 0;
        self.deferred_since = None;
        self.has_instance = has_instance;
        if instance_name.is_some() {
            self.instance_name = instance_name;
        }
    }

    /// A poll failed (StackPath unreachable, …): back off. Returns the wait.
    pub fn poll_failed(&mut self, now: Instant) -> Duration {
        let wait = backoff(self.failures);
        self.failures += 1;
        self.next_poll = Some(now + wait);
        wait
    }

    /// Creating or updating failed for a reason that passes (StackPath or the API server
    /// unavailable, a daemon error). Returns the wait before the retry and whether this is the
    /// first failure of the outage (the one worth an Event).
    pub fn transient_failure(&mut self) -> (Duration, bool) {
        let wait = backoff(self.failures);
        let first = !self.transient_reported;
        self.failures += 1;
        self.transient_reported = true;
        (wait, first)
    }

    /// The pod will not run (failed by the daemon): nothing more to do until it changes.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// The containers' output was read before the workload is deleted at their end.
    pub fn logs_kept(&mut self, kept: KeptLogs) {
        self.kept_logs = Some(Arc::new(kept));
    }

    /// The workload disappeared from StackPath behind the daemon's back.
    pub fn workload_gone(&mut self) {
        self.workload_id = None;
    }

    /// The pod is being deleted and a workload was found for it at StackPath.
    pub fn found(&mut self, workload_id: Option<String>) {
        self.workload_id = workload_id;
    }

    /// The workload's deletion was requested at `now`.
    pub fn deletion_requested(&mut self, now: Instant) {
        self.deleting_since = Some(now);
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
    /// Memory for kept logs, released as their pods' entries are removed.
    kept_budget: Budget,
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

    pub fn kept_budget(&self) -> &Budget {
        &self.kept_budget
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
        self.with(key, fast, |t| t.adopted(workload_id, images));
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
