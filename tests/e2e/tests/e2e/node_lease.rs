//! The real node lifecycle controller watches the daemon's Lease: a daemon stopped past the
//! grace period gets its node tainted unreachable; a restarted daemon clears it; pods and
//! workloads survive a restart shorter than the pods' toleration.

use std::time::{Duration, Instant};

use e2e::{Env, emulator_config, phase};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use local_cluster::Cluster;
use serde_json::json;

use crate::assert_no_forbidden;

fn unreachable_tainted(n: &Node) -> bool {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.key == "node.kubernetes.io/unreachable"))
}

/// A second node kept Ready by the test: the controller stops tainting when every node is down.
async fn keep_alive(admin: kube::Client, name: String) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(admin.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    nodes.create(&PostParams::default(), &node).await?;
    let leases: Api<Lease> = Api::namespaced(admin, "kube-node-lease");
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": name},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40}}))?;
    leases.create(&PostParams::default(), &lease).await?;
    tokio::spawn(async move {
        loop {
            let now = k8s_openapi::jiff::Timestamp::now();
            let micro = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(now);
            let _ = leases
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"renewTime": micro}})),
                )
                .await;
            let t = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now);
            let _ = nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": {"conditions": [
                    {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": t, "lastTransitionTime": t}]}})))
                .await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_loss_taints_the_node_and_a_restart_clears_it() -> anyhow::Result<()> {
    let cluster: &'static Cluster = Box::leak(Box::new(
        tokio::task::spawn_blocking(|| {
            Cluster::builder()
                .node_monitor_period(Duration::from_secs(1))
                .node_monitor_grace_period(Duration::from_secs(5))
                .start()
        })
        .await??,
    ));
    let env = Env::start_on("lease", cluster, emulator_config()).await?;
    keep_alive(env.admin.clone(), format!("keeper-{}", env.ns)).await?;
    let mut daemon = env.start_daemon().await?;
    env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: survivor
spec:
  nodeName: {node}
  tolerations:
    - key: virtual-kubelet.io/provider
      operator: Exists
    - key: node.kubernetes.io/unreachable
      operator: Exists
      effect: NoExecute
      tolerationSeconds: 300
  containers:
    - name: app
      image: nginx:1.27
"#,
        node = env.node
    ))?;
    let before = env
        .wait_pod("survivor", Duration::from_secs(60), |p| {
            phase(p) == "Running"
        })
        .await?;
    let workload = env.workloads().await?[0].id.clone();

    let first_log = daemon.log_text();
    daemon.kill();
    let stopped = Instant::now();
    let nodes: Api<Node> = Api::all(env.admin.clone());
    loop {
        if unreachable_tainted(&nodes.get(&env.node).await?) {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(60),
            "no unreachable taint after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "node tainted unreachable {:.1?} after the daemon stopped",
        stopped.elapsed()
    );

    let daemon = env.start_daemon().await?;
    let restarted = Instant::now();
    loop {
        if !unreachable_tainted(&nodes.get(&env.node).await?) {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(60),
            "taint not cleared after a restart"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "taint cleared {:.1?} after the restart",
        restarted.elapsed()
    );
    let after = env
        .wait_pod("survivor", Duration::from_secs(60), |p| {
            phase(p) == "Running"
        })
        .await?;
    assert_eq!(
        before.metadata.uid, after.metadata.uid,
        "the pod was replaced"
    );
    let w = env.workloads().await?;
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].id, workload, "the workload was replaced");
    assert_no_forbidden(&first_log);
    assert_no_forbidden(&daemon.log_text());
    cluster.stop();
    Ok(())
}
