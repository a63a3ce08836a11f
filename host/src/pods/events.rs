//! Pod Events (events.k8s.io/v1 through kube-runtime's recorder, which folds repeats into a
//! series). An Event that cannot be written is logged and otherwise ignored: Events are
//! advisory, and a pod must not stall because the events API is slow.

use k8s_openapi::api::core::v1::Pod;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// Reasons the daemon gives, as `kubectl describe pod` shows them.
pub mod reason {
    pub const CREATING: &str = "CreatingWorkload";
    pub const CREATED: &str = "WorkloadCreated";
    pub const ADOPTED: &str = "WorkloadAdopted";
    pub const UPDATED: &str = "WorkloadUpdated";
    pub const DELETING: &str = "DeletingWorkload";
    pub const POLICY_WARNING: &str = "PolicyWarning";
    pub const PROVIDER_FAILED: &str = super::super::status::REASON_PROVIDER_FAILED;
    pub const WORKLOAD_DELETED: &str = super::super::status::REASON_WORKLOAD_DELETED;
    pub const STACKPATH_UNAVAILABLE: &str = "StackPathUnavailable";
    pub const RUNNING: &str = "Started";
}

/// The largest note the events API accepts is 1 KiB.
const MAX_NOTE: usize = 1000;

pub struct Events {
    recorder: Recorder,
}

impl Events {
    pub fn new(client: kube::Client, node_name: &str) -> Self {
        let reporter = Reporter {
            controller: "vk-stackpath".into(),
            instance: Some(node_name.to_owned()),
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
    }

    pub async fn normal(&self, pod: &Pod, reason: &str, action: &str, note: String) {
        self.publish(pod, EventType::Normal, reason, action, note)
            .await;
    }

    pub async fn warning(&self, pod: &Pod, reason: &str, action: &str, note: String) {
        self.publish(pod, EventType::Warning, reason, action, note)
            .await;
    }

    async fn publish(&self, pod: &Pod, type_: EventType, reason: &str, action: &str, note: String) {
        let note = truncate(note);
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &pod.object_ref(&())).await {
            tracing::warn!(
                pod = %format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or("")),
                reason,
                error = %e,
                "could not write an Event"
            );
        }
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_NOTE {
        let mut cut = MAX_NOTE - 3;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}
