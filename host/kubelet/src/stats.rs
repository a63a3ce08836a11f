//! `/pods`, `/runningpods/`, `/stats/summary` and `/metrics/resource`, from the daemon's pods
//! and StackPath's instance metrics (CPU cores, memory bytes), in the kubelet's formats.
//!
//! StackPath answers for the whole stack in one metrics call (no `workload_id`), so a
//! collection costs one call whatever the number of pods; it is kept for
//! [`crate::Limits::metrics_window`] and shared by both endpoints and by concurrent scrapes
//! (one collection at a time; the others wait for it and use it).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use stackpath_client::model::{Metrics, MetricsGroupBy, MetricsQuery, MetricsType};
use tokio::time::Instant;

use crate::locator::PodLocator;

/// Usage of one container at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerUsage {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
    pub start: DateTime<Utc>,
    /// Cores in use now.
    pub cpu_cores: f64,
    /// Core-seconds used so far (integrated from the samples; a counter).
    pub cpu_seconds: f64,
    pub memory_bytes: f64,
}

type ContainerKey = (String, String, String);

/// Integrates sampled CPU (cores) into the counter the kubelet reports.
#[derive(Debug, Default)]
struct CpuCounters {
    /// (namespace, pod, container) → (last sample time, core-seconds so far).
    inner: Mutex<HashMap<ContainerKey, (DateTime<Utc>, f64)>>,
}

impl CpuCounters {
    fn advance(&self, key: ContainerKey, now: DateTime<Utc>, cores: f64) -> f64 {
        let Ok(mut m) = self.inner.lock() else {
            return 0.0;
        };
        let e = m.entry(key).or_insert((now, 0.0));
        let dt = (now - e.0).num_milliseconds().max(0) as f64 / 1000.0;
        e.1 += cores * dt;
        e.0 = now;
        e.1
    }

    /// Drops the counters of containers no longer reported.
    fn retain(&self, live: &std::collections::HashSet<ContainerKey>) {
        if let Ok(mut m) = self.inner.lock() {
            m.retain(|k, _| live.contains(k));
        }
    }
}

/// One collection, shared until it is older than the window.
#[derive(Debug, Clone)]
struct Collected {
    at: Instant,
    usage: Arc<Vec<ContainerUsage>>,
    failed: bool,
}

/// The stats handlers' state (cheap to clone).
#[derive(Clone)]
pub(crate) struct Stats(Arc<Inner>);

impl std::ops::Deref for Stats {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

pub(crate) struct Inner {
    locator: Arc<dyn PodLocator>,
    stackpath: stackpath_client::Client,
    node_name: String,
    started: DateTime<Utc>,
    window: Duration,
    cpu: CpuCounters,
    /// The last collection; locked across a collection so that concurrent scrapes make one.
    last: tokio::sync::Mutex<Option<Collected>>,
}

/// How long one StackPath metrics call may take.
const METRICS_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The newest (time, value) of an instance's `cpu` (cores) and `memory` (bytes).
type Samples = (Option<(f64, f64)>, Option<(f64, f64)>);

/// (workload id if labelled, instance name) → its newest samples.
type Latest = HashMap<(Option<String>, String), Samples>;

/// The newest `cpu` and `memory` sample of each instance in a stack-wide answer.
fn latest_by_instance(m: &Metrics) -> Latest {
    let mut out: Latest = HashMap::new();
    for (labels, samples) in m.series() {
        let (Some(name), Some(instance)) = (labels.get("__name__"), labels.get("instance_name"))
        else {
            continue;
        };
        let newest = samples
            .iter()
            .filter_map(|s| Some((s.unix_time.as_deref()?.parse::<f64>().ok()?, s.as_f64()?)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let Some(newest) = newest else { continue };
        let key = (labels.get("workload_id").cloned(), instance.clone());
        let entry = out.entry(key).or_default();
        let slot = match name.as_str() {
            "cpu" => &mut entry.0,
            "memory" => &mut entry.1,
            _ => continue,
        };
        if slot.is_none_or(|(t, _)| newest.0 > t) {
            *slot = Some(newest);
        }
    }
    out
}

/// A pod to report, with where it runs.
struct PodRow {
    namespace: String,
    name: String,
    uid: String,
    start: DateTime<Utc>,
    containers: Vec<String>,
    workload_id: String,
    instance: String,
}

impl Stats {
    pub fn new(
        locator: Arc<dyn PodLocator>,
        stackpath: stackpath_client::Client,
        node_name: String,
        window: Duration,
    ) -> Self {
        Self(Arc::new(Inner {
            locator,
            stackpath,
            node_name,
            started: Utc::now(),
            window,
            cpu: CpuCounters::default(),
            last: tokio::sync::Mutex::new(None),
        }))
    }
}

impl Inner {
    /// Usage of every running container, from the shared collection; the flag says whether
    /// StackPath's answer was missing.
    pub async fn usage(&self) -> (Arc<Vec<ContainerUsage>>, bool) {
        let mut last = self.last.lock().await;
        if let Some(c) = last.as_ref().filter(|c| c.at.elapsed() < self.window) {
            return (c.usage.clone(), c.failed);
        }
        let (usage, failed) = self.collect().await;
        let c = Collected {
            at: Instant::now(),
            usage: Arc::new(usage),
            failed,
        };
        let out = (c.usage.clone(), c.failed);
        *last = Some(c);
        out
    }

    fn rows(&self, now: DateTime<Utc>) -> Vec<PodRow> {
        let mut rows = Vec::new();
        for pod in self.locator.pods() {
            let (Some(ns), Some(name)) =
                (pod.metadata.namespace.clone(), pod.metadata.name.clone())
            else {
                continue;
            };
            let start = pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0.as_second())
                .or_else(|| {
                    pod.metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.as_second())
                })
                .and_then(|s| DateTime::from_timestamp(s, 0))
                .unwrap_or(now);
            let containers: Vec<String> = pod
                .spec
                .as_ref()
                .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
                .unwrap_or_default();
            // One StackPath instance per pod: its usage is shared by the pod's containers.
            let Some(loc) = containers
                .first()
                .and_then(|c| self.locator.locate(&ns, &name, c).ok())
            else {
                continue;
            };
            rows.push(PodRow {
                namespace: ns,
                name,
                uid: pod.metadata.uid.clone().unwrap_or_default(),
                start,
                containers,
                workload_id: loc.workload_id,
                instance: loc.instance_name,
            });
        }
        rows
    }

    /// One stack-wide StackPath call, matched to this node's pods.
    async fn collect(&self) -> (Vec<ContainerUsage>, bool) {
        let now = Utc::now();
        let rows = self.rows(now);
        if rows.is_empty() {
            return (Vec::new(), false);
        }
        let q = MetricsQuery {
            start_date: Some(now - chrono::Duration::minutes(5)),
            end_date: Some(now),
            metrics_type: Some(MetricsType::Instance),
            group_by: Some(MetricsGroupBy::InstanceName),
            ..MetricsQuery::default()
        };
        let latest = match tokio::time::timeout(METRICS_CALL_TIMEOUT, self.stackpath.metrics(&q))
            .await
        {
            Ok(Ok(m)) => latest_by_instance(&m),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "StackPath metrics query failed; pod usage is missing from this scrape");
                return (Vec::new(), true);
            }
            Err(_) => {
                tracing::warn!(timeout = ?METRICS_CALL_TIMEOUT, "StackPath metrics query timed out; pod usage is missing from this scrape");
                return (Vec::new(), true);
            }
        };
        // Series without a workload label are matched by instance name alone.
        let by_name: HashMap<&str, &Samples> = latest
            .iter()
            .filter(|((w, _), _)| w.is_none())
            .map(|((_, i), v)| (i.as_str(), v))
            .collect();
        let mut out = Vec::new();
        let mut live = std::collections::HashSet::new();
        for r in rows {
            let found = latest
                .get(&(Some(r.workload_id.clone()), r.instance.clone()))
                .or_else(|| by_name.get(r.instance.as_str()).copied());
            let Some((Some((_, cpu)), Some((_, mem)))) = found else {
                continue;
            };
            let n = r.containers.len().max(1) as f64;
            for c in r.containers {
                let key = (r.namespace.clone(), r.name.clone(), c.clone());
                live.insert(key.clone());
                let cpu_seconds = self.cpu.advance(key, now, cpu / n);
                out.push(ContainerUsage {
                    namespace: r.namespace.clone(),
                    pod: r.name.clone(),
                    pod_uid: r.uid.clone(),
                    container: c,
                    start: r.start,
                    cpu_cores: cpu / n,
                    cpu_seconds,
                    memory_bytes: mem / n,
                });
            }
        }
        self.cpu.retain(&live);
        (out, false)
    }
}

pub(crate) async fn pods(State(stats): State<Stats>) -> Response {
    let items = stats.locator.pods();
    Json(json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}))
        .into_response()
}

pub(crate) async fn running_pods(State(stats): State<Stats>) -> Response {
    let items: Vec<Pod> = stats
        .locator
        .pods()
        .into_iter()
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|ph| ph == "Running")
        })
        .map(|p| Pod {
            metadata: p.metadata,
            spec: p.spec,
            status: None,
        })
        .collect();
    Json(json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}))
        .into_response()
}

/// The Prometheus text of the kubelet's `/metrics/resource`.
pub fn resource_metrics_text(
    usage: &[ContainerUsage],
    now: DateTime<Utc>,
    scrape_error: bool,
) -> String {
    let ts = now.timestamp_millis();
    let mut s = String::new();
    let label = |u: &ContainerUsage| {
        format!(
            "container=\"{}\",namespace=\"{}\",pod=\"{}\"",
            esc(&u.container),
            esc(&u.namespace),
            esc(&u.pod)
        )
    };
    let _ = writeln!(
        s,
        "# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds"
    );
    let _ = writeln!(s, "# TYPE container_cpu_usage_seconds_total counter");
    for u in usage {
        let _ = writeln!(
            s,
            "container_cpu_usage_seconds_total{{{}}} {} {ts}",
            label(u),
            u.cpu_seconds
        );
    }
    let _ = writeln!(
        s,
        "# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes"
    );
    let _ = writeln!(s, "# TYPE container_memory_working_set_bytes gauge");
    for u in usage {
        let _ = writeln!(
            s,
            "container_memory_working_set_bytes{{{}}} {} {ts}",
            label(u),
            u.memory_bytes
        );
    }
    let _ = writeln!(
        s,
        "# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds"
    );
    let _ = writeln!(s, "# TYPE container_start_time_seconds gauge");
    for u in usage {
        let _ = writeln!(
            s,
            "container_start_time_seconds{{{}}} {} {ts}",
            label(u),
            u.start.timestamp()
        );
    }
    let (node_cpu, node_mem) = usage.iter().fold((0.0, 0.0), |(c, m), u| {
        (c + u.cpu_seconds, m + u.memory_bytes)
    });
    let _ = writeln!(
        s,
        "# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds"
    );
    let _ = writeln!(s, "# TYPE node_cpu_usage_seconds_total counter");
    let _ = writeln!(s, "node_cpu_usage_seconds_total {node_cpu} {ts}");
    let _ = writeln!(
        s,
        "# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes"
    );
    let _ = writeln!(s, "# TYPE node_memory_working_set_bytes gauge");
    let _ = writeln!(s, "node_memory_working_set_bytes {node_mem} {ts}");
    let mut pods: Vec<((String, String), (f64, f64))> = Vec::new();
    for u in usage {
        let key = (u.namespace.clone(), u.pod.clone());
        match pods.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => {
                v.0 += u.cpu_seconds;
                v.1 += u.memory_bytes;
            }
            None => pods.push((key, (u.cpu_seconds, u.memory_bytes))),
        }
    }
    let _ = writeln!(
        s,
        "# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds"
    );
    let _ = writeln!(s, "# TYPE pod_cpu_usage_seconds_total counter");
    for ((ns, p), (c, _)) in &pods {
        let _ = writeln!(
            s,
            "pod_cpu_usage_seconds_total{{namespace=\"{}\",pod=\"{}\"}} {c} {ts}",
            esc(ns),
            esc(p)
        );
    }
    let _ = writeln!(
        s,
        "# HELP pod_memory_working_set_bytes [STABLE] Current working set of the pod in bytes"
    );
    let _ = writeln!(s, "# TYPE pod_memory_working_set_bytes gauge");
    for ((ns, p), (_, m)) in &pods {
        let _ = writeln!(
            s,
            "pod_memory_working_set_bytes{{namespace=\"{}\",pod=\"{}\"}} {m} {ts}",
            esc(ns),
            esc(p)
        );
    }
    let _ = writeln!(
        s,
        "# HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise"
    );
    let _ = writeln!(s, "# TYPE scrape_error gauge");
    let _ = writeln!(s, "scrape_error {}", u8::from(scrape_error));
    s
}

fn esc(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

pub(crate) async fn metrics_resource(State(stats): State<Stats>) -> Response {
    let (usage, failed) = stats.usage().await;
    let body = resource_metrics_text(&usage, Utc::now(), failed);
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

pub(crate) async fn summary(State(stats): State<Stats>) -> Response {
    let (usage, _) = stats.usage().await;
    let now = Utc::now();
    let t = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let stat = |cores: f64, secs: f64, mem: f64| {
        json!({
            "cpu": {"time": t, "usageNanoCores": (cores * 1e9) as u64, "usageCoreNanoSeconds": (secs * 1e9) as u64},
            "memory": {"time": t, "workingSetBytes": mem as u64, "usageBytes": mem as u64},
        })
    };
    let mut pods: Vec<serde_json::Value> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    let (mut nc, mut ns_, mut nm) = (0.0, 0.0, 0.0);
    for u in usage.iter() {
        nc += u.cpu_cores;
        ns_ += u.cpu_seconds;
        nm += u.memory_bytes;
        let key = (u.namespace.clone(), u.pod.clone());
        let i = *index.entry(key).or_insert_with(|| {
            pods.push(json!({
                "podRef": {"name": u.pod, "namespace": u.namespace, "uid": u.pod_uid},
                "startTime": u.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "containers": [],
                "_acc": [0.0, 0.0, 0.0],
            }));
            pods.len() - 1
        });
        let mut c = stat(u.cpu_cores, u.cpu_seconds, u.memory_bytes);
        c["name"] = json!(u.container);
        c["startTime"] = json!(u.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        if let Some(arr) = pods[i]["containers"].as_array_mut() {
            arr.push(c);
        }
        let acc = &mut pods[i]["_acc"];
        acc[0] = json!(acc[0].as_f64().unwrap_or(0.0) + u.cpu_cores);
        acc[1] = json!(acc[1].as_f64().unwrap_or(0.0) + u.cpu_seconds);
        acc[2] = json!(acc[2].as_f64().unwrap_or(0.0) + u.memory_bytes);
    }
    for p in &mut pods {
        let acc = p["_acc"].clone();
        let s = stat(
            acc[0].as_f64().unwrap_or(0.0),
            acc[1].as_f64().unwrap_or(0.0),
            acc[2].as_f64().unwrap_or(0.0),
        );
        p["cpu"] = s["cpu"].clone();
        p["memory"] = s["memory"].clone();
        if let Some(o) = p.as_object_mut() {
            o.remove("_acc");
        }
    }
    let mut node = stat(nc, ns_, nm);
    node["nodeName"] = json!(stats.node_name);
    node["startTime"] = json!(
        stats
            .started
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    Json(json!({"node": node, "pods": pods})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_the_kubelet_series() {
        let now = Utc::now();
        let u = ContainerUsage {
            namespace: "ns".into(),
            pod: "p".into(),
            pod_uid: "u".into(),
            container: "c".into(),
            start: now,
            cpu_cores: 0.5,
            cpu_seconds: 10.0,
            memory_bytes: 1024.0,
        };
        let t = resource_metrics_text(&[u], now, false);
        let ms = now.timestamp_millis();
        assert!(t.contains(&format!("container_cpu_usage_seconds_total{{container=\"c\",namespace=\"ns\",pod=\"p\"}} 10 {ms}")));
        assert!(t.contains(&format!("container_memory_working_set_bytes{{container=\"c\",namespace=\"ns\",pod=\"p\"}} 1024 {ms}")));
        assert!(t.contains("# TYPE node_cpu_usage_seconds_total counter"));
        assert!(t.contains("scrape_error 0"));
    }

    #[test]
    fn cpu_counter_integrates_cores_over_time() {
        let c = CpuCounters::default();
        let k = || ("a".to_string(), "b".to_string(), "c".to_string());
        let t0 = Utc::now();
        assert_eq!(c.advance(k(), t0, 2.0), 0.0);
        let v = c.advance(k(), t0 + chrono::Duration::seconds(10), 2.0);
        assert!((v - 20.0).abs() < 1e-9);
    }
}
