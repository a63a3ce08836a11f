//! Workloads whose pod no longer exists (force-deleted while the daemon was down, or deleted
//! with grace 0): removed after a grace window, each removal logged. A workload whose pod
//! exists is never touched here.

use std::collections::HashMap;
use std::sync::Arc;

use std::collections::HashSet;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::time::Instant;

use super::adopt;
use super::context::Context;
use super::tracker;

/// Runs sweeps every `sweep_interval` until cancelled.
pub async fn run(ctx: Arc<Context>) {
    tracing::debug!(every = ?ctx.timing.sweep_interval, grace = ?ctx.timing.orphan_grace, "orphan sweeps start");
    let mut first_seen: HashMap<String, Instant> = HashMap::new();
    loop {
        match sweep(&ctx, &mut first_seen).await {
            Ok(_) => {}
            Err(SweepError::StackPath(e)) => {
                tracing::info!(error = %e, "orphan sweep: cannot list workloads; trying again next round")
            }
            Err(SweepError::Kube(e)) => {
                tracing::info!(error = %e, "orphan sweep: cannot list pods; trying again next round")
            }
        }
        // The sweep's lists are the largest transient allocations of a settled daemon.
        crate::memory::release_free_memory();
        tokio::time::sleep(ctx.timing.sweep_interval).await;
    }
}

/// Pods that vanish without graceful deletion (the API server removes terminal pods at once;
/// `--force --grace-period=0` too) never reach a reconcile pass. Every `every`, tracked pods
/// that this process saw and that have left the watch cache are confirmed gone with a GET,
/// then their workloads deleted, without waiting for the orphan sweep's grace window.
pub async fn run_vanished(ctx: Arc<Context>, store: Store<Pod>, every: std::time::Duration) {
    loop {
        tokio::time::sleep(every).await;
        for (key, t) in ctx.tracker.snapshot() {
            let (Some(uid), Some(id)) = (t.uid(), t.workload_id()) else {
                continue;
            };
            let Some((ns, name)) = key.split_once('/') else {
                continue;
            };
            if store.get(&ObjectRef::new(name).within(ns)).is_some() {
                continue;
            }
            let api: Api<Pod> = Api::namespaced(ctx.kube.clone(), ns);
            match api.get_metadata_opt(name).await {
                Ok(Some(p)) if p.metadata.uid.as_deref() == Some(uid) => continue,
                Ok(_) => {}
                Err(_) => continue,
            }
            tracing::info!(
                pod = key,
                workload = id,
                "pod removed without graceful deletion; deleting its workload"
            );
            match ctx.stackpath.delete_workload(id).await {
                Ok(()) => {
                    ctx.tracker.remove(&key);
                }
                Err(e) if e.is_not_found() => {
                    ctx.tracker.remove(&key);
                }
                Err(e) => {
                    tracing::info!(pod = key, error = %e, "deleting the workload failed; retrying")
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    StackPath(#[from] stackpath_client::Error),
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// Pods listed per request in the sweep (the API server's own default page for kubectl).
const POD_PAGE: u32 = 500;

/// This node's pods (`namespace/name`), listed fresh from the API server (not from the watch
/// cache: right after a start the cache may be empty, which would make every workload look
/// orphaned). Metadata only, a page at a time, keeping only the names.
async fn node_pods(ctx: &Context) -> Result<HashSet<String>, kube::Error> {
    let api: Api<Pod> = Api::all(ctx.kube.clone());
    let mut lp = ListParams::default()
        .fields(&format!("spec.nodeName={}", ctx.placement.node_name))
        .limit(POD_PAGE);
    let mut out = HashSet::new();
    loop {
        let page = api.list_metadata(&lp).await?;
        out.extend(page.items.into_iter().map(|p| {
            tracker::key(
                p.metadata.namespace.as_deref().unwrap_or_default(),
                p.metadata.name.as_deref().unwrap_or_default(),
            )
        }));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => return Ok(out),
        }
    }
}

pub async fn sweep(
    ctx: &Context,
    first_seen: &mut HashMap<String, Instant>,
) -> Result<usize, SweepError> {
    let workloads = adopt::node_workloads(ctx).await?;
    let pods = node_pods(ctx).await?;
    let now = Instant::now();
    let mut orphans = HashMap::new();
    for w in &workloads {
        if pods.contains(&w.pod_key()) {
            continue;
        }
        let since = *first_seen.get(&w.id).unwrap_or(&now);
        orphans.insert(w.id.clone(), since);
    }
    drop(pods);
    tracing::debug!(
        workloads = workloads.len(),
        orphans = orphans.len(),
        "orphan sweep"
    );
    let mut removed = 0;
    for (id, since) in &orphans {
        if now.duration_since(*since) < ctx.timing.orphan_grace {
            continue;
        }
        let w = workloads.iter().find(|w| &w.id == id);
        let pod = w.map(adopt::NodeWorkload::pod_key).unwrap_or_default();
        // Re-check right before deleting: the pod may have been created since the listing.
        let (ns, name) = pod.split_once('/').unwrap_or(("", ""));
        let pod_api: Api<Pod> = Api::namespaced(ctx.kube.clone(), ns);
        if !matches!(pod_api.get_metadata_opt(name).await, Ok(None)) {
            continue;
        }
        tracing::warn!(
            workload = id,
            pod,
            "deleting workload: its pod has been gone for longer than the orphan grace period"
        );
        match ctx.stackpath.delete_workload(id).await {
            Ok(()) => removed += 1,
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                tracing::info!(workload = id, error = %e, "deleting orphan failed; retrying next sweep")
            }
        }
        ctx.tracker.remove(&pod);
    }
    *first_seen = orphans;
    Ok(removed)
}
