//! Scale benchmark of `vk-stackpath run` (issue 13's figures), printing them:
//!
//!   E2E_DAEMON_LOG=info cargo run -p e2e-tests --bin scale -- \
//!       [--pods 1000] [--latency-ms 50] [--steady-secs 120] [--scheduler] [--metrics-server]
//!       [--daemon-arg ARG]...
//!
//! Real control plane, emulator with added latency on every API call, the daemon as the tests
//! build it (a debug build: the CPU and memory figures are pessimistic), or the binary named by
//! `E2E_DAEMON_BIN` (e.g. after `cargo build --release -p vk-stackpath`). Reports:
//! - time from the first create until every pod is Running (seen by a watch);
//! - status lag: the emulator's instance turning RUNNING (its `scheduledAt` plus the
//!   emulator's STARTING delay, microsecond timestamps) → the watch seeing the pod Running;
//! - steady-state StackPath calls per pod per minute, from the emulator's own counters (with
//!   `--metrics-server`, on a control plane of its own where metrics-server scrapes the node
//!   every 15 s, as in most clusters; metrics calls per scrape interval printed too);
//! - daemon RSS and CPU.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use e2e::Env;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use stackpath_emulator::Faults;

struct Args {
    pods: usize,
    latency_ms: u64,
    steady_secs: u64,
    scheduler: bool,
    metrics_server: bool,
    daemon_args: Vec<String>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        pods: 1000,
        latency_ms: 50,
        steady_secs: 120,
        scheduler: false,
        metrics_server: false,
        daemon_args: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--pods" => a.pods = value()?.parse()?,
            "--latency-ms" => a.latency_ms = value()?.parse()?,
            "--steady-secs" => a.steady_secs = value()?.parse()?,
            "--daemon-arg" => a.daemon_args.push(value()?),
            "--scheduler" => a.scheduler = true,
            "--metrics-server" => a.metrics_server = true,
            other => bail!(
                "unknown argument {other}; see the usage at the top of tests/e2e/src/bin/scale.rs"
            ),
        }
    }
    Ok(a)
}

fn stats_total(env: &Env) -> u64 {
    env.emulator.stats()["total"].as_u64().unwrap_or(0)
}

fn routes(env: &Env) -> HashMap<String, u64> {
    serde_json::from_value(env.emulator.stats()["routes"].clone()).unwrap_or_default()
}

fn pod_json(i: usize, node: &str, scheduler: bool) -> anyhow::Result<Pod> {
    let placement = if scheduler {
        format!(r#""nodeSelector": {{"kubernetes.io/hostname": "{node}"}}"#)
    } else {
        format!(r#""nodeName": "{node}""#)
    };
    Ok(serde_json::from_str(&format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "s{i}"}},
        "spec": {{ {placement}, "tolerations": [{{"key": "virtual-kubelet.io/provider", "operator": "Exists"}}],
        "containers": [{{"name": "app", "image": "nginx:1.27"}}]}}}}"#
    ))?)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let env = if a.metrics_server {
        let cluster: &'static local_cluster::Cluster = Box::leak(Box::new(
            tokio::task::spawn_blocking(|| {
                // metrics-server authenticates to kubelets with a cluster-CA client
                // certificate, which the daemon trusts only on a kubeadm-style cluster.
                local_cluster::Cluster::builder()
                    .with_metrics_server(true)
                    .kubeadm_kubelet_client(true)
                    .start()
            })
            .await??,
        ));
        Env::start_on("scale", cluster, e2e::emulator_config()).await?
    } else {
        Env::start("scale").await?
    };
    let daemon_args = a.daemon_args.clone();
    let daemon = env
        .start_daemon_with(&env.node.clone(), |c| {
            c.args(&daemon_args);
        })
        .await?;
    env.emulator.set_faults(Faults {
        latency_ms: a.latency_ms,
        ..Faults::default()
    });
    let pods = env.pods();

    // When each pod was first seen Running, from a watch (as a user's `kubectl get -w` would).
    let (running, watch) = e2e::first_seen_running(pods.clone(), SystemTime::now);

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    for i in 0..a.pods {
        let pods = pods.clone();
        let pod = pod_json(i, &env.node, a.scheduler)?;
        let sem = sem.clone();
        tasks.spawn(async move {
            let _permit = sem.acquire().await;
            pods.create(&PostParams::default(), &pod).await.map(|_| ())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let created = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600 + a.pods as u64 / 10);
    let mut last_report = Instant::now();
    loop {
        let n = running.lock().unwrap().len();
        if n >= a.pods {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "only {n} of {} pods Running after {:?}",
                a.pods,
                started.elapsed()
            );
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!("  {:>5.0?}: {n} Running", started.elapsed());
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_running = started.elapsed();
    let rss_converged = e2e::rss_mb(daemon.pid());
    let calls_converge = stats_total(&env);

    // Status lag: per pod, the instance's RUNNING moment at the emulator → seen Running.
    let starting = e2e::emulator_config().delays.starting;
    // Reading every workload's instances back is measurement, not load: no client-side limit.
    let client = {
        let mut config = stackpath_client::Config::new(
            &env.emulator.base_url,
            e2e::STACK,
            e2e::CLIENT_ID,
            e2e::CLIENT_SECRET,
        )?;
        config.rate_limit = None;
        stackpath_client::Client::new(config)?
    };
    let workloads = env.workloads().await?;
    let mut lags = Vec::new();
    let seen = running.lock().unwrap().clone();
    let mut list = futures::stream::iter(workloads.iter().map(|w| {
        let client = client.clone();
        async move {
            let id = w.id.clone().unwrap_or_default();
            let pod = w
                .metadata
                .as_ref()
                .and_then(|m| m.labels.get("vk-pod-name").cloned())
                .unwrap_or_default();
            (pod, client.list_all_instances(&id).await)
        }
    }))
    .buffer_unordered(32);
    while let Some((pod, instances)) = list.next().await {
        let Some(at) = instances?
            .first()
            .and_then(|i| i.scheduled_at)
            .map(|t| SystemTime::from(t) + starting)
        else {
            continue;
        };
        if let Some(seen_at) = seen.get(&pod) {
            let lag = match seen_at.duration_since(at) {
                Ok(d) => d.as_secs_f64(),
                Err(e) => -e.duration().as_secs_f64(),
            };
            lags.push(lag);
        }
    }
    drop(list);

    println!(
        "pods: {} ({}), emulator latency {} ms per call, daemon flags {:?}",
        a.pods,
        if a.scheduler {
            "through the scheduler"
        } else {
            "spec.nodeName set"
        },
        a.latency_ms,
        a.daemon_args
    );
    println!("created in Kubernetes: {created:.1?}");
    println!("all Running (from the first create): {all_running:.1?}");
    println!(
        "StackPath calls until converged: {calls_converge} ({:.2} per pod)",
        calls_converge as f64 / a.pods as f64
    );
    println!(
        "status lag, instance RUNNING at the emulator -> pod Running in a watch ({} pods): \
         p50 {:.2} s, p90 {:.2} s, max {:.2} s",
        lags.len(),
        e2e::percentile(&mut lags, 0.5),
        e2e::percentile(&mut lags, 0.9),
        e2e::percentile(&mut lags, 1.0)
    );
    println!("daemon RSS when converged: {rss_converged:.0} MB");

    // Let every pod's polling settle (intervals double up to 60 s), then count.
    tokio::time::sleep(Duration::from_secs(150)).await;
    let before = stats_total(&env);
    let routes_before = routes(&env);
    let cpu_before = daemon.cpu_seconds();
    tokio::time::sleep(Duration::from_secs(a.steady_secs)).await;
    let calls = stats_total(&env) - before;
    let cpu = daemon.cpu_seconds() - cpu_before;
    let per_pod_min = calls as f64 / a.pods as f64 / (a.steady_secs as f64 / 60.0);
    println!(
        "steady state over {} s: {calls} StackPath calls = {per_pod_min:.2} per pod per minute \
         (Go provider: 12)",
        a.steady_secs
    );
    let mut by_route: Vec<(String, u64)> = routes(&env)
        .into_iter()
        .map(|(k, v)| {
            let d = v - routes_before.get(&k).copied().unwrap_or(0);
            (k, d)
        })
        .filter(|(_, d)| *d > 0)
        .collect();
    by_route.sort_by_key(|r| std::cmp::Reverse(r.1));
    if a.metrics_server {
        let metrics: u64 = by_route
            .iter()
            .filter(|(r, _)| r.contains("metrics"))
            .map(|(_, n)| n)
            .sum();
        if metrics == 0 {
            bail!(
                "--metrics-server: no StackPath metrics call in {} s, so metrics-server is not \
                 scraping the node (its log: {})",
                a.steady_secs,
                env.cluster.dir().join("logs").display()
            );
        }
        let intervals = a.steady_secs as f64 / 15.0;
        println!(
            "metrics-server scraping every 15 s: {metrics} StackPath metrics calls in {:.0} \
             scrape intervals = {:.2} per scrape interval",
            intervals,
            metrics as f64 / intervals
        );
    }
    for (route, n) in by_route {
        println!("  {n:>7}  {route}");
    }
    println!(
        "daemon at steady state: CPU {:.1}% of one core, RSS {:.0} MB",
        cpu / a.steady_secs as f64 * 100.0,
        e2e::rss_mb(daemon.pid())
    );
    watch.abort();
    drop(daemon);
    env.emulator.shutdown().await;
    Ok(())
}
