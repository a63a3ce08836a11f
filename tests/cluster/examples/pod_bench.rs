//! Control-plane limits for the daemon's scale benchmarks: pod create throughput and watch
//! fan-out on a dedicated local cluster.
//!
//!     cargo run -p local-cluster --example pod_bench -- [PODS] [CONCURRENCY] [WATCHERS]
//!
//! Defaults: 10000 pods, 32 concurrent creates, 10 watchers. Pods have no node, so the
//! scheduler also marks each one Unschedulable (a status write per pod, as in a real cluster
//! waiting for capacity).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{PostParams, WatchEvent, WatchParams};
use local_cluster::Cluster;
use serde_json::json;

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn print_rss(cluster: &Cluster, when: &str) {
    let mut total = 0;
    let parts: Vec<String> = cluster
        .components()
        .iter()
        .map(|(name, pid, _)| {
            let kib = rss_kib(*pid);
            total += kib;
            format!("{name} {} MiB", kib / 1024)
        })
        .collect();
    println!(
        "RSS {when}: total {} MiB ({})",
        total / 1024,
        parts.join(", ")
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let pods_n = arg(1, 10_000);
    let concurrency = arg(2, 32);
    let watchers = arg(3, 10);

    let started = Instant::now();
    let cluster =
        tokio::task::spawn_blocking(|| Cluster::builder().verbose(true).start()).await??;
    println!(
        "cluster {} ready in {:.1?}",
        cluster.release(),
        started.elapsed()
    );
    print_rss(&cluster, "idle");

    let client = cluster.admin_client().await?;
    let ns = cluster.new_namespace().await?;
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);

    // Watchers first, each on its own connection, counting distinct ADDED pods.
    let t0 = Instant::now();
    let mut watch_tasks = vec![];
    for _ in 0..watchers {
        let api: Api<Pod> = Api::namespaced(cluster.admin_client().await?, &ns);
        watch_tasks.push(tokio::spawn(async move {
            let mut stream = api
                .watch(&WatchParams::default().timeout(290), "0")
                .await?
                .boxed();
            let mut added = 0usize;
            while let Some(ev) = stream.try_next().await? {
                if let WatchEvent::Added(_) = ev {
                    added += 1;
                    if added == pods_n {
                        return Ok::<_, anyhow::Error>(t0.elapsed());
                    }
                }
            }
            anyhow::bail!("watch ended after {added} pods")
        }));
    }

    let retries = Arc::new(AtomicUsize::new(0));
    let create_start = Instant::now();
    futures::stream::iter(0..pods_n)
        .map(|i| {
            let api = api.clone();
            let retries = retries.clone();
            async move {
                let pod: Pod = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": { "name": format!("bench-{i}"), "labels": { "bench": "yes" } },
                    "spec": { "containers": [{ "name": "main", "image": "nginx",
                        "resources": { "requests": { "cpu": "10m", "memory": "16Mi" } } }] } }))?;
                loop {
                    match api.create(&PostParams::default(), &pod).await {
                        Ok(_) => return Ok::<_, anyhow::Error>(()),
                        // Priority and fairness may push back; that is part of the limit measured.
                        Err(kube::Error::Api(s)) if s.code == 429 => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    let create = create_start.elapsed();
    println!(
        "created {pods_n} pods in {create:.1?}: {:.0} pods/s (concurrency {concurrency}, {} retries after 429)",
        pods_n as f64 / create.as_secs_f64(),
        retries.load(Ordering::Relaxed)
    );
    let mut last = Duration::ZERO;
    for t in watch_tasks {
        last = last.max(t.await??);
    }
    println!(
        "all {watchers} watchers saw all {pods_n} pods {:.1?} after the first create ({:.0} events/s delivered)",
        last,
        (pods_n * watchers) as f64 / last.as_secs_f64()
    );
    // A full LIST as the daemon's informer does on start.
    let list_start = Instant::now();
    let listed = api.list(&Default::default()).await?.items.len();
    println!("LIST of {listed} pods took {:.1?}", list_start.elapsed());
    print_rss(&cluster, &format!("with {pods_n} pods"));
    Ok(())
}
