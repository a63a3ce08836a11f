//! Where a pod's container runs on StackPath: the question the daemon answers from its pod cache.

use k8s_openapi::api::core::v1::Pod;

/// Implemented by the daemon from its pod cache.
pub trait PodLocator: Send + Sync + 'static {
    /// (namespace, pod name, container name) → where that container runs, or a typed error
    /// whose message is shown to the user.
    fn locate(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<ContainerLocation, LocateError>;

    /// This node's pods as the daemon knows them (for `/pods`, `/runningpods/` and stats).
    fn pods(&self) -> Vec<Pod>;

    /// The output a finished pod's container left (timestamped lines, as StackPath gives them
    /// with `timestamps=true`), kept because its workload is gone; `Err` says why there is none.
    fn finished_logs(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<bytes::Bytes, String> {
        let _ = (namespace, pod, container);
        Err("this node keeps no logs of finished pods".into())
    }
}

/// A container's place on StackPath.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerLocation {
    pub workload_id: String,
    pub instance_name: String,
    /// The container's name on StackPath (usually the Kubernetes name).
    pub container: String,
}

/// Why a container cannot be reached; each message tells the user what is wrong.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LocateError {
    #[error(
        "pod {namespace}/{pod} is not on this node (the StackPath virtual node); check the pod's spec.nodeName"
    )]
    PodNotFound { namespace: String, pod: String },
    #[error("container {container:?} is not valid for pod {namespace}/{pod}; valid containers: {}", valid.join(", "))]
    NoSuchContainer {
        namespace: String,
        pod: String,
        container: String,
        valid: Vec<String>,
    },
    #[error(
        "container {container:?} of pod {namespace}/{pod} is an init container; StackPath runs init containers to completion before the pod starts, so there is nothing to exec into or follow any more"
    )]
    InitContainer {
        namespace: String,
        pod: String,
        container: String,
    },
    #[error(
        "pod {namespace}/{pod} has no StackPath workload yet (it is still being created); retry in a few seconds"
    )]
    NoWorkloadYet { namespace: String, pod: String },
    #[error(
        "pod {namespace}/{pod} has no running StackPath instance yet; wait until the pod is Running"
    )]
    NoInstanceYet { namespace: String, pod: String },
    #[error(
        "pod {namespace}/{pod} has finished ({phase}): {why}; there is nothing to exec into or attach to"
    )]
    Finished {
        namespace: String,
        pod: String,
        phase: String,
        /// What ended it, in a phrase.
        why: String,
    },
}

impl LocateError {
    /// The HTTP status the kubelet would answer with.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::PodNotFound { .. } => http::StatusCode::NOT_FOUND,
            Self::NoSuchContainer { .. } | Self::InitContainer { .. } | Self::Finished { .. } => {
                http::StatusCode::BAD_REQUEST
            }
            Self::NoWorkloadYet { .. } | Self::NoInstanceYet { .. } => {
                http::StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}
