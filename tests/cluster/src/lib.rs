//! A real Kubernetes control plane for tests and the demo: etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler built from Kubernetes' own Go modules (pinned by
//! the wrapper modules under `go/`) and run on loopback with a generated PKI, the way envtest and
//! kwokctl's binary runtime do. There is no kubelet: the daemon under test is the node agent.
//!
//! Tests use [`Cluster::shared`] (one lazily started cluster per test binary, killed when the
//! binary exits) and [`Cluster::new_namespace`]; dedicated clusters come from
//! [`Cluster::builder`].

pub mod build;
pub mod cluster;
pub mod error;
mod identities;
pub mod kubeconfig;
pub mod logs;
pub mod paths;
pub mod pki;
pub mod process;
pub mod version;

pub use build::{Binaries, Progress, StderrProgress, ensure_binaries};
pub use cluster::{Cluster, ClusterBuilder, LogDumpGuard};
pub use error::{Error, Result};
pub use version::K8sVersion;

/// Namespace and name of the daemon's ServiceAccount (deploy/base).
pub const DAEMON_NAMESPACE: &str = "vk-stackpath";
pub const DAEMON_SERVICE_ACCOUNT: &str = "vk-stackpath";
