//! The daemon's ServiceAccount holds exactly deploy/base/rbac.yaml: what it grants works, what
//! it does not grant is refused with 403.

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::Api;
use kube::api::{ListParams, PostParams};
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
