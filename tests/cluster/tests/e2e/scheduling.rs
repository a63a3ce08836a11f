//! The real scheduler binds pods that tolerate the virtual-kubelet taint to a registered node
//! and leaves the others Pending.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use local_cluster::Cluster;
use serde_json::json;

use crate::common::{VK_TAINT_KEY, eventually, register_node, unique};

fn pod(name: &str, node: &str, tolerate: bool) -> Pod {
    let tolerations = if tolerate {
        json!([{ "key": VK_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule" }])
    } else {
        json!([])
    };
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name },
        "spec": {
            // Only the test's own node qualifies, whatever other tests registered.
            "nodeSelector": { "kubernetes.io/hostname": node },
            "tolerations": tolerations,
            "containers": [{ "name": "main", "image": "nginx",
                             "resources": { "requests": { "cpu": "100m", "memory": "64Mi" } } }],
        },
    }))
    .expect("pod manifest")
}

#[tokio::test]
async fn tolerating_pod_is_bound_and_other_stays_pending() -> anyhow::Result<()> {
    let cluster = Cluster::shared();
    let _logs = cluster.dump_logs_on_panic();
    let ns = cluster.new_namespace().await?;
    let node = unique("sched-node");
    register_node(cluster, &node, 10250).await?;

    let pods: Api<Pod> = Api::namespaced(cluster.admin_client().await?, &ns);
    pods.create(&PostParams::default(), &pod("tolerates", &node, true))
        .await?;
    pods.create(&PostParams::default(), &pod("intolerant", &node, false))
        .await?;

    let bound = eventually(
        "the scheduler to bind the tolerating pod",
        Duration::from_secs(30),
        || async { Ok(pods.get("tolerates").await?.spec.and_then(|s| s.node_name)) },
    )
    .await?;
    assert_eq!(bound, node);

    // The scheduler reports why the other one cannot go anywhere.
    let reason = eventually(
        "the scheduler to mark the intolerant pod unschedulable",
        Duration::from_secs(30),
        || async {
            let p = pods.get("intolerant").await?;
            assert_eq!(
                p.spec.as_ref().and_then(|s| s.node_name.clone()),
                None,
                "intolerant pod was bound"
            );
            Ok(p.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
                .map(|c| (c.reason.unwrap_or_default(), c.message.unwrap_or_default())))
        },
    )
    .await?;
    assert_eq!(reason.0, "Unschedulable");
    assert!(reason.1.contains("untolerated taint"), "{}", reason.1);
    let phase = pods.get("intolerant").await?.status.and_then(|s| s.phase);
    assert_eq!(phase.as_deref(), Some("Pending"));
    Ok(())
}
