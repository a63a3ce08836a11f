//! The reasons the pod path gives, in Events and in pod status, as `kubectl describe pod`
//! shows them. One list, so that a reason cannot be spelt two ways.

/// The workload was created.
pub const CREATED: &str = "WorkloadCreated";
/// The workload was changed to follow the pod (images).
pub const UPDATED: &str = "WorkloadUpdated";
/// The pod is being deleted; so is its workload.
pub const DELETING: &str = "DeletingWorkload";
/// Something the policy did not carry over, or changed.
pub const POLICY_WARNING: &str = "PolicyWarning";
/// The pod cannot run on StackPath (policy rejection, invalid references, refused workload).
pub const PROVIDER_FAILED: &str = "ProviderFailed";
/// The workload disappeared from StackPath without the daemon deleting it.
pub const WORKLOAD_DELETED: &str = "WorkloadDeleted";
/// StackPath is unreachable or rate-limiting; retried.
pub const STACKPATH_UNAVAILABLE: &str = "StackPathUnavailable";
/// The API server could not be read (the pod, its ConfigMaps or Secrets); retried.
pub const KUBERNETES_UNAVAILABLE: &str = "KubernetesUnavailable";
/// The daemon itself failed while preparing the workload (not the pod's fault); retried.
pub const DAEMON_ERROR: &str = "DaemonError";
/// A DaemonSet's pod, not run at StackPath (`--daemonset-pods=skip`).
pub const DAEMONSET_POD_SKIPPED: &str = "DaemonSetPodSkipped";
/// `activeDeadlineSeconds` passed (the kubelet's reason).
pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
/// A run-to-completion pod's containers finished; its workload was deleted.
pub const COMPLETED: &str = "WorkloadCompleted";

/// The `action` of an Event: what the daemon was doing.
pub mod action {
    pub const CREATE: &str = "Create";
    pub const UPDATE: &str = "Update";
    pub const DELETE: &str = "Delete";
    pub const TRANSLATE: &str = "Translate";
}
