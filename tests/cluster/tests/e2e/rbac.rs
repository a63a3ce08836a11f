//! The daemon's ServiceAccount holds exactly deploy/base/rbac.yaml: what it grants works, what
//! it does not grant is refused with 403.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use local_cluster::Cluster;
use serde_json::json;

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

#[tokio::test]
async fn daemon_service_account_gets_exactly_the_shipped_rbac() -> anyhow::Result<()> {
    let cluster = Cluster::shared();
    let _logs = cluster.dump_logs_on_panic();
    let ns = cluster.new_namespace().await?;
    let admin = cluster.admin_client().await?;
    let daemon = cluster.daemon_client().await?;

    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "registry" },
        "stringData": { "password": "hunter2" } }))?;
    Api::<Secret>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await?;

    // Granted: one Secret by name (a pod's env), pods cluster-wide.
    let got = Api::<Secret>::namespaced(daemon.clone(), &ns)
        .get("registry")
        .await?;
    assert!(got.data.is_some_and(|d| d.contains_key("password")));
    Api::<Pod>::all(daemon.clone())
        .list(&ListParams::default().limit(1))
        .await?;

    // Refused: listing Secrets cluster-wide (and in one namespace), creating pods,
    // touching ConfigMaps beyond get.
    let err = Api::<Secret>::all(daemon.clone())
        .list(&ListParams::default())
        .await
        .expect_err("listing all Secrets must be refused");
    assert_eq!(status_code(&err), Some(403), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("system:serviceaccount:vk-stackpath:vk-stackpath"),
        "{msg}"
    );
    let err = Api::<Secret>::namespaced(daemon.clone(), &ns)
        .list(&ListParams::default())
        .await
        .expect_err("listing Secrets must be refused");
    assert_eq!(status_code(&err), Some(403), "{err}");

    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "nope" },
        "spec": { "containers": [{ "name": "c", "image": "nginx" }] } }))?;
    let err = Api::<Pod>::namespaced(daemon.clone(), &ns)
        .create(&PostParams::default(), &pod)
        .await
        .expect_err("creating pods must be refused");
    assert_eq!(status_code(&err), Some(403), "{err}");

    let cm: ConfigMap = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
    )?;
    let err = Api::<ConfigMap>::namespaced(daemon.clone(), &ns)
        .create(&PostParams::default(), &cm)
        .await
        .expect_err("creating ConfigMaps must be refused");
    assert_eq!(status_code(&err), Some(403), "{err}");
    Ok(())
}

/// Node and Lease rights are by name (an overlay's node-rbac.yaml): the daemon creates, reads
/// and patches its own Node and renews its own Lease; another node's Node or Lease is 403, and
/// so is listing nodes.
#[tokio::test]
async fn the_daemon_touches_only_its_own_node_and_lease() -> anyhow::Result<()> {
    let cluster = Cluster::shared();
    let _logs = cluster.dump_logs_on_panic();
    let ns = cluster.new_namespace().await?;
    let (mine, other) = (format!("vk-rbac-{ns}"), format!("vk-rbac-other-{ns}"));
    cluster.grant_node(&mine).await?;
    let admin = cluster.admin_client().await?;
    let daemon = cluster.daemon_client().await?;
    let node = |name: &str| -> anyhow::Result<Node> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node", "metadata": { "name": name } }))?)
    };
    let lease = |name: &str| -> anyhow::Result<Lease> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": { "name": name, "namespace": "kube-node-lease" },
            "spec": { "holderIdentity": name } }))?)
    };
    let merge = json!({ "metadata": { "labels": { "touched": "yes" } } });
    let pp = PatchParams::default();

    let d_nodes = Api::<Node>::all(daemon.clone());
    let d_leases = Api::<Lease>::namespaced(daemon.clone(), "kube-node-lease");
    Api::<Node>::all(admin.clone())
        .create(&PostParams::default(), &node(&other)?)
        .await?;
    Api::<Lease>::namespaced(admin.clone(), "kube-node-lease")
        .create(&PostParams::default(), &lease(&other)?)
        .await?;

    // Its own: create, get, patch (status too), lease create and renew.
    d_nodes
        .create(&PostParams::default(), &node(&mine)?)
        .await?;
    d_nodes.get(&mine).await?;
    d_nodes.patch(&mine, &pp, &Patch::Merge(&merge)).await?;
    d_nodes
        .patch_status(&mine, &pp, &Patch::Merge(&json!({"status": {}})))
        .await?;
    d_leases
        .create(&PostParams::default(), &lease(&mine)?)
        .await?;
    d_leases.patch(&mine, &pp, &Patch::Merge(&merge)).await?;

    // Another node's: refused.
    for (what, r) in [
        ("get node", d_nodes.get(&other).await.map(|_| ())),
        (
            "patch node",
            d_nodes
                .patch(&other, &pp, &Patch::Merge(&merge))
                .await
                .map(|_| ()),
        ),
        (
            "patch node status",
            d_nodes
                .patch_status(&other, &pp, &Patch::Merge(&json!({"status": {}})))
                .await
                .map(|_| ()),
        ),
        (
            "patch lease",
            d_leases
                .patch(&other, &pp, &Patch::Merge(&merge))
                .await
                .map(|_| ()),
        ),
        (
            "list nodes",
            d_nodes.list(&ListParams::default()).await.map(|_| ()),
        ),
    ] {
        let err = r.expect_err(what);
        assert_eq!(status_code(&err), Some(403), "{what}: {err}");
    }

    for n in [&mine, &other] {
        Api::<Node>::all(admin.clone())
            .delete(n, &Default::default())
            .await?;
        Api::<Lease>::namespaced(admin.clone(), "kube-node-lease")
            .delete(n, &Default::default())
            .await?;
    }
    Ok(())
}
