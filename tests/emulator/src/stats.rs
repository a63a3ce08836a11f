//! Per-route call counters for `/_emulator/stats`, keyed by method and the spec's route
//! template (e.g. `GET /workload/v1/stacks/{stack_id}/workloads`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};

use crate::state::AppState;

#[derive(Default)]
pub(crate) struct Stats {
    total: AtomicU64,
    routes: Mutex<BTreeMap<String, u64>>,
    statuses: Mutex<BTreeMap<u16, u64>>,
}

/// The spec names PUT's path parameters differently (`{workload.stack_id}`, `{workload.id}`);
/// axum cannot hold two spellings of one path, so the key is translated here.
pub(crate) fn spec_template(method: &http::Method, axum_path: &str) -> String {
    if method == http::Method::PUT
        && axum_path == "/workload/v1/stacks/{stack_id}/workloads/{workload_id}"
    {
        return "/workload/v1/stacks/{workload.stack_id}/workloads/{workload.id}".into();
    }
    axum_path.to_string()
}

impl Stats {
    pub(crate) fn snapshot(&self) -> Value {
        let routes = self.routes.lock().map(|r| r.clone()).unwrap_or_default();
        let statuses: BTreeMap<String, u64> = self
            .statuses
            .lock()
            .map(|s| s.iter().map(|(k, v)| (k.to_string(), *v)).collect())
            .unwrap_or_default();
        json!({"total": self.total.load(Ordering::Relaxed), "routes": routes, "statuses": statuses})
    }

    pub(crate) fn reset(&self) {
        self.total.store(0, Ordering::Relaxed);
        if let Ok(mut r) = self.routes.lock() {
            r.clear();
        }
        if let Ok(mut s) = self.statuses.lock() {
            s.clear();
        }
    }
}

/// Outermost middleware on the API and token routes: counts every call that reached them,
/// including those a fault then answered.
pub(crate) async fn count(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let key = match req.extensions().get::<MatchedPath>() {
        Some(p) => format!(
            "{} {}",
            req.method(),
            spec_template(req.method(), p.as_str())
        ),
        None => format!("{} {}", req.method(), req.uri().path()),
    };
    app.stats.total.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut r) = app.stats.routes.lock() {
        *r.entry(key).or_insert(0) += 1;
    }
    let resp = next.run(req).await;
    if let Ok(mut s) = app.stats.statuses.lock() {
        *s.entry(resp.status().as_u16()).or_insert(0) += 1;
    }
    resp
}
