//! What every handler shares, and the per-identity stream limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use tokio_util::sync::CancellationToken;

use crate::auth::{Auth, UserInfo};
use crate::config::{ConsoleConfig, Limits};
use crate::locator::PodLocator;

pub(crate) struct AppState {
    pub locator: Arc<dyn PodLocator>,
    pub stackpath: stackpath_client::Client,
    pub console: ConsoleConfig,
    pub limits: Limits,
    /// `None` with [`crate::config::AuthMode::InsecureNone`].
    pub auth: Option<Auth>,
    pub node_name: String,
    pub shutdown: CancellationToken,
    pub cpu: crate::stats::CpuCounters,
    pub started: chrono::DateTime<chrono::Utc>,
    pub exec_transports: Arc<ExecTransports>,
    streams: Arc<Mutex<HashMap<String, usize>>>,
}

/// Exec sessions served so far, by the transport the caller used (an API server 1.36+ speaks
/// WebSocket to a kubelet that declares `ExtendWebSocketsToKubelet`, older ones SPDY).
#[derive(Debug, Default)]
pub struct ExecTransports {
    pub websocket: std::sync::atomic::AtomicU64,
    pub spdy: std::sync::atomic::AtomicU64,
}

impl AppState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        locator: Arc<dyn PodLocator>,
        stackpath: stackpath_client::Client,
        console: ConsoleConfig,
        limits: Limits,
        auth: Option<Auth>,
        node_name: String,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            locator,
            stackpath,
            console,
            limits,
            auth,
            node_name,
            shutdown,
            cpu: Default::default(),
            started: chrono::Utc::now(),
            exec_transports: Arc::default(),
            streams: Arc::default(),
        }
    }

    /// Takes one of the caller's stream slots, or answers 429.
    #[allow(clippy::result_large_err)] // the error is the response itself, built once
    pub fn acquire_stream(&self, req: &Request) -> Result<StreamGuard, Response> {
        let who = req
            .extensions()
            .get::<UserInfo>()
            .map(|u| u.name.clone())
            .unwrap_or_else(|| "system:anonymous".into());
        let mut map = self.streams.lock().map_err(|_| {
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "stream registry poisoned",
            )
        })?;
        let n = map.entry(who.clone()).or_default();
        if *n >= self.limits.max_streams_per_client {
            return Err(text(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many concurrent streams for {who} (limit {}); close some exec or logs -f sessions",
                    self.limits.max_streams_per_client
                ),
            ));
        }
        *n += 1;
        Ok(StreamGuard {
            who,
            streams: self.streams.clone(),
        })
    }
}

/// Frees a stream slot when dropped.
pub(crate) struct StreamGuard {
    who: String,
    streams: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Ok(mut map) = self.streams.lock()
            && let Some(n) = map.get_mut(&self.who)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.who);
            }
        }
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
