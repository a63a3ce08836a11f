//! Fault injection: 5xx error rate, 429 bursts, added latency, dropped connections, and
//! failing new instances. Applied to the Workload API routes only, never to `/_emulator/`.

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
    /// `Retry-After` seconds sent with a 429.
    pub retry_after_seconds: u64,
    /// Added to every API call before it runs.
    pub latency_ms: u64,
    /// Fraction (0..=1) of API calls that are carried out but whose connection is then closed
    /// without a response (a lost response).
    pub drop_rate: f64,
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
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("fault {name} must be between 0 and 1, got {v}"));
            }
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
        if let Ok(v) = http::HeaderValue::from_str(&retry.to_string()) {
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
    let drop = f.drop_rate > 0.0 && rand::random::<f64>() < f.drop_rate;
    let kill = req.extensions().get::<ConnKill>().cloned();
    let resp = next.run(req).await;
    if drop && let Some(kill) = kill {
        // The call took effect; now lose the response by closing the connection.
        kill.0.notify_one();
        std::future::pending::<()>().await;
    }
    resp
}
