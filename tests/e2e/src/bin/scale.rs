//! Scale benchmark of `vk-stackpath run` (issue 13's figures), printing them:
//!
//!   cargo run -p e2e-tests --bin scale -- [--pods 1000] [--latency-ms 50] [--steady-secs 120] [--scheduler]
//!
//! Real control plane, emulator with added latency, the daemon as built (debug unless the
//! target dir holds a release build first: the figures are pessimistic). Reports: time until
//! every pod is Running, status lag (instance start → pod Running as seen by a watcher),
//! steady-state StackPath calls per pod per minute from the emulator's counters, daemon RSS.

use std::time::{Duration, Instant};

use e2e::Env;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use stackpath_emulator::Faults;

struct Args {
    pods: usize,
    latency_ms: u64,
    steady_secs: u64,
    scheduler: bool,
}

fn args() -> Args {
    let mut a = Args {
        pods: 1000,
        latency_ms: 50,
        steady_secs: 120,
        scheduler: false,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let next = |i: usize| {
            v.get(i + 1)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match v[i].as_str() {
            "--pods" => a.pods = next(i) as usize,
            "--latency-ms" => a.latency_ms = next(i),
            "--steady-secs" => a.steady_secs = next(i),
            "--scheduler" => {
                a.scheduler = true;
                i -= 1;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

async fn emulator_total(env: &Env) -> anyhow::Result<u64> {
    let url = format!("{}/_emulator/stats", env.emulator.base_url);
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await?;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /_emulator/stats HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("{}");
    let v: serde_json::Value = serde_json::from_str(body)?;
    Ok(v["total"].as_u64().unwrap_or(0))
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = args();
    let env = Env::start("scale").await?;
    let daemon = env.start_daemon().await?;
    env.emulator.set_faults(Faults {
        latency_ms: a.latency_ms,
        ..Faults::default()
    });
    let pods = env.pods();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(50));
    for i in 0..a.pods {
        let pods = pods.clone();
        let node = env.node.clone();
        let sem = sem.clone();
        let scheduler = a.scheduler;
        tasks.spawn(async move {
            let _permit = sem.acquire().await;
            let placement = if scheduler {
                format!(r#""nodeSelector": {{"kubernetes.io/hostname": "{node}"}}"#)
            } else {
                format!(r#""nodeName": "{node}""#)
            };
            let pod: Pod = serde_json::from_str(&format!(
                r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "s{i}"}},
                "spec": {{ {placement}, "tolerations": [{{"key": "virtual-kubelet.io/provider", "operator": "Exists"}}],
                "containers": [{{"name": "app", "image": "nginx:1.27"}}]}}}}"#
            ))
            .expect("pod json");
            pods.create(&PostParams::default(), &pod).await.map(|_| ())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let created = started.elapsed();
    // Watch convergence; record when each pod was first seen Running.
    let mut seen: std::collections::HashMap<String, Instant> = Default::default();
    let mut lags = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen.len() < a.pods && Instant::now() < deadline {
        for p in pods.list(&ListParams::default()).await?.items {
            let name = p.metadata.name.clone().unwrap_or_default();
            let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if running && !seen.contains_key(&name) {
                seen.insert(name, Instant::now());
                // Lag: the instance's start (whole seconds) → now.
                if let Some(t) = p
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .and_then(|c| {
                        c.first()?
                            .state
                            .as_ref()?
                            .running
                            .as_ref()?
                            .started_at
                            .clone()
                    })
                {
                    let now = k8s_openapi::jiff::Timestamp::now();
                    lags.push((now.as_millisecond() - t.0.as_millisecond()) as f64 / 1000.0);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let all_running = started.elapsed();
    println!(
        "pods: {} ({}), emulator latency {} ms",
        a.pods,
        if a.scheduler {
            "through the scheduler"
        } else {
            "spec.nodeName set"
        },
        a.latency_ms
    );
    println!("created in Kubernetes: {created:.1?}");
    println!(
        "all Running: {all_running:.1?} ({} of {} Running)",
        seen.len(),
        a.pods
    );
    println!(
        "status lag instance start -> pod Running (s, 1 s resolution of startedAt): p50 {:.2} p90 {:.2}",
        percentile(&mut lags, 0.5),
        percentile(&mut lags, 0.9)
    );
    println!(
        "daemon RSS after convergence: {:.0} MB",
        rss_mb(daemon.pid())
    );
    // Settle, then count calls over the steady window.
    tokio::time::sleep(Duration::from_secs(70)).await;
    let before = emulator_total(&env).await?;
    let cpu_before = daemon.cpu_seconds();
    tokio::time::sleep(Duration::from_secs(a.steady_secs)).await;
    let calls = emulator_total(&env).await? - before;
    let cpu = daemon.cpu_seconds() - cpu_before;
    let per_pod_min = calls as f64 / a.pods as f64 / (a.steady_secs as f64 / 60.0);
    println!(
        "steady state over {} s: {calls} StackPath calls = {per_pod_min:.2} per pod per minute (Go provider: 12)",
        a.steady_secs
    );
    println!(
        "daemon CPU at steady state: {:.1}% of one core; RSS {:.0} MB",
        cpu / a.steady_secs as f64 * 100.0,
        rss_mb(daemon.pid())
    );
    Ok(())
}
