//! The HTTP surface: Workload API routes (spec paths), the token endpoint, and `/_emulator/`.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use http::StatusCode;
use serde_json::{Value, json};

use crate::api_error::{ApiError, Code};
use crate::filter::Filter;
use crate::state::AppState;
use crate::{admin, auth, faults, locations, logs, metrics, stats};

const WORKLOADS: &str = "/workload/v1/stacks/{stack_id}/workloads";
const WORKLOAD: &str = "/workload/v1/stacks/{stack_id}/workloads/{workload_id}";
const INSTANCES: &str = "/workload/v1/stacks/{stack_id}/workloads/{workload_id}/instances";
const INSTANCE: &str =
    "/workload/v1/stacks/{stack_id}/workloads/{workload_id}/instances/{instance_name}";
const LOGS: &str =
    "/workload/v1/stacks/{stack_id}/workloads/{workload_id}/instances/{instance_name}/logs";
const RESTART: &str = "/workload/v1/stacks/{stack_id}/workloads/{workload_id}/instances/{instance_name}/power/restart";
const LOCATIONS: &str = "/workload/v1/locations";
const METRICS: &str = "/workload/v1/stacks/{stack_id}/metrics";

pub(crate) fn router(app: AppState) -> Router {
    let api = Router::new()
        .route(WORKLOADS, get(list_workloads).post(create_workload))
        .route(
            WORKLOAD,
            get(get_workload)
                .put(put_workload)
                .patch(patch_workload)
                .delete(delete_workload),
        )
        .route(INSTANCES, get(list_instances))
        .route(INSTANCE, get(get_instance))
        .route(LOGS, get(logs::handler))
        .route(RESTART, post(restart_instance))
        .route(LOCATIONS, get(list_locations))
        .route(METRICS, get(metrics::handler))
        .route_layer(from_fn_with_state(app.clone(), auth::require_bearer))
        .route_layer(from_fn_with_state(app.clone(), faults::inject))
        .route_layer(from_fn_with_state(app.clone(), stats::count));
    let token = Router::new()
        .route(auth::TOKEN_PATH, post(auth::token))
        .route_layer(from_fn_with_state(app.clone(), faults::inject))
        .route_layer(from_fn_with_state(app.clone(), stats::count));
    Router::new()
        .merge(api)
        .merge(token)
        .merge(admin::router())
        .fallback(fallback)
        .with_state(app)
}

async fn fallback(method: http::Method, uri: http::Uri) -> Response {
    if uri.path().starts_with("/workload/") || uri.path().starts_with("/identity/") {
        ApiError::new(
            Code::Unimplemented,
            format!("{method} {} is not implemented by the emulator", uri.path()),
        )
        .into_response()
    } else {
        ApiError::not_found(format!("no route for {method} {}", uri.path())).into_response()
    }
}

pub(crate) fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid_field("body", format!("the request body is not valid JSON: {e}"))
    })
}

/// A page of `items` (already in cursor order, each with its cursor) and its `pageInfo`.
pub(crate) struct Page {
    pub first: usize,
    pub after: Option<u64>,
    pub filter: Filter,
    /// `page_request.sort_by`: a field (dotted path) and whether descending. When set, the
    /// cursors are positions in the sorted list instead of creation sequence numbers.
    pub sort: Option<(String, bool)>,
}

impl Page {
    pub(crate) fn from_query(q: &HashMap<String, String>) -> Result<Self, ApiError> {
        let first = match q.get("page_request.first").map(String::as_str) {
            None | Some("") => 50,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if n > 0 => n.min(1000),
                _ => {
                    return Err(ApiError::invalid_field(
                        "page_request.first",
                        "must be a positive whole number",
                    ));
                }
            },
        };
        let after = match q.get("page_request.after").map(String::as_str) {
            None | Some("") => None,
            Some(s) => Some(s.parse::<u64>().map_err(|_| {
                ApiError::invalid_field(
                    "page_request.after",
                    "not a cursor this API returned (use pageInfo.endCursor)",
                )
            })?),
        };
        let filter = Filter::parse(
            q.get("page_request.filter")
                .map(String::as_str)
                .unwrap_or(""),
        )
        .map_err(|e| ApiError::invalid_field("page_request.filter", e))?;
        let sort = match q.get("page_request.sort_by").map(|s| s.trim()) {
            None | Some("") => None,
            Some(s) => {
                let (field, desc) = if let Some(f) = s.strip_prefix('-') {
                    (f.trim(), true)
                } else if let Some((f, dir)) = s.split_once(char::is_whitespace) {
                    match dir.trim().to_ascii_lowercase().as_str() {
                        "asc" => (f, false),
                        "desc" => (f, true),
                        _ => {
                            return Err(ApiError::invalid_field(
                                "page_request.sort_by",
                                format!(
                                    "cannot read {s:?}; use a field, optionally followed by asc or desc (e.g. \"name desc\")"
                                ),
                            ));
                        }
                    }
                } else {
                    (s, false)
                };
                Some((field.to_string(), desc))
            }
        };
        Ok(Self {
            first,
            after,
            filter,
            sort,
        })
    }

    /// Sorts `items` by the requested field (missing values first, ties in the given order)
    /// and numbers them by position; without `sort_by` they are numbered as they come.
    pub(crate) fn sorted(&self, mut items: Vec<Value>) -> Vec<(u64, Value)> {
        if let Some((field, desc)) = &self.sort {
            let key = |v: &Value| match crate::filter::lookup(v, field) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            items.sort_by(|a, b| {
                let o = key(a).cmp(&key(b));
                if *desc { o.reverse() } else { o }
            });
        }
        items
            .into_iter()
            .enumerate()
            .map(|(n, v)| (n as u64, v))
            .collect()
    }

    /// `items` are `(cursor, value)` in cursor order, already filtered.
    pub(crate) fn render(&self, items: Vec<(u64, Value)>, total: usize) -> Value {
        let has_prev = self.after.is_some();
        let mut it = items
            .into_iter()
            .filter(|(c, _)| self.after.is_none_or(|a| *c > a))
            .peekable();
        let mut results = Vec::new();
        let mut start = None;
        let mut end = None;
        while results.len() < self.first {
            match it.next() {
                Some((c, v)) => {
                    start.get_or_insert(c);
                    end = Some(c);
                    results.push(v);
                }
                None => break,
            }
        }
        let has_next = it.peek().is_some();
        let mut info = json!({
            "totalCount": total.to_string(),
            "hasPreviousPage": has_prev,
            "hasNextPage": has_next,
        });
        if let (Some(s), Some(e)) = (start, end) {
            info["startCursor"] = json!(s.to_string());
            info["endCursor"] = json!(e.to_string());
        }
        json!({"pageInfo": info, "results": results})
    }
}

async fn list_workloads(
    State(app): State<AppState>,
    Path(stack_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    app.check_stack(&stack_id)?;
    let page = Page::from_query(&q)?;
    // Walk in cursor order from the cursor on; only the page is cloned.
    let store = app.lock();
    let Some(st) = store.stacks.get(&stack_id) else {
        return Ok(Json(page.render(Vec::new(), 0)));
    };
    let matches = |id: &String| {
        st.workloads
            .get(id)
            .filter(|w| page.filter.matches(&w.body))
    };
    if page.sort.is_some() {
        let all: Vec<Value> = st
            .order
            .values()
            .filter_map(|id| matches(id).map(|w| app.render_workload(w)))
            .collect();
        drop(store);
        let total = all.len();
        return Ok(Json(page.render(page.sorted(all), total)));
    }
    let total = st.order.values().filter(|id| matches(id).is_some()).count();
    let start = page.after.map(|a| a + 1).unwrap_or(0);
    let mut items = Vec::with_capacity(page.first + 1);
    for (seq, id) in st.order.range(start..) {
        if let Some(w) = matches(id) {
            items.push((*seq, app.render_workload(w)));
            if items.len() > page.first {
                break;
            }
        }
    }
    drop(store);
    Ok(Json(page.render(items, total)))
}

async fn create_workload(
    State(app): State<AppState>,
    Path(stack_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    app.check_stack(&stack_id)?;
    let req = parse_body(&body)?;
    let w = app.create_workload(&stack_id, &req)?;
    Ok(Json(json!({"workload": w})))
}

async fn get_workload(
    State(app): State<AppState>,
    Path((stack_id, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    app.check_stack(&stack_id)?;
    Ok(Json(json!({"workload": app.get_workload(&stack_id, &id)?})))
}

async fn put_workload(
    State(app): State<AppState>,
    Path((stack_id, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    app.check_stack(&stack_id)?;
    let req = parse_body(&body)?;
    let w = app.update_workload(&stack_id, &id, &req, false)?;
    Ok(Json(json!({"workload": w})))
}

async fn patch_workload(
    State(app): State<AppState>,
    Path((stack_id, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    app.check_stack(&stack_id)?;
    let req = parse_body(&body)?;
    let w = app.update_workload(&stack_id, &id, &req, true)?;
    Ok(Json(json!({"workload": w})))
}

async fn delete_workload(
    State(app): State<AppState>,
    Path((stack_id, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    app.check_stack(&stack_id)?;
    app.delete_workload(&stack_id, &id)?;
    Ok(no_content())
}

async fn list_instances(
    State(app): State<AppState>,
    Path((stack_id, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    app.check_stack(&stack_id)?;
    let page = Page::from_query(&q)?;
    let items = page.sorted(
        app.list_instances(&stack_id, &id)?
            .into_iter()
            .filter(|i| page.filter.matches(i))
            .collect(),
    );
    let total = items.len();
    Ok(Json(page.render(items, total)))
}

async fn get_instance(
    State(app): State<AppState>,
    Path((stack_id, id, name)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    app.check_stack(&stack_id)?;
    Ok(Json(
        json!({"instance": app.get_instance(&stack_id, &id, &name)?}),
    ))
}

async fn restart_instance(
    State(app): State<AppState>,
    Path((stack_id, id, name)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    app.check_stack(&stack_id)?;
    app.act_on_instances(Some(&stack_id), &id, Some(&name), false)?;
    Ok(no_content())
}

/// 204 with the API's declared media type (the spec's `produces` is application/json).
fn no_content() -> Response {
    (
        StatusCode::NO_CONTENT,
        [(http::header::CONTENT_TYPE, "application/json")],
    )
        .into_response()
}

async fn list_locations(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let page = Page::from_query(&q)?;
    let items = page.sorted(
        app.config
            .city_codes
            .iter()
            .map(|c| locations::location(c))
            .filter(|l| page.filter.matches(l))
            .collect(),
    );
    let total = items.len();
    Ok(Json(page.render(items, total)))
}
