//! Several cities: N single-city daemons (the baseline, as with the Go provider) against one
//! daemon of N cities, on the same emulator settings and the same pods, in one run:
//!
//!   E2E_DAEMON_LOG=info cargo run -p e2e-tests --bin cities -- \
//!       [--cities 5] [--pods-per-city 40] [--burst 300] [--qps 20] [--settle-secs 90]
//!       [--steady-secs 60]
//!
//! The account's budget is Q calls per second. Three setups: N single-city daemons each given
//! the whole budget (`--stackpath-qps Q --stackpath-burst Q`, as an operator copying one
//! overlay per city would: together they may ask N times the account's budget), N daemons
//! given a share each (Q/N, which keeps the account within its budget), and one daemon of N
//! cities given Q. Each city gets `--pods-per-city` pods and the first city `--burst` more, all
//! created at once.
//! Reports, per setup: StackPath calls until every pod is Running and over the steady state,
//! the highest call rate the emulator saw in any one-second window (the account budget is Q
//! per second plus a burst of Q), time from create to Running per city (p50/p90: the first
//! city carries the burst), and the daemons' total RSS and CPU.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use e2e::{Daemon, Env};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};

const CITIES: [&str; 8] = ["DFW", "LAX", "JFK", "SEA", "AMS", "FRA", "SIN", "NRT"];

struct Args {
    cities: usize,
    pods_per_city: usize,
    burst: usize,
    qps: u32,
    settle_secs: u64,
    steady_secs: u64,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        cities: 5,
        pods_per_city: 40,
        burst: 300,
        qps: 20,
        settle_secs: 90,
        steady_secs: 60,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--cities" => a.cities = value()?.parse()?,
            "--pods-per-city" => a.pods_per_city = value()?.parse()?,
            "--burst" => a.burst = value()?.parse()?,
            "--qps" => a.qps = value()?.parse()?,
            "--settle-secs" => a.settle_secs = value()?.parse()?,
            "--steady-secs" => a.steady_secs = value()?.parse()?,
            other => bail!(
                "unknown argument {other}; see the usage at the top of tests/e2e/src/bin/cities.rs"
            ),
        }
    }
    if !(1..=CITIES.len()).contains(&a.cities) {
        bail!("--cities must be 1 to {}", CITIES.len());
    }
    Ok(a)
}

struct Figures {
    calls_converge: u64,
    calls_steady: u64,
    peak_per_second: u64,
    converge: Duration,
    /// Per city: p50, p90 of create → Running, in seconds.
    lag: Vec<(String, f64, f64)>,
    rss_mb: f64,
    cpu_s: f64,
    tokens: u64,
}

fn route_calls(env: &Env, part: &str) -> u64 {
    env.emulator.stats()["routes"]
        .as_object()
        .map(|r| {
            r.iter()
                .filter(|(k, _)| k.contains(part))
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        })
        .unwrap_or(0)
}

fn total_calls(env: &Env) -> u64 {
    env.emulator.stats()["total"].as_u64().unwrap_or(0)
}

/// Runs the pods on one daemon of every city (`one`) or on a daemon per city, each daemon
/// given `qps` calls per second (and as much burst).
async fn measure(a: &Args, one: bool, qps: f64) -> anyhow::Result<Figures> {
    let cities: Vec<&str> = CITIES[..a.cities].to_vec();
    let mut config = e2e::emulator_config();
    config.city_codes = cities.iter().map(|c| c.to_string()).collect();
    let env = Env::start_with(if one { "one" } else { "each" }, config).await?;
    let prefix = env.node.trim_end_matches("-dfw").to_owned();
    let nodes: Vec<String> = cities
        .iter()
        .map(|c| format!("{prefix}-{}", c.to_lowercase()))
        .collect();
    let burst = (qps.round() as u32).max(1);
    let budget = [
        "--stackpath-qps".to_string(),
        qps.to_string(),
        "--stackpath-burst".into(),
        burst.to_string(),
    ];
    // Every daemon's token, from its start on.
    let tokens_before = route_calls(&env, "oauth2/token");
    let mut daemons: Vec<Daemon> = Vec::new();
    if one {
        let list = cities.join(",");
        let budget = budget.clone();
        daemons.push(
            env.start_daemon_for(&format!("{prefix}-{{city}}"), &nodes, |c| {
                c.env("SP_CITY_CODE", &list).args(&budget);
            })
            .await?,
        );
    } else {
        for (node, city) in nodes.iter().zip(&cities) {
            let budget = budget.clone();
            daemons.push(
                env.start_daemon_for(node, std::slice::from_ref(node), |c| {
                    c.env("SP_CITY_CODE", city).args(&budget);
                })
                .await?,
            );
        }
    }
    let pods = env.pods();
    let (running, watch) = e2e::first_seen_running(pods.clone(), Instant::now);
    // The emulator's call counter, sampled while pods are created and converge and through
    // the steady state, for the highest one-second rate.
    let mut samples: Vec<(Instant, u64)> = Vec::new();
    let calls_before = total_calls(&env);
    let mut want: Vec<(String, usize)> = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let n = a.pods_per_city + if i == 0 { a.burst } else { 0 };
        want.push((node.clone(), n));
    }
    let started = Instant::now();
    let mut created: HashMap<String, (usize, Instant)> = HashMap::new();
    let mut jobs = futures::stream::iter(
        want.iter()
            .enumerate()
            .flat_map(|(c, (node, n))| (0..*n).map(move |i| (c, node.clone(), i))),
    )
    .map(|(c, node, i)| {
        let pods = pods.clone();
        async move {
            let name = format!("c{c}-{i}");
            let pod: Pod = serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name},
                "spec": {"nodeName": node,
                    "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
                    "containers": [{"name": "app", "image": "nginx:1.27"}]}
            }))?;
            pods.create(&PostParams::default(), &pod).await?;
            anyhow::Ok((name, c, Instant::now()))
        }
    })
    .buffer_unordered(32);
    while let Some(r) = jobs.next().await {
        let (name, c, at) = r?;
        created.insert(name, (c, at));
        if samples
            .last()
            .is_none_or(|(t, _)| t.elapsed() >= Duration::from_millis(100))
        {
            samples.push((Instant::now(), total_calls(&env)));
        }
    }
    drop(jobs);
    let total: usize = want.iter().map(|(_, n)| n).sum();
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut report = Instant::now();
    loop {
        let n = running.lock().unwrap().len();
        if n >= total {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {n} of {total} pods Running after 900 s");
        }
        if report.elapsed() > Duration::from_secs(10) {
            eprintln!("  {:>5.0?}: {n} of {total} Running", started.elapsed());
            report = Instant::now();
        }
        samples.push((Instant::now(), total_calls(&env)));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let converge = started.elapsed();
    let calls_converge = total_calls(&env) - calls_before;
    let seen = running.lock().unwrap().clone();
    let mut by_city: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for (name, (c, at)) in &created {
        if let Some(r) = seen.get(name) {
            by_city
                .entry(*c)
                .or_default()
                .push(r.saturating_duration_since(*at).as_secs_f64());
        }
    }
    let lag = by_city
        .into_iter()
        .map(|(c, mut v)| {
            (
                cities[c].to_string(),
                e2e::percentile(&mut v, 0.5),
                e2e::percentile(&mut v, 0.9),
            )
        })
        .collect();
    let rss_mb = daemons.iter().map(|d| e2e::rss_mb(d.pid())).sum();

    // Steady state: settled pods polled at the settled interval, once polling has backed off.
    tokio::time::sleep(Duration::from_secs(a.settle_secs)).await;
    let cpu_before: f64 = daemons.iter().map(Daemon::cpu_seconds).sum();
    let steady_before = total_calls(&env);
    let steady = Instant::now();
    while steady.elapsed() < Duration::from_secs(a.steady_secs) {
        samples.push((Instant::now(), total_calls(&env)));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let calls_steady = total_calls(&env) - steady_before;
    let cpu_s = daemons.iter().map(Daemon::cpu_seconds).sum::<f64>() - cpu_before;
    let tokens = route_calls(&env, "oauth2/token") - tokens_before;
    watch.abort();
    let mut peak = 0;
    let mut from = 0;
    for &(t, total) in &samples {
        while t.duration_since(samples[from].0) > Duration::from_secs(1) {
            from += 1;
        }
        peak = peak.max(total - samples[from].1);
    }

    // Leave nothing behind: pods deleted, workloads gone.
    pods.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while !env.stackpath().list_all_workloads(None).await?.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    drop(daemons);
    env.emulator.shutdown().await;
    Ok(Figures {
        calls_converge,
        calls_steady,
        peak_per_second: peak,
        converge,
        lag,
        rss_mb,
        cpu_s,
        tokens,
    })
}

fn print(what: &str, a: &Args, f: &Figures) {
    println!("{what}:");
    println!(
        "  all Running after {:.1?}; StackPath calls until then {}, then {} in {} s of steady \
         state; token requests {}",
        f.converge, f.calls_converge, f.calls_steady, a.steady_secs, f.tokens
    );
    println!(
        "  highest calls in any 1 s: {} (the account's budget: {} per second)",
        f.peak_per_second, a.qps
    );
    for (city, p50, p90) in &f.lag {
        println!("  {city}: create -> Running p50 {p50:.1} s, p90 {p90:.1} s");
    }
    println!(
        "  RSS {:.0} MB in all; CPU {:.1} s over the steady state",
        f.rss_mb, f.cpu_s
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    println!(
        "{} cities, {} pods each plus {} in {}, budget --stackpath-qps {} per daemon",
        a.cities, a.pods_per_city, a.burst, CITIES[0], a.qps
    );
    let n = a.cities as f64;
    let each = measure(&a, false, f64::from(a.qps)).await?;
    print(
        &format!(
            "baseline: {} single-city daemons, each --stackpath-qps {}",
            a.cities, a.qps
        ),
        &a,
        &each,
    );
    let split = measure(&a, false, f64::from(a.qps) / n).await?;
    print(
        &format!(
            "{} single-city daemons sharing the budget, each --stackpath-qps {:.1}",
            a.cities,
            f64::from(a.qps) / n
        ),
        &a,
        &split,
    );
    let one = measure(&a, true, f64::from(a.qps)).await?;
    print(
        &format!(
            "one daemon of {} cities, --stackpath-qps {}",
            a.cities, a.qps
        ),
        &a,
        &one,
    );
    for (name, base) in [("baseline", &each), ("shared budget", &split)] {
        println!(
            "ratios one daemon / {name}: RSS {:.2}, steady CPU {:.2}, calls until Running {:.2}, \
             steady calls {:.2}, peak calls per second {:.2}, token requests {}/{}, all Running \
             {:.2}",
            one.rss_mb / base.rss_mb,
            one.cpu_s / base.cpu_s.max(0.001),
            one.calls_converge as f64 / base.calls_converge as f64,
            one.calls_steady as f64 / base.calls_steady.max(1) as f64,
            one.peak_per_second as f64 / base.peak_per_second.max(1) as f64,
            one.tokens,
            base.tokens,
            one.converge.as_secs_f64() / base.converge.as_secs_f64()
        );
    }
    Ok(())
}
