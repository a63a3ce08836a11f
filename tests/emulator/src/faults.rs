//! Fault injection: 5xx error rate, 429 bursts (any `Retry-After`), added latency, dropped
//! connections, hung requests, oversized bodies, 400s that echo the request body, absurd token
//! lifetimes, and failing new instances. Applied to the Workload API routes only (and the token
//! endpoint when asked), never to `/_emulator/`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::api_error::ApiError;
use crate::serve::ConnKill;
use crate::state::AppState;

/// Fault settings. Every field defaults to "no fault", so a partial JSON object is accepted.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct Faults {
    /// Fraction (0..=1) of API calls answered 500 (code 13) or 503 (code 14) instead of run.
    pub error_rate: f64,
    /// The next N API calls answer 429 (code 8) with `Retry-After`. Counts down; reading the
    /// faults shows what is left.
    pub rate_limit_burst: u32,
    /// `Retry-After` seconds sent with a 429 (any `u64`, so clients can be tested against
    /// absurd values), also in the body's `RetryInfo.retryDelay`.
    pub retry_after_seconds: u64,
    /// Sent verbatim as the 429's `Retry-After` header instead of `retry_after_seconds`, e.g.
    /// an HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`) or garbage (`soon`). Must be a valid
    /// header value (visible ASCII).
    pub retry_after_header: Option<String>,
    /// Added to every API call before it runs.
    pub latency_ms: u64,
    /// Fraction (0..=1) of API calls that are carried out but whose connection is then closed
    /// without a response (a lost response).
    pub drop_rate: f64,
    /// Fraction (0..=1) of API calls that are accepted and then never answered (not carried
    /// out; the connection stays open and silent until the client gives up), for testing
    /// per-attempt timeouts. Unlike `drop_rate`, nothing happens and nothing is closed.
    pub hang_rate: f64,
    /// Creates, PUTs and PATCHes answer 400 (code 3) whose `message` and `details`
    /// (`stackpath.rpc.BadRequest` and `stackpath.rpc.RequestInfo.servingData`) echo the
    /// request body, as some APIs do; the call is not carried out. For testing that a client
    /// redacts secrets (`secretValue`, registry passwords) from the errors it logs.
    pub echo_request_in_errors: bool,
    /// Successful JSON answers of the API routes are padded with trailing whitespace (still
    /// valid JSON) to at least this many bytes, streamed in chunks without a `Content-Length`.
    /// 0: off. For testing a client's response size limit.
    pub oversize_body_bytes: u64,
    /// `expires_in` sent by the token endpoint instead of the configured lifetime (any `u64`,
    /// e.g. 18446744073709551615). The token itself still expires after the configured
    /// lifetime. Applies whether or not `include_token_endpoint` is set.
    pub token_expires_in: Option<u64>,
    /// Instances created or restarted while set go FAILED instead of RUNNING.
    pub fail_new_instances: bool,
    /// Apply the faults above to the token endpoint too (default: API routes only).
    pub include_token_endpoint: bool,
}

impl Faults {
    pub(crate) fn check(&self) -> Result<(), String> {
        for (name, v) in [
            ("error_rate", self.error_rate),
            ("drop_rate", self.drop_rate),
            ("hang_rate", self.hang_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("fault {name} must be between 0 and 1, got {v}"));
            }
        }
        if let Some(h) = &self.retry_after_header
            && http::HeaderValue::from_str(h).is_err()
        {
            return Err(format!(
                "fault retry_after_header {h:?} is not a valid HTTP header value (visible ASCII only)"
            ));
        }
        Ok(())
    }
}

/// The live fault settings; the burst counter is separate so it can count down lock-free.
pub(crate) struct FaultState {
    settings: Mutex<Faults>,
    burst_left: AtomicU32,
}

impl FaultState {
    pub(crate) fn new(initial: Faults) -> Self {
        let burst = initial.rate_limit_burst;
        Self {
            settings: Mutex::new(initial),
            burst_left: AtomicU32::new(burst),
        }
    }

    pub(crate) fn get(&self) -> Faults {
        let mut f = self.settings.lock().map(|f| f.clone()).unwrap_or_default();
        f.rate_limit_burst = self.burst_left.load(Ordering::Relaxed);
        f
    }

    pub(crate) fn set(&self, faults: Faults) {
        self.burst_left
            .store(faults.rate_limit_burst, Ordering::Relaxed);
        if let Ok(mut s) = self.settings.lock() {
            *s = faults;
        }
    }

    /// `expires_in` for a token issued now.
    pub(crate) fn token_expires_in(&self) -> Option<u64> {
        self.settings.lock().ok().and_then(|f| f.token_expires_in)
    }

    pub(crate) fn fail_new_instances(&self) -> bool {
        self.settings
            .lock()
            .map(|f| f.fail_new_instances)
            .unwrap_or(false)
    }

    fn take_burst(&self) -> bool {
        self.burst_left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// Creates and replacements: the calls whose bodies carry a workload spec (and its secrets).
fn carries_workload(req: &Request) -> bool {
    let path = req.uri().path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let is_workloads = segments.len() == 5 && segments[4] == "workloads";
    let is_workload = segments.len() == 6 && segments[4] == "workloads";
    segments.starts_with(&["workload", "v1", "stacks"])
        && match *req.method() {
            http::Method::POST => is_workloads,
            http::Method::PUT | http::Method::PATCH => is_workload,
            _ => false,
        }
}

/// The 400 that echoes `body` (as text) in its message and details.
fn echo_error(body: &[u8]) -> Response {
    let text = String::from_utf8_lossy(body).into_owned();
    let mut e =
        ApiError::invalid_field("workload", format!("could not process the request {text}"));
    e.message = format!("invalid request body: {text}");
    e.details.push(serde_json::json!({
        "@type": "stackpath.rpc.RequestInfo",
        "requestId": uuid::Uuid::new_v4().to_string(),
        "servingData": text,
    }));
    e.into_response()
}

const PAD_CHUNK: usize = 64 * 1024;

/// `resp` followed by spaces up to `total` bytes, streamed.
async fn pad(resp: Response, total: u64) -> Response {
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::internal("emulator: could not read the answer to pad it").into_response();
    };
    let mut left = total.saturating_sub(bytes.len() as u64);
    let spaces = bytes::Bytes::from(vec![b' '; PAD_CHUNK]);
    let tail = futures::stream::poll_fn(move |_| {
        if left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = left.min(PAD_CHUNK as u64) as usize;
        left -= n as u64;
        std::task::Poll::Ready(Some(Ok::<_, std::io::Error>(spaces.slice(..n))))
    });
    let head = futures::stream::once(async move { Ok::<_, std::io::Error>(bytes) });
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Response::from_parts(
        parts,
        axum::body::Body::from_stream(futures::StreamExt::chain(head, tail)),
    )
}

/// Middleware in front of the API routes (and the token endpoint when asked).
pub(crate) async fn inject(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let is_token = req.uri().path() == crate::auth::TOKEN_PATH;
    let f = app.faults.get();
    if is_token && !f.include_token_endpoint {
        return next.run(req).await;
    }
    if f.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(f.latency_ms)).await;
    }
    if app.faults.take_burst() {
        let retry = f.retry_after_seconds;
        let mut resp = ApiError::rate_limited(retry).into_response();
        let header = f
            .retry_after_header
            .clone()
            .unwrap_or_else(|| retry.to_string());
        if let Ok(v) = http::HeaderValue::from_str(&header) {
            resp.headers_mut().insert(http::header::RETRY_AFTER, v);
        }
        return resp;
    }
    if f.error_rate > 0.0 && rand::random::<f64>() < f.error_rate {
        return if rand::random::<bool>() {
            ApiError::internal("emulator: injected internal error").into_response()
        } else {
            ApiError::unavailable("emulator: injected unavailability").into_response()
        };
    }
    if f.hang_rate > 0.0 && rand::random::<f64>() < f.hang_rate {
        // Never answered: ends when the client hangs up (the future is dropped) or at shutdown.
        app.cancel.cancelled().await;
        return ApiError::unavailable("emulator: shutting down").into_response();
    }
    if f.echo_request_in_errors && carries_workload(&req) {
        let Ok(body) = axum::body::to_bytes(req.into_body(), 16 * 1024 * 1024).await else {
            return ApiError::invalid_field("body", "the request body could not be read")
                .into_response();
        };
        return echo_error(&body);
    }
    let drop = f.drop_rate > 0.0 && rand::random::<f64>() < f.drop_rate;
    let kill = req.extensions().get::<ConnKill>().cloned();
    let mut resp = next.run(req).await;
    if drop && let Some(kill) = kill {
        // The call took effect; now lose the response by closing the connection.
        kill.0.notify_one();
        std::future::pending::<()>().await;
    }
    let is_json = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if f.oversize_body_bytes > 0 && resp.status().is_success() && is_json {
        resp = pad(resp, f.oversize_body_bytes).await;
    }
    resp
}
