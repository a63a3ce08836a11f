//! Loopback throughput of the emulator: creates/s and gets/s with N concurrent reqwest
//! clients against an in-process emulator (plain HTTP).
//!
//! `stackpath-emulator-bench [--workloads N] [--concurrency C]`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};
use stackpath_emulator::EmulatorConfig;

#[derive(Parser)]
struct Args {
    /// Workloads to create (then each is read once per round).
    #[arg(long, default_value_t = 2000)]
    workloads: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Rounds of gets over all workloads.
    #[arg(long, default_value_t = 3)]
    get_rounds: usize,
}

fn body(n: usize) -> Value {
    let slug = format!("bench-{n}");
    json!({"workload": {"name": slug, "slug": slug,
        "metadata": {"labels": {"vk-pod-name": slug, "vk-pod-namespace": "default", "vk-node-name": "bench"}},
        "spec": {"networkInterfaces": [{"network": "default", "ipFamilies": ["IPv4"], "enableOneToOneNat": true}],
                 "containers": {"app": {"image": "nginx:1.27",
                     "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
                     "env": {"A": {"value": "1"}}, "ports": {"default": {"port": 80, "protocol": "TCP"}}}}},
        "targets": {"city-code": {"spec": {"deploymentScope": "cityCode", "deployments": {"minReplicas": 1, "maxReplicas": 1,
            "selectors": [{"key": "cityCode", "operator": "in", "values": ["DFW"]}]}}}}}})
}

async fn run_phase<F, Fut>(n: usize, concurrency: usize, f: F) -> anyhow::Result<Duration>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let f = Arc::new(f);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (next, f) = (next.clone(), f.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), anyhow::Error>(());
                }
                f(i).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(t.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let emu =
        stackpath_emulator::start(EmulatorConfig::default(), "127.0.0.1:0".parse()?, None).await?;
    let base = emu.base_url.clone();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .build()?;
    let tok: Value = client
        .post(format!("{base}/identity/v1/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "emulator-client"),
            ("client_secret", "emulator-secret"),
        ])
        .send()
        .await?
        .json()
        .await?;
    let token = tok["access_token"]
        .as_str()
        .context("no token")?
        .to_string();
    let url = format!("{base}/workload/v1/stacks/demo-stack/workloads");
    let ids = Arc::new(std::sync::Mutex::new(vec![String::new(); a.workloads]));

    let (c, u, t, idsc) = (client.clone(), url.clone(), token.clone(), ids.clone());
    let took = run_phase(a.workloads, a.concurrency, move |i| {
        let (c, u, t, ids) = (c.clone(), u.clone(), t.clone(), idsc.clone());
        async move {
            let r = c.post(&u).bearer_auth(&t).json(&body(i)).send().await?;
            if !r.status().is_success() {
                bail!("create {i}: {}", r.status());
            }
            let v: Value = r.json().await?;
            let id = v["workload"]["id"].as_str().context("no id")?.to_string();
            ids.lock().map_err(|_| anyhow::anyhow!("poisoned"))?[i] = id;
            Ok(())
        }
    })
    .await?;
    println!(
        "creates: {} in {:.2} s = {:.0}/s ({} clients)",
        a.workloads,
        took.as_secs_f64(),
        a.workloads as f64 / took.as_secs_f64(),
        a.concurrency
    );

    let ids: Arc<Vec<String>> =
        Arc::new(ids.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone());
    let n = a.workloads * a.get_rounds;
    let (c, u, t) = (client.clone(), url.clone(), token.clone());
    let took = run_phase(n, a.concurrency, move |i| {
        let (c, u, t, ids) = (c.clone(), u.clone(), t.clone(), ids.clone());
        async move {
            let id = &ids[i % ids.len()];
            let r = c.get(format!("{u}/{id}")).bearer_auth(&t).send().await?;
            if !r.status().is_success() {
                bail!("get {id}: {}", r.status());
            }
            let _ = r.bytes().await?;
            Ok(())
        }
    })
    .await?;
    println!(
        "gets: {} in {:.2} s = {:.0}/s ({} clients)",
        n,
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        a.concurrency
    );

    let t = Instant::now();
    let mut after = String::new();
    let mut pages = 0;
    loop {
        let v: Value = client
            .get(format!(
                "{url}?page_request.first=1000&page_request.after={after}"
            ))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        pages += 1;
        if v["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = v["pageInfo"]["endCursor"]
            .as_str()
            .context("no cursor")?
            .to_string();
    }
    println!(
        "list all {} in {pages} pages of 1000: {:.0} ms",
        a.workloads,
        t.elapsed().as_secs_f64() * 1000.0
    );
    emu.shutdown().await;
    Ok(())
}
