//! A dedicated cluster with short node-monitor settings: a node whose heartbeats stop turns
//! Unknown and gets the unreachable taint within seconds, so lease-loss tests stay fast.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use local_cluster::Cluster;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_node_goes_unknown_after_the_configured_grace() -> anyhow::Result<()> {
    let cluster = tokio::task::spawn_blocking(|| {
        Cluster::builder()
            .node_monitor_period(Duration::from_secs(1))
            .node_monitor_grace_period(Duration::from_secs(5))
            .start()
    })
    .await??;
    let _logs = cluster.dump_logs_on_panic();
    let nodes: Api<Node> = Api::all(cluster.admin_client().await?);
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node", "metadata": { "name": "silent" } }))?;
    nodes.create(&PostParams::default(), &node).await?;
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)?
        .format(&time::format_description::well_known::Rfc3339)?;
    let status = json!({ "status": { "conditions": [{ "type": "Ready", "status": "True",
        "reason": "KubeletReady", "lastHeartbeatTime": now, "lastTransitionTime": now }] } });
    nodes
        .patch_status("silent", &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    let registered = Instant::now();

    // No Lease renewals and no status updates from here on.
    let deadline = registered + Duration::from_secs(40);
    loop {
        let n = nodes.get("silent").await?;
        let ready = n
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.status);
        let unreachable = n
            .spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .iter()
            .any(|t| t.key == "node.kubernetes.io/unreachable");
        if ready.as_deref() == Some("Unknown") && unreachable {
            let after = registered.elapsed();
            // Not before the grace period, well before the 40 s default.
            assert!(
                after >= Duration::from_secs(4),
                "went Unknown after {after:?}"
            );
            eprintln!(
                "node went Unknown and unreachable-tainted {after:.1?} after its last heartbeat"
            );
            return Ok(());
        }
        assert!(
            Instant::now() < deadline,
            "node still {ready:?} after 40 s (unreachable taint: {unreachable})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
