//! `/_emulator/` admin endpoints (no token needed; never on the real API's paths):
//! stats, reset, fault settings, instance failures, health.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Json;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::faults::Faults;
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/_emulator/health", get(|| async { "ok" }))
        .route("/_emulator/stats", get(stats))
        .route("/_emulator/reset", post(reset))
        .route("/_emulator/faults", get(get_faults).put(put_faults))
        .route("/_emulator/instances/{workload_id}/fail", post(fail))
        .route("/_emulator/instances/{workload_id}/restart", post(restart))
}

async fn stats(State(app): State<AppState>) -> Json<Value> {
    Json(app.stats.snapshot())
}

/// Resets the call counters (state and faults are left alone).
async fn reset(State(app): State<AppState>) -> Json<Value> {
    app.stats.reset();
    Json(app.stats.snapshot())
}

async fn get_faults(State(app): State<AppState>) -> Json<Faults> {
    Json(app.faults.get())
}

async fn put_faults(State(app): State<AppState>, body: Bytes) -> Result<Json<Faults>, ApiError> {
    let f: Faults = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid_field("faults", format!("not a valid fault settings object: {e}"))
    })?;
    f.check()
        .map_err(|e| ApiError::invalid_field("faults", e))?;
    app.faults.set(f);
    Ok(Json(app.faults.get()))
}

/// `?instance=<name>` limits the action to one instance; default: all of the workload's.
async fn fail(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let n = app.act_on_instances(None, &id, q.get("instance").map(String::as_str), true)?;
    Ok(Json(json!({"failed": n})))
}

async fn restart(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let n = app.act_on_instances(None, &id, q.get("instance").map(String::as_str), false)?;
    Ok(Json(json!({"restarted": n})))
}
