//! What every handler shares.

use std::sync::Arc;

use axum::extract::FromRef;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::config::{ConsoleConfig, Limits};
use crate::locator::PodLocator;
use crate::stats::Stats;
use crate::streams::{StreamGuard, StreamLimits};

pub(crate) struct AppState {
    pub locator: Arc<dyn PodLocator>,
    pub stackpath: stackpath_client::Client,
    pub console: ConsoleConfig,
    pub limits: Limits,
    /// `None` with [`crate::config::AuthMode::InsecureNone`].
    pub auth: Option<Auth>,
    pub shutdown: CancellationToken,
    pub exec_transports: Arc<ExecTransports>,
    /// `/stats/summary`, `/metrics/resource` and the pod lists (their own sub-state).
    pub stats: Stats,
    streams: StreamLimits,
}

/// The stats handlers see only their own part.
impl FromRef<Arc<AppState>> for Stats {
    fn from_ref(state: &Arc<AppState>) -> Self {
        state.stats.clone()
    }
}

/// Exec sessions served so far, by the transport the caller used (an API server 1.36+ speaks
/// WebSocket to a kubelet that declares `ExtendWebSocketsToKubelet`, older ones SPDY).
#[derive(Debug, Default)]
pub struct ExecTransports {
    pub websocket: std::sync::atomic::AtomicU64,
    pub spdy: std::sync::atomic::AtomicU64,
}

impl AppState {
    pub fn new(
        locator: Arc<dyn PodLocator>,
        stackpath: stackpath_client::Client,
        console: ConsoleConfig,
        limits: Limits,
        auth: Option<Auth>,
        node_name: String,
        shutdown: CancellationToken,
    ) -> Self {
        let stats = Stats::new(
            locator.clone(),
            stackpath.clone(),
            node_name,
            limits.metrics_window,
        );
        Self {
            locator,
            stackpath,
            console,
            streams: StreamLimits::new(limits.max_streams, limits.max_streams_per_pod),
            limits,
            auth,
            shutdown,
            exec_transports: Arc::default(),
            stats,
        }
    }

    /// Takes a stream slot for `namespace/pod`, or answers 429.
    #[allow(clippy::result_large_err)] // the error is the response itself, built once
    pub fn acquire_stream(&self, namespace: &str, pod: &str) -> Result<StreamGuard, Response> {
        self.streams.acquire(namespace, pod).map_err(|e| {
            tracing::info!(%namespace, %pod, error = %e, "stream refused");
            text(StatusCode::TOO_MANY_REQUESTS, e.to_string())
        })
    }
}

/// A plain-text answer, as the kubelet writes its errors.
pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut body: String = body.into();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    (
        status,
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}
