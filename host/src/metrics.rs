//! Prometheus metrics of the daemon, and StackPath reachability (the node's Ready condition).
//!
//! The StackPath client reports every HTTP attempt through [`CallObserver`]; the same hook
//! feeds the call counters, the latency histogram and the reachability the node reports.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use stackpath_client::CallObserver;

use crate::translation::TranslateError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    route: &'static str,
    method: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Consecutive failed StackPath attempts after which the node reports NotReady.
const UNREACHABLE_AFTER: u32 = 3;

pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    call_seconds: Family<RouteLabels, Histogram>,
    policy_seconds: Histogram,
    policy_failures: Family<KindLabels, Counter>,
    pods: Family<PhaseLabels, Gauge>,
    reconciles: Family<ResultLabels, Counter>,
    tracked: Gauge,
    leader: Gauge,
    ready: Gauge,
    kubelet_state: Family<StateLabels, Gauge>,
    kubelet_cert_expiry: Gauge,
    consecutive_failures: AtomicU32,
    last_failure: Mutex<Option<String>>,
    /// When the current run of failed calls began (`None` while StackPath answers).
    failing_since: Mutex<Option<Instant>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vk_stackpath");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "api_requests",
            "StackPath API requests (every attempt, retries included) by route template, method and HTTP status (`error` when no response arrived)",
            calls.clone(),
        );
        let call_seconds = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 12))
        });
        registry.register(
            "api_request_duration_seconds",
            "StackPath API request latency by route template",
            call_seconds.clone(),
        );
        let policy_seconds = Histogram::new(exponential_buckets(0.00005, 2.0, 16));
        registry.register(
            "policy_call_duration_seconds",
            "Time of one pod translation (resolution, policy call, validation)",
            policy_seconds.clone(),
        );
        let policy_failures = Family::<KindLabels, Counter>::default();
        registry.register(
            "policy_failures",
            "Translations that did not produce a workload, by kind (rejected, trap, timeout, memory, invalid_output, pod)",
            policy_failures.clone(),
        );
        let pods = Family::<PhaseLabels, Gauge>::default();
        registry.register("pods", "Pods on this node by phase", pods.clone());
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Pod reconcile passes by result",
            reconciles.clone(),
        );
        let tracked = Gauge::default();
        registry.register(
            "tracked_pods",
            "Pods the daemon is tracking (the reconcile queue's population)",
            tracked.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica leads (always, without --leader-elect), 0 while it stands by",
            leader.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 when /readyz answers 200 (see its body for why not)",
            ready.clone(),
        );
        let kubelet_state = Family::<StateLabels, Gauge>::default();
        registry.register(
            "kubelet_state",
            "1 for the kubelet API's current state (serving: kubectl logs/exec/top work; waiting_for_certificate: a serving CSR awaits approval; failed: restarting), 0 for the others",
            kubelet_state.clone(),
        );
        let kubelet_cert_expiry = Gauge::default();
        registry.register(
            "kubelet_certificate_expiry_timestamp_seconds",
            "When the kubelet API's serving certificate expires (Unix time; 0 while it has none)",
            kubelet_cert_expiry.clone(),
        );
        Self {
            registry,
            calls,
            call_seconds,
            policy_seconds,
            policy_failures,
            pods,
            reconciles,
            tracked,
            leader,
            ready,
            kubelet_state,
            kubelet_cert_expiry,
            consecutive_failures: AtomicU32::new(0),
            last_failure: Mutex::new(None),
            failing_since: Mutex::new(None),
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    pub fn policy_call(&self, elapsed: Duration, error: Option<&TranslateError>) {
        self.policy_seconds.observe(elapsed.as_secs_f64());
        if let Some(e) = error {
            self.policy_failures
                .get_or_create(&KindLabels { kind: kind(e) })
                .inc();
        }
    }

    pub fn reconciles(&self, ok: bool) {
        self.reconciles
            .get_or_create(&ResultLabels {
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// Replaces the pods-by-phase gauges.
    pub fn set_pods(&self, by_phase: &[(String, i64)], tracked: usize) {
        self.pods.clear();
        for (phase, n) in by_phase {
            self.pods
                .get_or_create(&PhaseLabels {
                    phase: phase.clone(),
                })
                .set(*n);
        }
        self.tracked.set(tracked as i64);
    }

    /// None when StackPath answers; otherwise why the node should report NotReady.
    pub fn stackpath_problem(&self) -> Option<String> {
        if self.consecutive_failures.load(Ordering::Relaxed) >= UNREACHABLE_AFTER {
            let last = self
                .last_failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            Some(last.unwrap_or_else(|| "StackPath API requests are failing".into()))
        } else {
            None
        }
    }

    /// Marks StackPath reachable (the start-up check passed).
    pub fn stackpath_ok(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        *self.failing_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// How long StackPath has answered nothing but errors, and the last one; `None` while it
    /// answers.
    pub fn stackpath_failing(&self) -> Option<(Duration, String)> {
        let since = (*self.failing_since.lock().unwrap_or_else(|p| p.into_inner()))?;
        let last = self
            .last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default();
        Some((since.elapsed(), last))
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    pub fn set_kubelet_state(&self, state: &vk_kubelet::HealthState) {
        for name in vk_kubelet::HealthState::NAMES {
            self.kubelet_state
                .get_or_create(&StateLabels { state: name })
                .set(i64::from(name == state.name()));
        }
        let expiry = match state {
            vk_kubelet::HealthState::Serving { not_after, .. } => not_after.timestamp(),
            _ => 0,
        };
        self.kubelet_cert_expiry.set(expiry);
    }
}

fn kind(e: &TranslateError) -> &'static str {
    use crate::policy::PolicyError as P;
    match e {
        TranslateError::Pod(_) => "pod",
        TranslateError::Policy(p) => match p {
            P::Rejected { .. } => "rejected",
            P::Timeout { .. } => "timeout",
            P::OutOfMemory { .. } => "memory",
            P::Trap { .. } => "trap",
            P::InvalidOutput { .. } => "invalid_output",
            _ => "other",
        },
    }
}

impl CallObserver for Metrics {
    fn observe(&self, route: &'static str, method: &str, status: Option<u16>, elapsed: Duration) {
        self.calls
            .get_or_create(&CallLabels {
                route,
                method: method.to_owned(),
                status: status.map_or_else(|| "error".into(), |s| s.to_string()),
            })
            .inc();
        self.call_seconds
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
        match status {
            Some(s) if s < 500 => self.stackpath_ok(),
            _ => {
                if self.consecutive_failures.fetch_add(1, Ordering::Relaxed) == 0 {
                    let mut since = self.failing_since.lock().unwrap_or_else(|p| p.into_inner());
                    since.get_or_insert_with(Instant::now);
                }
                *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(match status {
                    Some(s) => format!("StackPath answers {s} on {method} {route}"),
                    None => format!("StackPath does not answer ({method} {route})"),
                });
            }
        }
    }
}

/// Total StackPath requests counted so far (for tests and the scale benchmark).
impl Metrics {
    pub fn total_api_requests(&self) -> u64 {
        let text = self.encode();
        text.lines()
            .filter(|l| l.starts_with("vk_stackpath_api_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}
