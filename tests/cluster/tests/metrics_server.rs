//! `--with-metrics-server`: metrics-server built from its module, registered as the
//! v1beta1.metrics.k8s.io APIService and served through the real aggregator.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use local_cluster::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_api_is_served_through_the_aggregator() -> anyhow::Result<()> {
    let cluster =
        tokio::task::spawn_blocking(|| Cluster::builder().with_metrics_server(true).start())
            .await??;
    let _logs = cluster.dump_logs_on_panic();
    assert!(
        cluster
            .components()
            .iter()
            .any(|(n, _, _)| n == "metrics-server")
    );
    let client = cluster.admin_client().await?;

    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "apiregistration.k8s.io",
        "v1",
        "APIService",
    ));
    let apis: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let svc = apis.get("v1beta1.metrics.k8s.io").await?;
    let conditions: Vec<Condition> =
        serde_json::from_value(svc.data["status"]["conditions"].clone())?;
    let available = conditions
        .iter()
        .find(|c| c.type_ == "Available")
        .expect("Available condition");
    assert_eq!(available.status, "True", "{available:?}");

    // Through the aggregator (front-proxy client certificate, request headers) to
    // metrics-server, which authorizes the admin by SubjectAccessReview.
    let req = http::Request::get("/apis/metrics.k8s.io/v1beta1/nodes").body(vec![])?;
    let body: serde_json::Value = serde_json::from_str(&client.request_text(req).await?)?;
    assert_eq!(body["kind"], "NodeMetricsList", "{body}");

    // The daemon's identity has no metrics grant: the aggregated API refuses it too.
    let daemon = cluster.daemon_client().await?;
    let req = http::Request::get("/apis/metrics.k8s.io/v1beta1/nodes").body(vec![])?;
    let err = daemon
        .request_text(req)
        .await
        .expect_err("daemon may not read metrics");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 403),
        "{err}"
    );
    Ok(())
}
