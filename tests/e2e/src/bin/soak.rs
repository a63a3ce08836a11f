//! Soak benchmark of `vk-stackpath run` (issue 26's figures), printing them:
//!
//!   E2E_DAEMON_LOG=info cargo run -p e2e-tests --bin soak -- [--pods 500] [--minutes 30]
//!
//! A control plane of its own, the emulator and the daemon as the tests build them. `--pods`
//! pods run; then for `--minutes`, about one churn step per second (delete and recreate a pod,
//! or change a pod's image) under StackPath faults: 10% of calls answer 5xx, 2% of responses
//! are lost after the call was carried out, a burst of 429s every two minutes. At 40% of the
//! time kube-apiserver is stopped for 20 s and restarted; at 70% the daemon is SIGKILLed and
//! started again. Afterwards the faults stop and it waits for convergence, then checks: every
//! pod Running with its current image at StackPath, exactly one workload per pod (no duplicate),
//! none without a pod (no orphan), no panic in the daemon's log; and prints the daemon's RSS
//! slope per life (linear fit of a sample every 15 s).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use e2e::Env;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use local_cluster::Cluster;
use stackpath_emulator::Faults;

struct Args {
    pods: usize,
    minutes: f64,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        pods: 500,
        minutes: 30.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--pods" => a.pods = value()?.parse()?,
            "--minutes" => a.minutes = value()?.parse()?,
            other => bail!(
                "unknown argument {other}; see the usage at the top of tests/e2e/src/bin/soak.rs"
            ),
        }
    }
    Ok(a)
}

const IMAGES: [&str; 2] = ["nginx:1.27", "nginx:1.28"];

fn pod(name: &str, node: &str, image: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": node,
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
            "containers": [{"name": "app", "image": image}]}
    }))?)
}

/// Least-squares slope of (minutes, MB) samples, in MB per hour.
fn slope_mb_per_hour(samples: &[(f64, f64)]) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return f64::NAN;
    }
    let (sx, sy) = samples
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let num: f64 = samples.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = samples.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    num / den * 60.0
}

/// A small deterministic generator (xorshift64*), so a run can be repeated.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    // A control plane of its own: its API server is stopped mid-run.
    let cluster: &'static Cluster = Box::leak(Box::new(
        tokio::task::spawn_blocking(|| Cluster::builder().start()).await??,
    ));
    let env = Env::start_on("soak", cluster, e2e::emulator_config()).await?;
    let node = env.node.clone();
    let mut daemon = env.start_daemon().await?;
    let pods = env.pods();

    // Desired state: slot -> (pod name, image). A recreated slot gets a new name.
    let mut desired: BTreeMap<usize, (String, &str)> = BTreeMap::new();
    let started = Instant::now();
    for i in 0..a.pods {
        let name = format!("k{i}-0");
        pods.create(&PostParams::default(), &pod(&name, &node, IMAGES[0])?)
            .await?;
        desired.insert(i, (name, IMAGES[0]));
    }
    converge(&env, &desired, Duration::from_secs(600)).await?;
    eprintln!("{} pods Running in {:.0?}", a.pods, started.elapsed());

    let faults = Faults {
        error_rate: 0.10,
        drop_rate: 0.02,
        latency_ms: 20,
        ..Faults::default()
    };
    env.emulator.set_faults(faults.clone());
    let total = Duration::from_secs_f64(a.minutes * 60.0);
    let soak = Instant::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut generation: HashMap<usize, u32> = HashMap::new();
    let (mut deletes, mut image_changes, mut failed_steps) = (0u32, 0u32, 0u32);
    let mut lives: Vec<Vec<(f64, f64)>> = vec![vec![]];
    let (mut next_sample, mut next_burst) = (Duration::ZERO, Duration::from_secs(120));
    let (mut apiserver_restarted, mut daemon_killed) = (false, false);
    let mut apiserver_down_at: Option<Duration> = None;
    while soak.elapsed() < total {
        let now = soak.elapsed();
        if now >= next_sample {
            lives
                .last_mut()
                .expect("one life")
                .push((now.as_secs_f64() / 60.0, e2e::rss_mb(daemon.pid())));
            next_sample += Duration::from_secs(15);
        }
        if now >= next_burst {
            env.emulator.set_faults(Faults {
                rate_limit_burst: 50,
                retry_after_seconds: 2,
                ..faults.clone()
            });
            next_burst += Duration::from_secs(120);
        }
        // The churn goes on while the API server is down (those steps are refused).
        if !apiserver_restarted && now >= total.mul_f64(0.4) {
            apiserver_restarted = true;
            eprintln!("{now:.0?}: stopping kube-apiserver for 20 s");
            cluster.stop_component("kube-apiserver")?;
            apiserver_down_at = Some(now);
        }
        if apiserver_down_at.is_some_and(|t| now >= t + Duration::from_secs(20)) {
            apiserver_down_at = None;
            cluster.start_component("kube-apiserver").await?;
            eprintln!("{:.0?}: kube-apiserver back", soak.elapsed());
        }
        if !daemon_killed && now >= total.mul_f64(0.7) {
            daemon_killed = true;
            eprintln!("{now:.0?}: SIGKILL to the daemon, then a new one");
            let log = daemon.log_text();
            check_log("the first daemon", &log)?;
            daemon.kill();
            daemon = env.start_daemon().await?;
            lives.push(vec![]);
        }

        let slot = rng.below(a.pods);
        let (name, image) = desired[&slot].clone();
        let step = if rng.below(2) == 0 {
            // Delete and recreate under a new name (a Deployment's rollout looks like this).
            let g = generation.entry(slot).or_insert(0);
            *g += 1;
            let new = format!("k{slot}-{g}");
            let r = async {
                pods.delete(&name, &DeleteParams::default()).await?;
                // Deleted: the slot must get its new pod, even across an API server outage.
                let mut tries = 0;
                while let Err(e) = pods
                    .create(&PostParams::default(), &pod(&new, &node, image)?)
                    .await
                {
                    tries += 1;
                    if tries > 60 {
                        bail!("creating {new} failed for a minute: {e}");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                anyhow::Ok(())
            }
            .await;
            if r.is_ok() {
                desired.insert(slot, (new, image));
                deletes += 1;
            }
            r
        } else {
            let other = if image == IMAGES[0] {
                IMAGES[1]
            } else {
                IMAGES[0]
            };
            let patch =
                serde_json::json!({"spec": {"containers": [{"name": "app", "image": other}]}});
            let r = pods
                .patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
                .map(|_| ())
                .map_err(anyhow::Error::from);
            if r.is_ok() {
                desired.insert(slot, (name, other));
                image_changes += 1;
            }
            r
        };
        if step.is_err() {
            // The API server is restarting, say: the step did not happen; state is unchanged.
            failed_steps += 1;
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    env.emulator.set_faults(Faults::default());
    eprintln!(
        "{:.0?} of churn: {deletes} delete+recreate, {image_changes} image changes, {failed_steps} steps refused; converging",
        soak.elapsed()
    );
    let settle = Instant::now();
    converge(&env, &desired, Duration::from_secs(600)).await?;
    let converged_in = settle.elapsed();
    check_log("the second daemon", &daemon.log_text())?;

    println!(
        "soak: {} pods, {:.0} min of churn (1 step/s: {deletes} delete+recreate, {image_changes} image changes) under 10% 5xx, 2% lost responses, 50×429 every 2 min; kube-apiserver down 20 s at 40%, daemon SIGKILL at 70%",
        a.pods, a.minutes
    );
    println!(
        "converged {converged_in:.1?} after the faults stopped: every pod Running with its current image, one workload per pod, no orphan, no panic"
    );
    for (i, life) in lives.iter().enumerate() {
        let first = life.first().map_or(f64::NAN, |s| s.1);
        let last = life.last().map_or(f64::NAN, |s| s.1);
        println!(
            "daemon life {}: RSS {first:.0} -> {last:.0} MB over {:.1} min, slope {:+.1} MB/h ({} samples)",
            i + 1,
            life.last().map_or(0.0, |s| s.0) - life.first().map_or(0.0, |s| s.0),
            slope_mb_per_hour(life),
            life.len()
        );
    }
    drop(daemon);
    env.emulator.shutdown().await;
    cluster.stop();
    Ok(())
}

fn check_log(who: &str, log: &str) -> anyhow::Result<()> {
    let panics: Vec<&str> = log.lines().filter(|l| l.contains("panicked")).collect();
    ensure!(panics.is_empty(), "{who} panicked:\n{}", panics.join("\n"));
    Ok(())
}

/// Waits until Kubernetes and StackPath agree with `desired`: each pod Running, exactly one
/// live workload per pod carrying its image, and no workload without a pod.
async fn converge(
    env: &Env,
    desired: &BTreeMap<usize, (String, &str)>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let want: HashMap<&str, &str> = desired.values().map(|(n, i)| (n.as_str(), *i)).collect();
    loop {
        let problem = async {
            let list = env.pods().list(&Default::default()).await?;
            let not_running = list
                .items
                .iter()
                .filter(|p| want.contains_key(p.metadata.name.as_deref().unwrap_or("")))
                .filter(|p| e2e::phase(p) != "Running")
                .count();
            if not_running > 0 {
                return anyhow::Ok(Some(format!("{not_running} pods not Running")));
            }
            let mut per_pod: HashMap<String, Vec<String>> = HashMap::new();
            for w in env.workloads().await? {
                let meta = w.metadata.clone().unwrap_or_default();
                if meta.delete_requested_at.is_some() {
                    continue;
                }
                let pod = meta.labels.get("vk-pod-name").cloned().unwrap_or_default();
                per_pod
                    .entry(pod)
                    .or_default()
                    .push(serde_json::to_string(&w)?);
            }
            let orphans = per_pod.keys().filter(|p| !want.contains_key(p.as_str())).count();
            let duplicates = per_pod.values().filter(|w| w.len() > 1).count();
            let missing = want.keys().filter(|p| !per_pod.contains_key(**p)).count();
            let stale = want
                .iter()
                .filter(|(p, image)| {
                    per_pod
                        .get(**p)
                        .is_some_and(|w| !w.iter().all(|j| j.contains(**image)))
                })
                .count();
            Ok((orphans + duplicates + missing + stale > 0).then(|| {
                format!("{orphans} orphan, {duplicates} duplicated, {missing} missing, {stale} with an old image")
            }))
        }
        .await?;
        match problem {
            None => return Ok(()),
            Some(p) if Instant::now() > deadline => {
                bail!(
                    "not converged after {timeout:?}: {p}\n{}",
                    env.daemon_log_tail(60)
                )
            }
            Some(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
}
