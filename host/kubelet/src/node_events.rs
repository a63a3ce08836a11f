//! Events about this node (events.k8s.io/v1, `regarding` the Node), where an operator looks
//! with `kubectl describe node` or `kubectl get events`. Advisory: one that cannot be written
//! is logged and otherwise ignored.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;

/// Reasons of the serving certificate's Events.
pub mod reason {
    pub const PENDING: &str = "ServingCertificatePending";
    pub const DENIED: &str = "ServingCertificateDenied";
    pub const FAILED: &str = "ServingCertificateFailed";
    pub const ISSUED: &str = "ServingCertificateIssued";
    pub const NOT_SELF_APPROVED: &str = "ServingCertificateNotSelfApproved";
}

/// The action of those Events.
pub const ACTION: &str = "RequestServingCertificate";

/// Events about a cluster-scoped Node live in `default`, as the kubelet's do.
const NAMESPACE: &str = "default";

/// The largest note the events API accepts is 1 KiB.
const MAX_NOTE: usize = 1000;

/// Nanoseconds since the epoch, never the same twice in this process.
fn unique() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    now + u128::from(SEQ.fetch_add(1, Ordering::Relaxed))
}

#[derive(Clone)]
pub(crate) struct NodeEvents {
    client: kube::Client,
    node: String,
}

impl NodeEvents {
    pub fn new(client: kube::Client, node: &str) -> Self {
        Self {
            client,
            node: node.to_owned(),
        }
    }

    pub async fn normal(&self, reason: &str, note: String) {
        self.publish("Normal", reason, note).await;
    }

    pub async fn warning(&self, reason: &str, note: String) {
        self.publish("Warning", reason, note).await;
    }

    async fn publish(&self, kind: &str, reason: &str, mut note: String) {
        if note.len() > MAX_NOTE {
            let mut cut = MAX_NOTE;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
        }
        let event = Event {
            metadata: ObjectMeta {
                // As client-go names Events: the object's name and a unique hex suffix.
                name: Some(format!("{}.{:x}", self.node, unique())),
                namespace: Some(NAMESPACE.into()),
                ..Default::default()
            },
            event_time: Some(MicroTime(Timestamp::now())),
            action: Some(ACTION.into()),
            reason: Some(reason.into()),
            note: Some(note),
            type_: Some(kind.into()),
            reporting_controller: Some("vk-stackpath".into()),
            reporting_instance: Some(self.node.clone()),
            // As the kubelet refers to its Node: the name stands in for the UID.
            regarding: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(self.node.clone()),
                uid: Some(self.node.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), NAMESPACE);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::warn!(node = %self.node, reason, error = %e, "could not write an Event on the Node");
        }
    }
}
