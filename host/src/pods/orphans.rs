//! Workloads whose pod no longer exists (force-deleted while the daemon was down, or deleted
//! with grace 0): removed after a grace window, each removal logged. A workload whose pod
//! exists is never touched here.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::time::Instant;

use super::adopt::{self, label};
use super::controller::Context;
use crate::workload::{LABEL_POD_NAME, LABEL_POD_NAMESPACE};

/// Runs sweeps every `sweep_interval` until cancelled. Waits for the pod cache first: an
/// empty cache at start would make every workload look orphaned.
pub async fn run(ctx: Arc<Context>, store: Store<Pod>) {
    if store.wait_until_ready().await.is_err() {
        return;
    }
    let mut first_seen: HashMap<String, Instant> = HashMap::new();
    loop {
        if let Err(e) = sweep(&ctx, &store, &mut first_seen).await {
            tracing::info!(error = %e, "orphan sweep failed; trying again next round");
        }
        tokio::time::sleep(ctx.timing.sweep_interval).await;
    }
}

pub async fn sweep(
    ctx: &Context,
    store: &Store<Pod>,
    first_seen: &mut HashMap<String, Instant>,
) -> Result<usize, stackpath_client::Error> {
    let workloads = adopt::node_workloads(ctx).await?;
    let now = Instant::now();
    let mut orphans = HashMap::new();
    for w in &workloads {
        let (Some(ns), Some(name), Some(id)) = (
            label(w, LABEL_POD_NAMESPACE),
            label(w, LABEL_POD_NAME),
            w.id.as_deref(),
        ) else {
            continue;
        };
        if store.get(&ObjectRef::new(name).within(ns)).is_some() {
            continue;
        }
        let since = *first_seen.get(id).unwrap_or(&now);
        orphans.insert(id.to_owned(), since);
    }
    let mut removed = 0;
    for (id, since) in &orphans {
        if now.duration_since(*since) < ctx.timing.orphan_grace {
            continue;
        }
        let w = workloads.iter().find(|w| w.id.as_deref() == Some(id));
        let pod = w.and_then(adopt::pod_key).unwrap_or_default();
        // Re-check right before deleting: the pod may have been created since the listing.
        let (ns, name) = pod.split_once('/').unwrap_or(("", ""));
        if store.get(&ObjectRef::new(name).within(ns)).is_some() {
            continue;
        }
        tracing::warn!(workload = id, pod, "deleting workload: its pod has been gone for longer than the orphan grace period");
        match ctx.stackpath.delete_workload(id).await {
            Ok(()) => removed += 1,
            Err(e) if e.is_not_found() => {}
            Err(e) => tracing::info!(workload = id, error = %e, "deleting orphan failed; retrying next sweep"),
        }
        ctx.tracker.remove(&pod);
    }
    *first_seen = orphans;
    Ok(removed)
}
