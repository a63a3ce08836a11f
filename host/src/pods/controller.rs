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

use super::context::Context;
use super::reconcile::{self, ReconcileError};

/// The controller over this node's pods; `store()` on it gives the pod cache the kubelet API
/// and the orphan sweep read.
pub fn controller(client: kube::Client, node_name: &str) -> Controller<Pod> {
    let pods: Api<Pod> = Api::all(client);
    let wc = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
    let (reader, writer) = kube::runtime::reflector::store();
    let stream = watcher(pods, wc)
        .default_backoff()
        .modify(super::trim::for_cache)
        .reflect(writer)
        .applied_objects();
    Controller::for_stream(stream, reader)
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
