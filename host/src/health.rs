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
use std::sync::atomic::{AtomicBool, Ordering};
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
    acting: AtomicBool,
    /// The kubelet API's own account of whether it serves.
    kubelet: vk_kubelet::Health,
}

/// The daemon's readiness, shared by the parts that change it and the probe that reads it.
#[derive(Clone)]
pub struct Readiness(Arc<Inner>);

impl Readiness {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self(Arc::new(Inner {
            metrics,
            standby: AtomicBool::new(false),
            acting: AtomicBool::new(false),
            kubelet: vk_kubelet::Health::new(),
        }))
    }

    /// The kubelet API's health, which `vk_kubelet::serve` keeps current.
    pub fn kubelet(&self) -> &vk_kubelet::Health {
        &self.0.kubelet
    }

    /// Logs every change of the kubelet API's state and keeps its gauges current, until the
    /// process ends.
    pub async fn follow_kubelet(self) {
        let mut rx = self.0.kubelet.subscribe();
        loop {
            let state = rx.borrow_and_update().clone();
            self.0.metrics.set_kubelet_state(&state);
            match &state {
                vk_kubelet::HealthState::Serving { .. } | vk_kubelet::HealthState::Starting => {
                    tracing::info!("kubelet API: {state}")
                }
                vk_kubelet::HealthState::Stopped => tracing::info!("kubelet API: {state}"),
                _ => tracing::warn!("kubelet API: {state}"),
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    pub fn set_role(&self, role: Role) {
        self.0
            .standby
            .store(role == Role::Standby, Ordering::Relaxed);
        self.0.metrics.set_leader(role == Role::Leader);
    }

    /// The node is registered and the pod controller runs (or no longer does).
    pub fn set_acting(&self, acting: bool) {
        self.0.acting.store(acting, Ordering::Relaxed);
    }

    /// `Ok(what)` when ready, else every reason it is not.
    pub fn check(&self) -> Result<&'static str, Vec<String>> {
        let inner = &self.0;
        if inner.standby.load(Ordering::Relaxed) {
            return Ok("standby: another replica leads");
        }
        let mut problems = Vec::new();
        if !inner.acting.load(Ordering::Relaxed) {
            problems.push("starting: the node is not registered and watching pods yet".into());
        }
        if let Err(why) = inner.kubelet.readiness() {
            problems.push(why);
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
        let r = Readiness::new(m.clone());
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
}
