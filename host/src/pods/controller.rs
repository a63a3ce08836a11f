//! kube-runtime's controller over the pods bound to this node: its watcher (field selector
//! `spec.nodeName=<node>`), reflector store, per-pod queue with de-duplication, concurrency
//! limit and requeues carry the whole pod path; [`super::reconcile`] is one pass.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::{WatchStreamExt, watcher};

use super::events::Events;
use super::reconcile::{self, ReconcileError};
use super::tracker::{Pacing, Tracker};
use crate::active_policy::ActivePolicy;
use crate::metrics::Metrics;
use crate::translation::Placement;

/// Timings of the pod path (flags of `vk-stackpath run`).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Poll interval while a pod is changing.
    pub fast: Duration,
    /// Poll interval once a pod is settled (≤ 1 StackPath call per pod per this interval).
    pub settled: Duration,
    /// How long a workload without a pod is left alone before it is deleted.
    pub orphan_grace: Duration,
    /// How often workloads are listed to find orphans.
    pub sweep_interval: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            fast: Duration::from_secs(1),
            settled: Duration::from_secs(60),
            orphan_grace: Duration::from_secs(60),
            sweep_interval: Duration::from_secs(60),
        }
    }
}

/// Everything a reconcile pass needs; shared by all workers.
pub struct Context {
    pub kube: kube::Client,
    pub stackpath: stackpath_client::Client,
    pub policy: Arc<ActivePolicy>,
    pub placement: Placement,
    /// The node's InternalIP, reported as each pod's hostIP.
    pub host_ip: String,
    pub events: Events,
    pub tracker: Tracker,
    pub timing: Timing,
    pub metrics: Arc<Metrics>,
}

impl Context {
    pub fn pacing(&self) -> Pacing {
        Pacing {
            fast: self.timing.fast,
            settled: self.timing.settled,
        }
    }
}

/// The controller over this node's pods; `store()` on it gives the pod cache the kubelet API
/// and the orphan sweep read.
pub fn controller(client: kube::Client, node_name: &str) -> Controller<Pod> {
    let pods: Api<Pod> = Api::all(client);
    let wc = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
    let (reader, writer) = kube::runtime::reflector::store();
    let stream = watcher(pods, wc)
        .default_backoff()
        .modify(trim_for_cache)
        .reflect(writer)
        .applied_objects();
    Controller::for_stream(stream, reader)
}

/// What no part of the daemon reads, nor should a policy see: managedFields and kubectl's
/// last-applied copy of the manifest (often the largest parts of a pod).
pub fn trim_for_policy(p: &mut Pod) {
    p.metadata.managed_fields = None;
    if let Some(a) = p.metadata.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// The cache holds every pod of the node for as long as it runs (~12 KB each as k8s-openapi
/// types, mostly volumes), but after translation the daemon reads only identity, container
/// names and images, scalar spec fields and status. So the cached copy drops what only
/// translation needs (volumes, env, mounts, commands, probes, hooks, pull secrets, affinity):
/// translation reads the pod fresh from the API server (`reconcile::prepare`), and nothing
/// else may read these fields from the cache.
pub fn trim_for_cache(p: &mut Pod) {
    trim_for_policy(p);
    let Some(spec) = p.spec.as_mut() else {
        return;
    };
    spec.volumes = None;
    spec.image_pull_secrets = None;
    spec.affinity = None;
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for c in containers {
        c.env = None;
        c.env_from = None;
        c.volume_mounts = None;
        c.volume_devices = None;
        c.command = None;
        c.args = None;
        c.liveness_probe = None;
        c.readiness_probe = None;
        c.startup_probe = None;
        c.lifecycle = None;
        c.security_context = None;
        c.resources = None;
        c.resize_policy = None;
    }
}

/// Drives the controller until `shutdown` resolves (in-flight passes finish first).
pub async fn run(
    controller: Controller<Pod>,
    ctx: Arc<Context>,
    workers: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let metrics = ctx.metrics.clone();
    controller
        .with_config(ControllerConfig::default().concurrency(workers))
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, error_policy, ctx)
        .for_each(|result| {
            let metrics = metrics.clone();
            async move {
                match result {
                    Ok(_) => metrics.reconciles(true),
                    Err(e) => {
                        metrics.reconciles(false);
                        tracing::debug!(error = %e, "reconcile pass failed; retrying");
                    }
                }
            }
        })
        .await;
}

fn error_policy(pod: Arc<Pod>, error: &ReconcileError, _ctx: Arc<Context>) -> Action {
    tracing::warn!(
        pod = %format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or("")),
        error = %error,
        "pod pass failed; retrying in 5s"
    );
    Action::requeue(Duration::from_secs(5))
}

/// The pods in the cache (for `/pods` and stats).
pub fn pods(store: &Store<Pod>) -> Vec<Pod> {
    store.state().iter().map(|p| (**p).clone()).collect()
}
