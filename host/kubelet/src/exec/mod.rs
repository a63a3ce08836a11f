//! `/exec/{namespace}/{pod}/{container}`: the request, the transport (SPDY/3.1 or WebSocket),
//! and the console session behind it.

pub mod protocol;
mod spdy;
mod ws;

use std::sync::Arc;

use axum::extract::{FromRequest, Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};

use crate::console::{self, ExecIo, ExitOutcome};
use crate::locator::ContainerLocation;
use crate::state::{AppState, StreamGuard, text};
use protocol::ExecOptions;

/// One exec, ready to run once the transport has its streams.
pub(crate) struct Exec {
    pub state: Arc<AppState>,
    pub location: ContainerLocation,
    pub options: ExecOptions,
    pub _guard: StreamGuard,
}

impl Exec {
    /// Runs the command on the console; `Err` carries a message for the error stream.
    pub async fn run(&self, io: ExecIo) -> Result<ExitOutcome, String> {
        let s = &self.state;
        tokio::select! {
            r = console::exec(&s.console, &self.location, &self.options.command, self.options.tty, io, s.limits.stream_idle_timeout) => {
                r.map_err(|e| {
                    tracing::info!(error = %e, "exec failed");
                    e.to_string()
                })
            }
            _ = s.shutdown.cancelled() => Err("the virtual kubelet is shutting down".into()),
        }
    }
}

pub(crate) async fn handler(
    State(state): State<Arc<AppState>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let options = match ExecOptions::from_query(req.uri().query().unwrap_or("")) {
        Ok(o) => o,
        Err(m) => return text(StatusCode::BAD_REQUEST, m),
    };
    let location = match state.locator.locate(&namespace, &pod, &container) {
        Ok(l) => l,
        Err(e) => return text(e.status(), e.to_string()),
    };
    let guard = match state.acquire_stream(&req) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let exec = Exec {
        state: state.clone(),
        location,
        options,
        _guard: guard,
    };
    if upgrade == "websocket" {
        match axum::extract::ws::WebSocketUpgrade::from_request(req, &()).await {
            Ok(ws) => ws::serve(ws, exec),
            Err(rej) => rej.into_response(),
        }
    } else if upgrade.starts_with("spdy/") {
        spdy::serve(req, exec)
    } else {
        text(StatusCode::BAD_REQUEST, "Upgrade request required")
    }
}

/// `/attach` and `/portForward`: StackPath's console can do neither.
pub(crate) async fn not_supported(req: Request) -> Response {
    let what = if req.uri().path().starts_with("/portForward") {
        "port-forward"
    } else {
        "attach"
    };
    text(
        StatusCode::NOT_IMPLEMENTED,
        format!(
            "{what} is not supported by the StackPath provider: StackPath's container console only runs new commands (use kubectl exec)"
        ),
    )
}
