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
use crate::state::{AppState, text};
use crate::streams::StreamGuard;
use protocol::ExecOptions;

/// One exec, ready to run once the transport has its streams.
pub(crate) struct Exec {
    pub state: Arc<AppState>,
    pub location: ContainerLocation,
    pub options: ExecOptions,
    /// Answer on the error stream instead of running anything (`/attach`).
    pub refuse: Option<String>,
    pub _guard: StreamGuard,
}

impl Exec {
    /// Runs the command on the console; `Err` carries a message for the error stream.
    pub async fn run(&self, io: ExecIo) -> Result<ExitOutcome, String> {
        let s = &self.state;
        if let Some(m) = &self.refuse {
            drop(io);
            return Err(m.clone());
        }
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
    serve(state, namespace, pod, container, req, None).await
}

/// `/attach/{namespace}/{pod}/{container}`: the upgrade is accepted so that the client shows
/// the reason, which arrives on the error stream as a Status.
pub(crate) async fn attach(
    State(state): State<Arc<AppState>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let why = "attach is not supported by the StackPath provider: StackPath's container console only runs new commands; use kubectl exec (or kubectl logs -f for the output)".to_string();
    serve(state, namespace, pod, container, req, Some(why)).await
}

async fn serve(
    state: Arc<AppState>,
    namespace: String,
    pod: String,
    container: String,
    req: Request,
    refuse: Option<String>,
) -> Response {
    let query = req.uri().query().unwrap_or("");
    let parsed = if refuse.is_some() {
        ExecOptions::parse(query, false)
    } else {
        ExecOptions::from_query(query)
    };
    let options = match parsed {
        Ok(o) => o,
        Err(m) => return text(StatusCode::BAD_REQUEST, m),
    };
    let location = match state.locator.locate(&namespace, &pod, &container) {
        Ok(l) => l,
        Err(e) => return text(e.status(), e.to_string()),
    };
    let guard = match state.acquire_stream(&namespace, &pod) {
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
        refuse,
        _guard: guard,
    };
    tracing::debug!(%namespace, %pod, %container, transport = %upgrade, "exec request");
    let counted = |c: &std::sync::atomic::AtomicU64| {
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    if upgrade == "websocket" {
        counted(&state.exec_transports.websocket);
        match axum::extract::ws::WebSocketUpgrade::from_request(req, &()).await {
            Ok(ws) => ws::serve(ws, exec),
            Err(rej) => rej.into_response(),
        }
    } else if upgrade.starts_with("spdy/") {
        counted(&state.exec_transports.spdy);
        spdy::serve(req, exec)
    } else if let Some(m) = exec.refuse {
        text(StatusCode::NOT_IMPLEMENTED, m)
    } else {
        text(StatusCode::BAD_REQUEST, "Upgrade request required")
    }
}

/// `/portForward` (and malformed `/attach` paths): StackPath's console cannot do them. The body
/// is a `metav1.Status`, which client-go's upgrade dialer shows as the error message.
pub(crate) async fn not_supported(req: Request) -> Response {
    let what = if req.uri().path().starts_with("/portForward") {
        "port-forward"
    } else {
        "attach"
    };
    let message = format!(
        "{what} is not supported by the StackPath provider: StackPath's container console only runs new commands (use kubectl exec)"
    );
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": "BadRequest", "code": 400
    });
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
