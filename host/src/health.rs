//! `/healthz`, `/readyz` and `/metrics`, and what readiness means for this daemon.
//!
//! `/healthz` answers 200 while the process serves HTTP: a liveness probe restarts only a hung
//! process. `/readyz` is honest about what users meet:
//! - 200 `standby` for a replica that another one leads (`--leader-elect`): a standby is
//!   healthy, and failing it would make rollouts wait for nothing;
//! - 503 while the leader has not started acting (node, adoption), while its kubelet API does
//!   not serve (no serving certificate yet, bind failure: `kubectl logs`/`exec` would fail), and
//!   while StackPath has answered nothing but errors for longer than [`STACKPATH_GRACE`];
//! - 200 `ok` otherwise.
//!
//! Each failing check is one line of the 503 body, so `kubectl describe pod` on the daemon's
//! pod (the probe's output) says what to fix.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::daemon::DaemonError;
use crate::metrics::Metrics;

/// How long StackPath may fail every call before the daemon reports not ready (the node's own
/// Ready condition reacts after three failed calls; readiness is for the operator's alerting).
pub const STACKPATH_GRACE: Duration = Duration::from_secs(60);

/// This replica's part in leader election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Standby,
}

struct Inner {
    metrics: Arc<Metrics>,
    standby: AtomicBool,
    /// Cities whose node is registered and whose pods are watched.
    acting: AtomicUsize,
    /// Each node's kubelet API's own account of whether it serves, by node name.
    kubelets: Vec<(String, vk_kubelet::Health)>,
}

/// The daemon's readiness, shared by the parts that change it and the probe that reads it.
#[derive(Clone)]
pub struct Readiness(Arc<Inner>);

impl Readiness {
    /// Readiness of a daemon serving these nodes (one per city).
    pub fn new(metrics: Arc<Metrics>, nodes: &[String]) -> Self {
        Self(Arc::new(Inner {
            metrics,
            standby: AtomicBool::new(false),
            acting: AtomicUsize::new(0),
            kubelets: nodes
                .iter()
                .map(|n| (n.clone(), vk_kubelet::Health::new()))
                .collect(),
        }))
    }

    /// The health of `node`'s kubelet API, which `vk_kubelet::serve` keeps current.
    pub fn kubelet(&self, node: &str) -> vk_kubelet::Health {
        self.0
            .kubelets
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, h)| h.clone())
            // Not one of the nodes given at start: a health nobody reads.
            .unwrap_or_default()
    }

    /// Logs every change of each kubelet API's state and keeps the gauges current (the
    /// worst state of all nodes), until the process ends.
    pub async fn follow_kubelet(self) {
        let several = self.0.kubelets.len() > 1;
        let follow = self.0.kubelets.iter().map(|(node, health)| {
            let mut rx = health.subscribe();
            let this = self.clone();
            async move {
                loop {
                    let state = rx.borrow_and_update().clone();
                    this.0.metrics.set_kubelet_state(&this.worst_kubelet());
                    let node = if several { node.as_str() } else { "" };
                    match &state {
                        vk_kubelet::HealthState::Serving { .. }
                        | vk_kubelet::HealthState::Starting
                        | vk_kubelet::HealthState::Stopped => {
                            tracing::info!(node, "kubelet API: {state}")
                        }
                        _ => tracing::warn!(node, "kubelet API: {state}"),
                    }
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            }
        });
        futures::future::join_all(follow).await;
    }

    /// The state of the first node whose kubelet API does not serve, else the first one's.
    fn worst_kubelet(&self) -> vk_kubelet::HealthState {
        let states: Vec<_> = self.0.kubelets.iter().map(|(_, h)| h.state()).collect();
        states
            .iter()
            .find(|s| !matches!(s, vk_kubelet::HealthState::Serving { .. }))
            .or(states.first())
            .cloned()
            .unwrap_or(vk_kubelet::HealthState::Starting)
    }

    pub fn set_role(&self, role: Role) {
        self.0
            .standby
            .store(role == Role::Standby, Ordering::Relaxed);
        self.0.metrics.set_leader(role == Role::Leader);
    }

    /// One city's node is registered and its pod controller runs (or no longer does).
    pub fn set_acting(&self, acting: bool) {
        if acting {
            self.0.acting.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = self
                .0
                .acting
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// No city acts (a leadership term ended).
    pub fn reset_acting(&self) {
        self.0.acting.store(0, Ordering::Relaxed);
    }

    /// `Ok(what)` when ready, else every reason it is not.
    pub fn check(&self) -> Result<&'static str, Vec<String>> {
        let inner = &self.0;
        if inner.standby.load(Ordering::Relaxed) {
            return Ok("standby: another replica leads");
        }
        let mut problems = Vec::new();
        let (acting, nodes) = (inner.acting.load(Ordering::Relaxed), inner.kubelets.len());
        if acting < nodes.max(1) {
            problems.push(if nodes > 1 {
                format!("starting: {acting} of {nodes} nodes are registered and watching pods")
            } else {
                "starting: the node is not registered and watching pods yet".into()
            });
        }
        for (node, health) in &inner.kubelets {
            if let Err(why) = health.readiness() {
                problems.push(if nodes > 1 {
                    format!("node {node}: {why}")
                } else {
                    why
                });
            }
        }
        if let Some((failing, why)) = inner.metrics.stackpath_failing()
            && failing >= STACKPATH_GRACE
        {
            problems.push(format!(
                "StackPath has answered only errors for {}s: {why}",
                failing.as_secs()
            ));
        }
        inner.metrics.set_ready(problems.is_empty());
        if problems.is_empty() {
            Ok("ok")
        } else {
            Err(problems)
        }
    }
}

async fn readyz(State(r): State<Readiness>) -> axum::response::Response {
    match r.check() {
        Ok(what) => (StatusCode::OK, what).into_response(),
        Err(problems) => (StatusCode::SERVICE_UNAVAILABLE, problems.join("\n")).into_response(),
    }
}

async fn metrics(State(r): State<Readiness>) -> impl IntoResponse {
    // Keeps the readiness gauge current for scrapers that never probe.
    let _ = r.check();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        r.0.metrics.encode(),
    )
}

/// Serves the probes and metrics until `stop`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    readiness: Readiness,
    tasks: &TaskTracker,
    stop: CancellationToken,
) -> Result<SocketAddr, DaemonError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Listen { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| DaemonError::Listen { addr, source })?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(readiness);
    tasks.spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_every_problem_and_standby_is_ready() {
        let m = Arc::new(Metrics::new());
        let r = Readiness::new(m.clone(), &["edge-dfw".into()]);
        r.set_role(Role::Leader);
        let problems = r.check().unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("starting"));
        assert!(problems[1].contains("kubelet API"), "{problems:?}");
        r.set_acting(true);
        // The kubelet API has not started serving (no certificate yet).
        let problems = r.check().unwrap_err();
        assert!(
            problems[0].contains("the kubelet API is not serving: starting"),
            "{problems:?}"
        );
        assert!(m.encode().contains("vk_stackpath_ready 0"));
        r.set_role(Role::Standby);
        assert_eq!(r.check(), Ok("standby: another replica leads"));
        assert!(m.encode().contains("vk_stackpath_leader 0"));
        r.set_role(Role::Leader);
        assert!(r.check().is_err());
    }

    #[test]
    fn several_nodes_are_ready_when_all_are() {
        let m = Arc::new(Metrics::new());
        let r = Readiness::new(m, &["edge-dfw".into(), "edge-lax".into()]);
        r.set_role(Role::Leader);
        r.set_acting(true);
        let problems = r.check().unwrap_err();
        assert!(problems[0].contains("1 of 2 nodes"), "{problems:?}");
        assert!(
            problems.iter().any(|p| p.starts_with("node edge-lax:")),
            "{problems:?}"
        );
        r.set_acting(true);
        r.reset_acting();
        assert!(r.check().unwrap_err()[0].contains("0 of 2"));
    }
}
