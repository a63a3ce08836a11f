//! kube-apiserver stopped under a running leader: the daemon keeps running (pods at StackPath
//! are unaffected, nothing is deleted), stands by while it cannot renew its lease, and resumes
//! when the API server returns: new pods run, deleted pods lose their workloads.

use std::time::{Duration, Instant};

use e2e::{Env, emulator_config, phase, pod_yaml};
use local_cluster::Cluster;

use crate::assert_no_forbidden;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_outage_is_waited_out_not_crashed_on() -> anyhow::Result<()> {
    // A cluster of its own: stopping the shared one's API server would fail other tests.
    let cluster: &'static Cluster = Box::leak(Box::new(
        tokio::task::spawn_blocking(|| Cluster::builder().start()).await??,
    ));
    let env = Env::start_on("outage", cluster, emulator_config()).await?;
    let node = env.node.clone();
    let mut daemon = env
        .start_daemon_with(&node, |c| {
            c.args(["--leader-elect", "--leader-elect-identity", "only"]);
        })
        .await?;
    for n in ["a", "b"] {
        env.apply(&pod_yaml(n, &node, "nginx:1.27", ""))?;
    }
    for n in ["a", "b"] {
        env.wait_pod(n, Duration::from_secs(60), |p| phase(p) == "Running")
            .await?;
    }

    assert_no_forbidden(&daemon.log_text());
    // Down for three lease durations (10 s each) and more than the old 10 s exit.
    cluster.stop_component("kube-apiserver")?;
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(35) {
        if let Some(status) = daemon.exit_status() {
            anyhow::bail!(
                "the daemon exited ({status}) {:?} into the outage:\n{}",
                down.elapsed(),
                daemon.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let live = env.workloads().await?;
    assert_eq!(live.len(), 2, "workloads untouched during the outage");
    cluster.start_component("kube-apiserver").await?;

    // Back: it leads again, runs a new pod and deletes a deleted pod's workload.
    env.apply(&pod_yaml("c", &node, "nginx:1.27", ""))?;
    env.wait_pod("c", Duration::from_secs(90), |p| phase(p) == "Running")
        .await?;
    // A restarted API server answers 403 for a moment while its RBAC caches fill; what the
    // daemon logs from here on must be clean.
    let recovered = daemon.log_text().len();
    let out = env.kubectl(&["delete", "pod", "a", "--wait=true", "--timeout=60s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let slugs = env.live_workload_slugs().await?;
        if slugs.len() == 2 && !slugs.iter().any(|s| s.ends_with("-a")) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "after the outage: {slugs:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(daemon.exit_status().is_none(), "the daemon still runs");
    let log = daemon.log_text();
    assert!(log.contains("standing by"), "it said it stood by:\n{log}");
    assert_no_forbidden(&log[recovered..]);
    Ok(())
}
