//! `/pods`, `/runningpods/`, `/stats/summary` and `/metrics/resource`, from the daemon's pods
//! and StackPath's instance metrics (CPU cores, memory bytes), in the kubelet's formats.

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
use stackpath_client::model::MetricsQuery;

use crate::state::AppState;

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
pub(crate) struct CpuCounters {
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
}

pub(crate) async fn pods(State(state): State<Arc<AppState>>) -> Response {
    let items = state.locator.pods();
    Json(json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}))
        .into_response()
}

pub(crate) async fn running_pods(State(state): State<Arc<AppState>>) -> Response {
    let items: Vec<Pod> = state
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

/// Collects usage for every running container; the flag says whether any query failed.
pub(crate) async fn collect(state: &AppState) -> (Vec<ContainerUsage>, bool) {
    let now = Utc::now();
    let mut jobs = Vec::new();
    for pod in state.locator.pods() {
        let (Some(ns), Some(name)) = (pod.metadata.namespace.clone(), pod.metadata.name.clone())
        else {
            continue;
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
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
            .and_then(|c| state.locator.locate(&ns, &name, c).ok())
        else {
            continue;
        };
        jobs.push(async move {
            let q = MetricsQuery::instance(
                loc.workload_id.clone(),
                loc.instance_name.clone(),
                now - chrono::Duration::minutes(5),
                now,
            );
            let m =
                tokio::time::timeout(Duration::from_secs(10), state.stackpath.metrics(&q)).await;
            (ns, name, uid, start, containers, m)
        });
    }
    let results = futures::future::join_all(jobs).await;
    let mut out = Vec::new();
    let mut failed = false;
    for (ns, pod, uid, start, containers, m) in results {
        let m = match m {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, %ns, %pod, "StackPath metrics query failed");
                failed = true;
                continue;
            }
            Err(_) => {
                failed = true;
                continue;
            }
        };
        let (Some(cpu), Some(mem)) = (m.latest("cpu"), m.latest("memory")) else {
            continue;
        };
        let n = containers.len().max(1) as f64;
        for c in containers {
            let key = (ns.clone(), pod.clone(), c.clone());
            let cpu_seconds = state.cpu.advance(key, now, cpu / n);
            out.push(ContainerUsage {
                namespace: ns.clone(),
                pod: pod.clone(),
                pod_uid: uid.clone(),
                container: c,
                start,
                cpu_cores: cpu / n,
                cpu_seconds,
                memory_bytes: mem / n,
            });
        }
    }
    (out, failed)
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

pub(crate) async fn metrics_resource(State(state): State<Arc<AppState>>) -> Response {
    let (usage, failed) = collect(&state).await;
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

pub(crate) async fn summary(State(state): State<Arc<AppState>>) -> Response {
    let (usage, _) = collect(&state).await;
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
    for u in &usage {
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
    node["nodeName"] = json!(state.node_name);
    node["startTime"] = json!(
        state
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
