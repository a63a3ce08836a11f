//! One daemon, two cities (`SP_CITY_CODE=dfw,lax`): a node per city with its own labels and
//! kubelet port; Go-provider workloads of both cities adopted at once; pods pinned to a city
//! by node affinity run there; a burst of 300 pods in DFW leaves LAX's 10 pods converging as
//! if alone (the shared rate limit takes turns between cities); one token for the daemon.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::{Env, emulator_config, percentile, phase, pod_yaml};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::ListParams;

use crate::assert_no_forbidden;
use crate::restart::go_provider_workload_in;

const T: Duration = Duration::from_secs(90);
const BURST: usize = 300;
const FEW: usize = 10;

/// The label this test's daemon puts on its nodes: other tests' nodes share the control plane
/// and carry zone DFW too.
const DAEMON_LABEL: &str = "e2e.vk-stackpath.dev/daemon";

/// Pods of `city` (node affinity on the zone label, among this test's nodes), labelled
/// `burst=<city>`.
fn pinned_pods(prefix: &str, city: &str, n: usize, daemon: &str) -> String {
    (0..n)
        .map(|i| {
            format!(
                r#"apiVersion: v1
kind: Pod
metadata:
  name: {prefix}-{i}
  labels: {{burst: {city}}}
spec:
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
          - matchExpressions:
              - {{key: topology.kubernetes.io/zone, operator: In, values: [{city}]}}
              - {{key: {DAEMON_LABEL}, operator: In, values: [{daemon}]}}
  tolerations:
    - key: virtual-kubelet.io/provider
      operator: Exists
  containers:
    - name: app
      image: nginx:1.27
"#
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Seconds from `start` until each pod labelled `burst=<city>` was first seen Running.
async fn running_times(
    env: &Env,
    city: &str,
    n: usize,
    start: Instant,
) -> anyhow::Result<Vec<f64>> {
    let mut seen: BTreeMap<String, f64> = BTreeMap::new();
    let lp = ListParams::default().labels(&format!("burst={city}"));
    while seen.len() < n {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(240),
            "{city}: {} of {n} pods Running after 240 s",
            seen.len()
        );
        for p in env.pods().list(&lp).await? {
            if phase(&p) == "Running" {
                let name = p.metadata.name.clone().unwrap_or_default();
                seen.entry(name)
                    .or_insert_with(|| start.elapsed().as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(seen.into_values().collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_daemon_serves_two_cities_fairly() -> anyhow::Result<()> {
    let mut config = emulator_config();
    config.city_codes = vec!["DFW".into(), "LAX".into()];
    let env = Env::start_with("multi", config).await?;
    let prefix = env.node.trim_end_matches("-dfw").to_owned();
    let nodes = [format!("{prefix}-dfw"), format!("{prefix}-lax")];
    let template = format!("{prefix}-{{city}}");
    let label = format!("{DAEMON_LABEL}={}", env.ns);
    let label = label.as_str();
    let start = |adjust: fn(&mut std::process::Command)| {
        env.start_daemon_for(&template, &nodes, move |c| {
            c.env("SP_CITY_CODE", "dfw,lax")
                .args(["--node-label", label]);
            adjust(c);
        })
    };

    // The nodes exist, as under two Go providers; then each city has a workload of its own.
    start(|_| {}).await?.kill();
    let sp = env.stackpath();
    let mut legacy = BTreeMap::new();
    for (node, city) in nodes.iter().zip(["DFW", "LAX"]) {
        let pod = format!("legacy-{}", city.to_lowercase());
        let w = sp
            .create_workload(&go_provider_workload_in(&env.ns, &pod, node, city))
            .await?;
        env.apply(&pod_yaml(&pod, node, "nginx:1.27", ""))?;
        legacy.insert(pod, w.id);
    }
    // The test's own client has its token by now: what follows is the daemon's.
    let tokens_before = token_calls(&env);

    // A tight account budget, so the burst below has to queue.
    let daemon = start(|c| {
        c.args(["--stackpath-qps", "20", "--stackpath-burst", "10"]);
    })
    .await?;
    let api: Api<Node> = Api::all(env.admin.clone());
    let mut ports = Vec::new();
    for (node, city) in nodes.iter().zip(["DFW", "LAX"]) {
        let n = api.get(node).await?;
        let labels = n.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels["topology.kubernetes.io/zone"], city, "{node}");
        assert_eq!(labels["topology.kubernetes.io/region"], "NA", "{node}");
        assert_eq!(labels["kubernetes.io/hostname"], *node);
        ports.push(
            n.status
                .and_then(|s| s.daemon_endpoints)
                .and_then(|d| d.kubelet_endpoint)
                .map(|e| e.port)
                .unwrap_or_default(),
        );
    }
    assert_eq!(
        ports[1],
        ports[0] + 1,
        "one kubelet port per node: {ports:?}"
    );

    // Adopted in both cities at once: the same workloads, no second one.
    for pod in legacy.keys() {
        env.wait_pod(pod, T, |p| phase(p) == "Running").await?;
        let out = env.kubectl(&["logs", pod]);
        assert!(
            out.status.success(),
            "kubectl logs {pod}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let events = env.events(pod).await?;
        assert!(
            !events.iter().any(|e| e.starts_with("WorkloadCreated:")),
            "{pod} got a new workload: {events:?}"
        );
    }
    let ids: Vec<_> = all_workloads(&sp)
        .await?
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    for id in legacy.values() {
        assert!(ids.contains(id), "{id:?} not adopted: {ids:?}");
    }

    // 300 pods for DFW, then 10 for LAX.
    let t0 = Instant::now();
    env.apply(&pinned_pods("b", "DFW", BURST, &env.ns))?;
    let t_lax = Instant::now();
    env.apply(&pinned_pods("l", "LAX", FEW, &env.ns))?;
    let (lax, dfw) = tokio::join!(
        running_times(&env, "LAX", FEW, t_lax),
        running_times(&env, "DFW", BURST, t0)
    );
    let (mut lax, mut dfw) = (lax?, dfw?);
    let (lax_p50, lax_p90, lax_max) = (
        percentile(&mut lax, 0.5),
        percentile(&mut lax, 0.9),
        percentile(&mut lax, 1.0),
    );
    let (dfw_p50, dfw_max) = (percentile(&mut dfw, 0.5), percentile(&mut dfw, 1.0));
    eprintln!(
        "LAX ({FEW} pods, from their apply): Running p50 {lax_p50:.1} s, p90 {lax_p90:.1} s, \
         max {lax_max:.1} s; DFW ({BURST} pods): p50 {dfw_p50:.1} s, max {dfw_max:.1} s \
         (--stackpath-qps 20)"
    );
    // First come first served, LAX would wait behind DFW's ~750 calls (~38 s at 20/s); alone
    // (this machine, nothing else running) its pods take under 4 s.
    assert!(
        lax_max < 30.0 && lax_max < dfw_max / 2.0,
        "LAX waited for DFW's burst: LAX max {lax_max:.1} s, DFW max {dfw_max:.1} s"
    );

    // Each workload runs in its pod's city and names its node.
    for w in all_workloads(&sp).await? {
        let labels = w.metadata.clone().unwrap_or_default().labels;
        let pod = labels.get("vk-pod-name").cloned().unwrap_or_default();
        let node = labels.get("vk-node-name").cloned().unwrap_or_default();
        let cities: Vec<String> = w
            .targets
            .values()
            .filter_map(|t| t.spec.as_ref()?.deployments.as_ref())
            .flat_map(|d| d.selectors.iter().flat_map(|s| s.values.clone()))
            .collect();
        let want = if pod.starts_with("b-") || pod == "legacy-dfw" {
            ("DFW", &nodes[0])
        } else {
            ("LAX", &nodes[1])
        };
        assert_eq!(cities, [want.0], "{pod}: targets {:?}", w.targets);
        assert_eq!(&node, want.1, "{pod}");
    }
    let out = env.kubectl(&["logs", "l-0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // One token for the whole daemon (its lifetime is an hour).
    assert_eq!(
        token_calls(&env) - tokens_before,
        1,
        "token requests by one daemon of two cities"
    );

    let out = env.kubectl(&["delete", "pods", "--all", "--wait=false"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while !all_workloads(&sp).await?.is_empty() {
        assert!(
            Instant::now() < deadline,
            "workloads left 120 s after the pods were deleted"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let log = daemon.log_text();
    assert!(
        log.contains("is not drained"),
        "the start does not say what happens to a city left out"
    );
    assert_no_forbidden(&log);
    Ok(())
}

/// Every workload of the stack (`Env::workloads` has the first node's only), with the test's
/// one client (each client gets a token of its own).
async fn all_workloads(
    sp: &stackpath_client::Client,
) -> anyhow::Result<Vec<stackpath_client::model::Workload>> {
    Ok(sp.list_all_workloads(None).await?)
}

/// Token requests the emulator has answered so far.
fn token_calls(env: &Env) -> u64 {
    env.emulator.stats()["routes"]
        .as_object()
        .map(|r| {
            r.iter()
                .filter(|(k, _)| k.contains("oauth2/token"))
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        })
        .unwrap_or(0)
}
