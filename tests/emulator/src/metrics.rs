//! `GET /workload/v1/stacks/{stack_id}/metrics`: plausible series in the `prometheusMetrics`
//! shape, for one instance, one workload (by id or slug) or the whole stack ("usage metrics for
//! all workloads in a stack, a specific workload, or a specific instance in a workload"). The
//! route does not page (the spec gives it no `page_request`): one answer holds every series.
//!
//! Values are a deterministic function of instance, container and time, so repeated calls
//! agree. type=INSTANCE gives `cpu` (cores) and `memory` (bytes); type=BANDWIDTH (the spec's
//! default) gives `receive_bytes` and `transmit_bytes`. Every series is labelled
//! `{"__name__", "workload_id", "instance_name"}`; `grouping=container_name` splits INSTANCE
//! series per container (adding a `container_name` label; the containers' values sum to the
//! instance's), and `grouping` naming fewer labels sums over the rest, as Prometheus' `sum by`.
//!
//! Per the spec, `granularity`, `pop` and `region` "do not apply when retrieving INSTANCE type
//! metrics": INSTANCE series have one sample a minute whatever the granularity.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::{Path, Query as QueryParams, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::api_error::ApiError;
use crate::state::AppState;

/// The label names a series can carry, in the order they are written.
pub(crate) const LABEL_WORKLOAD: &str = "workload_id";
pub(crate) const LABEL_INSTANCE: &str = "instance_name";
pub(crate) const LABEL_CONTAINER: &str = "container_name";
const LABELS: [&str; 3] = [LABEL_WORKLOAD, LABEL_INSTANCE, LABEL_CONTAINER];

/// Points per series are capped so a wide window at a fine step cannot build gigabytes.
const MAX_POINTS: i64 = 2000;
/// INSTANCE metrics ignore `granularity` (spec); one sample a minute, as a scrape would give.
const INSTANCE_STEP_SECS: i64 = 60;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Bandwidth,
    Instance,
}

pub(crate) struct Query {
    pub kind: Kind,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub step_secs: i64,
    /// Which of [`LABELS`] the series are grouped by (kept in that order).
    pub group: Vec<&'static str>,
}

/// One instance the answer covers.
pub(crate) struct Subject {
    pub workload_id: String,
    pub instance: String,
    /// Memory of the instance size, in bytes.
    pub mem_limit: f64,
    /// Container names (sorted), for per-container series.
    pub containers: Vec<String>,
}

fn granularity_step(granularity: &str) -> Result<i64, String> {
    Ok(match granularity {
        "" | "DEFAULT" | "PT5M" => 300,
        "PT1M" => 60,
        "PT1H" => 3600,
        "P1D" => 86400,
        other => {
            return Err(format!(
                "unknown granularity {other:?}; use DEFAULT, PT1M, PT5M, PT1H or P1D"
            ));
        }
    })
}

const REGIONS: [&str; 13] = [
    "ALL",
    "LOCAL_NODE",
    "LOCAL_POP",
    "NORTH_AMERICA",
    "EUROPE",
    "ASIA",
    "OCEANIA",
    "SOUTH_AMERICA",
    "MARKETPLACE",
    "INTERNAL",
    "INTERNET",
    "AFRICA",
    "MIDDLE_EAST",
];

fn hash(s: &str, t: i64, salt: u64) -> f64 {
    // FNV-1a over name, time and salt: cheap and stable.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
    for b in s.bytes().chain(t.to_le_bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    (h % 10_000) as f64 / 10_000.0
}

/// A container's share of its instance's usage: fixed per (instance, container), summing to 1.
fn shares(instance: &str, containers: &[String]) -> Vec<f64> {
    let w: Vec<f64> = containers
        .iter()
        .map(|c| 0.5 + hash(&format!("{instance}/{c}"), 0, 7))
        .collect();
    let total: f64 = w.iter().sum();
    w.into_iter().map(|x| x / total).collect()
}

fn metric_names(kind: Kind) -> [&'static str; 2] {
    match kind {
        Kind::Instance => ["cpu", "memory"],
        Kind::Bandwidth => ["receive_bytes", "transmit_bytes"],
    }
}

/// The instance-level value of metric `k` at `t`.
fn value(kind: Kind, k: usize, s: &Subject, t: i64) -> f64 {
    let r = hash(&s.instance, t, k as u64);
    match (kind, k) {
        (Kind::Instance, 0) => 0.02 + 0.3 * r,
        (Kind::Instance, _) => s.mem_limit * (0.15 + 0.2 * r),
        (Kind::Bandwidth, _) => 1_000.0 + 500_000.0 * r,
    }
}

fn format_value(kind: Kind, k: usize, v: f64) -> String {
    if kind == Kind::Instance && k == 0 {
        format!("{v:.4}")
    } else {
        format!("{v:.0}")
    }
}

fn push_json_str(out: &mut String, s: &str) {
    // serde_json's escaping, without building a Value.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

/// The `prometheusMetrics` JSON text for `subjects`, written directly: a stack-wide answer
/// over thousands of instances must not build a `Value` tree per sample.
pub(crate) fn render(q: &Query, subjects: &[Subject]) -> String {
    let first = q.start.timestamp() - q.start.timestamp().rem_euclid(q.step_secs);
    let points = ((q.end.timestamp() - first) / q.step_secs).clamp(0, MAX_POINTS);
    let times: Vec<i64> = (0..=points).map(|n| first + n * q.step_secs).collect();
    let per_container = q.group.contains(&LABEL_CONTAINER);
    // Leaf series: (label values in LABELS order, metric index, samples). Grouped by the
    // requested labels; with the default grouping every leaf is its own group.
    let mut groups: BTreeMap<(usize, Vec<&str>), Vec<f64>> = BTreeMap::new();
    let mut order: Vec<(usize, Vec<&str>)> = Vec::new();
    for s in subjects {
        let leaves: Vec<(Option<&str>, f64)> = if per_container && !s.containers.is_empty() {
            s.containers
                .iter()
                .map(String::as_str)
                .zip(shares(&s.instance, &s.containers))
                .map(|(c, f)| (Some(c), f))
                .collect()
        } else {
            vec![(None, 1.0)]
        };
        for k in 0..2 {
            let base: Vec<f64> = times.iter().map(|t| value(q.kind, k, s, *t)).collect();
            for (container, share) in &leaves {
                let labels: Vec<&str> = q
                    .group
                    .iter()
                    .map(|l| match *l {
                        LABEL_WORKLOAD => s.workload_id.as_str(),
                        LABEL_INSTANCE => s.instance.as_str(),
                        _ => container.unwrap_or(""),
                    })
                    .collect();
                let key = (k, labels);
                match groups.get_mut(&key) {
                    Some(acc) => {
                        for (a, b) in acc.iter_mut().zip(&base) {
                            *a += b * share;
                        }
                    }
                    None => {
                        order.push(key.clone());
                        groups.insert(key, base.iter().map(|b| b * share).collect());
                    }
                }
            }
        }
    }
    let names = metric_names(q.kind);
    let mut out = String::with_capacity(64 + order.len() * (120 + times.len() * 48));
    out.push_str(r#"{"status":"SUCCESS","data":{"matrix":{"results":["#);
    for (n, key) in order.iter().enumerate() {
        let Some(values) = groups.get(key) else {
            continue;
        };
        if n > 0 {
            out.push(',');
        }
        out.push_str(r#"{"metric":{"__name__":"#);
        push_json_str(&mut out, names[key.0]);
        for (label, v) in q.group.iter().zip(&key.1) {
            out.push(',');
            push_json_str(&mut out, label);
            out.push(':');
            push_json_str(&mut out, v);
        }
        out.push_str(r#"},"values":["#);
        for (i, (t, v)) in times.iter().zip(values).enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                r#"{{"unixTime":"{t}","value":"{}"}}"#,
                format_value(q.kind, key.0, *v)
            );
        }
        out.push_str("]}");
    }
    out.push_str("]}}}");
    out
}

/// Bytes in a memory quantity like `2Gi` (instance sizes only use Gi).
pub(crate) fn memory_bytes(q: &str) -> f64 {
    let (num, mult) = if let Some(n) = q.strip_suffix("Gi") {
        (n, 1024.0 * 1024.0 * 1024.0)
    } else if let Some(n) = q.strip_suffix("Mi") {
        (n, 1024.0 * 1024.0)
    } else {
        (q, 1.0)
    };
    num.parse::<f64>().unwrap_or(2.0) * mult
}

fn parse_time(q: &[(String, String)], k: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    match q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()) {
        None | Some("") => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|d| Some(d.with_timezone(&Utc)))
            .map_err(|_| ApiError::invalid_field(k, "must be an RFC 3339 date-time")),
    }
}

/// Parses the spec's query parameters (all optional) into a query.
pub(crate) fn parse_query(q: &[(String, String)], now: DateTime<Utc>) -> Result<Query, ApiError> {
    let get = |k: &str| {
        q.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let end = parse_time(q, "end_date")?.unwrap_or(now);
    let start = parse_time(q, "start_date")?.unwrap_or(end - chrono::Duration::hours(1));
    if start > end {
        return Err(ApiError::invalid_field(
            "start_date",
            "must not be after end_date",
        ));
    }
    let kind = match get("type").unwrap_or("BANDWIDTH") {
        "BANDWIDTH" => Kind::Bandwidth,
        "INSTANCE" => Kind::Instance,
        other => {
            return Err(ApiError::invalid_field(
                "type",
                format!("unknown metrics type {other:?}; use INSTANCE or BANDWIDTH"),
            ));
        }
    };
    // Validated for both types (an unknown enum value is a 400 either way), applied to
    // BANDWIDTH only.
    let step = granularity_step(get("granularity").unwrap_or(""))
        .map_err(|e| ApiError::invalid_field("granularity", e))?;
    let step_secs = match kind {
        Kind::Bandwidth => step,
        Kind::Instance => INSTANCE_STEP_SECS,
    };
    if let Some(r) = get("region")
        && !REGIONS.contains(&r)
    {
        return Err(ApiError::invalid_field(
            "region",
            format!("unknown region {r:?}; use one of {}", REGIONS.join(", ")),
        ));
    }
    match get("group_by") {
        None | Some("NONE") | Some("INSTANCE_NAME") => {}
        Some(other) => {
            return Err(ApiError::invalid_field(
                "group_by",
                format!("unknown group_by {other:?}; use NONE or INSTANCE_NAME"),
            ));
        }
    }
    let asked: Vec<&str> = q
        .iter()
        .filter(|(n, v)| n == "grouping" && !v.is_empty())
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let group: Vec<&'static str> = if asked.is_empty() {
        vec![LABEL_WORKLOAD, LABEL_INSTANCE]
    } else {
        for a in &asked {
            if !LABELS.contains(a) {
                return Err(ApiError::invalid_field(
                    "grouping",
                    format!(
                        "cannot group by {a:?}; the labels are {}",
                        LABELS.join(", ")
                    ),
                ));
            }
        }
        LABELS
            .iter()
            .copied()
            .filter(|l| asked.contains(l))
            .collect()
    };
    if kind == Kind::Bandwidth && group.contains(&LABEL_CONTAINER) {
        return Err(ApiError::invalid_field(
            "grouping",
            "container_name applies to INSTANCE metrics only: an instance's containers share its network",
        ));
    }
    Ok(Query {
        kind,
        start,
        end,
        step_secs,
        group,
    })
}

pub(crate) async fn handler(
    State(app): State<AppState>,
    Path(stack_id): Path<String>,
    QueryParams(q): QueryParams<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    app.check_stack(&stack_id)?;
    let query = parse_query(&q, Utc::now())?;
    let get = |k: &str| {
        q.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let instance = get("instance_name");
    // "A StackPath POP to filter traffic metrics for": the instance's city code here.
    let pop = get("pop").filter(|_| query.kind == Kind::Bandwidth);
    let mut subjects = Vec::new();
    {
        let store = app.lock();
        if let Some(st) = store.stacks.get(&stack_id) {
            let picked: Box<dyn Iterator<Item = &crate::model::WorkloadRec>> =
                match get("workload_id") {
                    Some(r) => Box::new(st.get(r).into_iter()),
                    None => Box::new(st.workloads.values()),
                };
            for w in picked {
                let mem = w
                    .body
                    .pointer("/spec/containers")
                    .and_then(Value::as_object)
                    .and_then(|m| m.values().next())
                    .and_then(|c| c.pointer("/resources/requests/memory"))
                    .and_then(Value::as_str)
                    .map(memory_bytes)
                    .unwrap_or(2.0 * 1024.0 * 1024.0 * 1024.0);
                let containers = crate::model::container_names(&w.body, "containers");
                let wid = w.id();
                for i in &w.instances {
                    if instance.is_some_and(|x| x != i.name)
                        || pop.is_some_and(|p| !p.eq_ignore_ascii_case(&i.city))
                    {
                        continue;
                    }
                    subjects.push(Subject {
                        workload_id: wid.clone(),
                        instance: i.name.clone(),
                        mem_limit: mem,
                        containers: containers.clone(),
                    });
                }
            }
        }
    }
    subjects.sort_by(|a, b| (&a.workload_id, &a.instance).cmp(&(&b.workload_id, &b.instance)));
    let body = render(&query, &subjects);
    Ok(([(http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(w: &str, i: &str, containers: &[&str]) -> Subject {
        Subject {
            workload_id: w.into(),
            instance: i.into(),
            mem_limit: 2.0 * 1024.0 * 1024.0 * 1024.0,
            containers: containers.iter().map(|c| c.to_string()).collect(),
        }
    }

    fn query(group: &[&'static str]) -> Query {
        let end = DateTime::parse_from_rfc3339("2024-01-01T01:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        Query {
            kind: Kind::Instance,
            start: end - chrono::Duration::minutes(5),
            end,
            step_secs: 60,
            group: group.to_vec(),
        }
    }

    fn series(text: &str) -> Vec<(Value, Vec<f64>)> {
        let v: Value = serde_json::from_str(text).expect("valid JSON");
        v["data"]["matrix"]["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["metric"].clone(),
                    r["values"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x["value"].as_str().unwrap().parse().unwrap())
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn container_series_sum_to_the_instance_and_grouping_sums_over_the_rest() {
        let subjects = [
            subject("w1", "a-0", &["app", "side"]),
            subject("w1", "a-1", &["app", "side"]),
        ];
        let by_instance = series(&render(
            &query(&[LABEL_WORKLOAD, LABEL_INSTANCE]),
            &subjects,
        ));
        assert_eq!(by_instance.len(), 4);
        assert_eq!(by_instance[0].1.len(), 6, "5 minutes at one a minute");
        let by_container = series(&render(&query(&LABELS), &subjects));
        assert_eq!(by_container.len(), 8);
        let cpu_a0: Vec<&(Value, Vec<f64>)> = by_container
            .iter()
            .filter(|(m, _)| m["__name__"] == "cpu" && m["instance_name"] == "a-0")
            .collect();
        assert_eq!(cpu_a0.len(), 2);
        let total = cpu_a0[0].1[0] + cpu_a0[1].1[0];
        assert!((total - by_instance[0].1[0]).abs() < 0.001, "{total}");
        let by_workload = series(&render(&query(&[LABEL_WORKLOAD]), &subjects));
        assert_eq!(by_workload.len(), 2, "one cpu and one memory series");
        assert!(by_workload[0].0.get(LABEL_INSTANCE).is_none());
    }
}
