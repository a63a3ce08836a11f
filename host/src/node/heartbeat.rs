//! Registration and heartbeats: the Node is created (or taken over, keeping taints others
//! added), its Lease renewed every 10 s, its status written when Ready changes and at least
//! every minute. On stop the node is marked NotReady; workloads keep running.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use tokio::task::JoinHandle;

use super::object::NodeSettings;
use crate::metrics::Metrics;

pub const LEASE_NAMESPACE: &str = "kube-node-lease";
const LEASE_DURATION_SECONDS: i32 = 40;
const LEASE_RENEW: Duration = Duration::from_secs(10);
const STATUS_EVERY: Duration = Duration::from_secs(60);
const STATUS_CHECK: Duration = Duration::from_secs(5);

pub struct NodeHandle {
    client: kube::Client,
    settings: NodeSettings,
    tasks: Vec<JoinHandle<()>>,
}

/// Creates or takes over the Node, then keeps its lease and status fresh in the background.
pub async fn register(
    client: kube::Client,
    settings: NodeSettings,
    metrics: Arc<Metrics>,
) -> Result<NodeHandle, kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let problem = metrics.stackpath_problem();
    let node = match nodes.get_opt(&settings.name).await? {
        None => {
            let created = nodes
                .create(&PostParams::default(), &settings.node(problem.as_deref()))
                .await?;
            tracing::info!(node = settings.name, "registered the node");
            created
        }
        Some(existing) => {
            // Keep taints added by others (the lifecycle controller's unreachable taint
            // must be removed by that controller, not by us); add ours if missing.
            let mut taints = existing
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            if let Some(ours) = &settings.taint
                && !taints
                    .iter()
                    .any(|t| t.key == ours.key && t.effect == ours.effect)
            {
                taints.push(ours.clone());
            }
            let patch = serde_json::json!({
                "metadata": { "labels": settings.labels() },
                "spec": { "taints": taints },
            });
            let node = nodes
                .patch(
                    &settings.name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            tracing::info!(node = settings.name, "took over the existing node");
            node
        }
    };
    write_status(&nodes, &settings, problem.as_deref(), node.status.as_ref()).await?;
    let lease = tokio::spawn(lease_loop(client.clone(), settings.clone(), node.uid()));
    let status = tokio::spawn(status_loop(client.clone(), settings.clone(), metrics));
    Ok(NodeHandle {
        client,
        settings,
        tasks: vec![lease, status],
    })
}

async fn write_status(
    nodes: &Api<Node>,
    settings: &NodeSettings,
    problem: Option<&str>,
    current: Option<&k8s_openapi::api::core::v1::NodeStatus>,
) -> Result<Node, kube::Error> {
    let mut patch = serde_json::json!({ "status": settings.status(problem, current) });
    // Declares what the kubelet API speaks (WebSocket streams: ExtendWebSocketsToKubelet);
    // API servers that do not know the field drop it.
    patch["status"]["declaredFeatures"] =
        vk_kubelet::declared_features_patch()["status"]["declaredFeatures"].clone();
    nodes
        .patch_status(
            &settings.name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
}

async fn status_loop(client: kube::Client, settings: NodeSettings, metrics: Arc<Metrics>) {
    let nodes: Api<Node> = Api::all(client);
    let mut last_problem = metrics.stackpath_problem();
    let mut last_write = tokio::time::Instant::now();
    let mut current = None;
    loop {
        tokio::time::sleep(STATUS_CHECK).await;
        let problem = metrics.stackpath_problem();
        if problem == last_problem && last_write.elapsed() < STATUS_EVERY {
            continue;
        }
        if problem != last_problem {
            match &problem {
                Some(p) => tracing::warn!(node = settings.name, "node NotReady: {p}"),
                None => tracing::info!(node = settings.name, "node Ready: StackPath answers again"),
            }
        }
        match write_status(&nodes, &settings, problem.as_deref(), current.as_ref()).await {
            Ok(node) => {
                current = node.status;
                last_problem = problem;
                last_write = tokio::time::Instant::now();
            }
            Err(e) => {
                tracing::warn!(node = settings.name, error = %e, "could not update node status")
            }
        }
    }
}

fn lease_object(settings: &NodeSettings, node_uid: Option<String>) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(settings.name.clone()),
            namespace: Some(LEASE_NAMESPACE.into()),
            // As the kubelet does: the lease goes away with its node.
            owner_references: node_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: settings.name.clone(),
                    uid,
                    ..OwnerReference::default()
                }]
            }),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(settings.name.clone()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..LeaseSpec::default()
        }),
    }
}

async fn renew(
    leases: &Api<Lease>,
    settings: &NodeSettings,
    node_uid: &Option<String>,
) -> Result<(), kube::Error> {
    let patch = serde_json::json!({
        "spec": {
            "holderIdentity": settings.name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": MicroTime(Timestamp::now()),
        }
    });
    match leases
        .patch(
            &settings.name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => leases
            .create(
                &PostParams::default(),
                &lease_object(settings, node_uid.clone()),
            )
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    }
}

async fn lease_loop(client: kube::Client, settings: NodeSettings, node_uid: Option<String>) {
    let leases: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    loop {
        match renew(&leases, &settings, &node_uid).await {
            Ok(()) => tracing::trace!(node = settings.name, "lease renewed"),
            Err(e) => {
                tracing::warn!(node = settings.name, error = %e, "could not renew the node lease")
            }
        }
        tokio::time::sleep(LEASE_RENEW).await;
    }
}

/// Dropped without [`NodeHandle::stop`] (leadership lost mid-term): the heartbeats stop, so a
/// replica that no longer leads never renews the node's lease.
impl Drop for NodeHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl NodeHandle {
    /// Stops the heartbeats and marks the node NotReady. Workloads are left running.
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        let nodes: Api<Node> = Api::all(self.client.clone());
        let current = nodes.get_opt(&self.settings.name).await.ok().flatten();
        let patch = serde_json::json!({
            "status": self.settings.stopped_status(current.as_ref().and_then(|n| n.status.as_ref()))
        });
        match nodes
            .patch_status(
                &self.settings.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => tracing::info!(
                node = self.settings.name,
                "node marked NotReady; workloads keep running"
            ),
            Err(e) => tracing::warn!(error = %e, "could not mark the node NotReady on shutdown"),
        }
    }
}
