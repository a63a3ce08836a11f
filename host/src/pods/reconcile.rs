//! One pass over one pod. kube-runtime guarantees passes over the same pod never overlap, so
//! a pod deleted while its workload is being created is seen as deleted by the next pass,
//! which then deletes the workload it just created.
//!
//! Data flows one way: pod → resolved inputs → policy → StackPath call → status.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use tokio::time::Instant;

use super::controller::Context;
use super::events::reason;
use super::status;
use super::tracker::{self, Tracked};
use crate::resolve::{self, Objects};
use crate::translation::{self, TranslateError, Translated};
use crate::workload::{Identity, LABEL_POD_NAME, LABEL_POD_NAMESPACE};

/// Failures that make kube-runtime retry the pass (Kubernetes API errors); StackPath errors
/// are handled inside the pass, where the pod's status can say why it waits.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How long at most a settled pod's poll yields at a time.
const DEFER_FOR: Duration = Duration::from_secs(5);

fn identity(pod: &Pod, ctx: &Context) -> Identity {
    Identity {
        namespace: pod.namespace().unwrap_or_else(|| "default".into()),
        pod_name: pod.name_any(),
        node_name: ctx.placement.node_name.clone(),
        city_code: ctx.placement.city_code.clone(),
    }
}

fn images(pod: &Pod) -> Vec<(String, String)> {
    let spec = pod.spec.as_ref();
    spec.map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .chain(
            spec.and_then(|s| s.init_containers.as_deref())
                .unwrap_or_default(),
        )
        .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
        .collect()
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

pub async fn reconcile(pod: Arc<Pod>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let key = tracker::key(&pod.namespace().unwrap_or_default(), &pod.name_any());
    if pod.metadata.deletion_timestamp.is_some() {
        return delete(&pod, &ctx, &key).await;
    }
    let fast = ctx.timing.fast;
    let uid = pod.uid();
    let t = ctx.tracker.with(&key, fast, |t| {
        if t.uid.is_none() {
            t.uid = uid.clone();
        }
        t.clone()
    });
    if t.uid != uid {
        // Same name, new pod (the old one was force-deleted): the workload is the old pod's.
        return replace_stale(&pod, &ctx, &key, t).await;
    }
    if t.finished {
        return Ok(Action::await_change());
    }
    let Some(workload_id) = t.workload_id.clone() else {
        if is_terminal(&pod) {
            // Failed by an earlier run of the daemon (rejected, or its workload vanished).
            ctx.tracker.with(&key, fast, |t| t.finished = true);
            return Ok(Action::await_change());
        }
        return create(&pod, &ctx, &key, &t).await;
    };
    if !t.images.is_empty() && t.images != images(&pod) {
        return update(&pod, &ctx, &key, &workload_id, &t).await;
    }
    let now = Instant::now();
    if now < t.next_poll {
        return Ok(Action::requeue(t.next_poll - now));
    }
    poll(&pod, &ctx, &key, &workload_id, &t).await
}

async fn translate(
    pod: &Pod,
    ctx: &Context,
    objects: Objects,
) -> Result<Translated, TranslateError> {
    let engine = ctx.policy.current();
    let placement = ctx.placement.clone();
    let pod = pod.clone();
    let metrics = ctx.metrics.clone();
    // Policy calls are synchronous and bounded (deadline); keep them off the async workers.
    let result = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let json = serde_json::to_string(&pod).unwrap_or_default();
        let out = translation::translate(&engine, &pod, &json, &objects, &placement);
        metrics.policy_call(started.elapsed(), out.as_ref().err());
        out
    })
    .await;
    match result {
        Ok(r) => r,
        Err(join) => Err(TranslateError::Pod(vec![crate::policy::Violation {
            path: String::new(),
            message: format!("the policy call did not complete: {join}"),
        }])),
    }
}

/// Why a pod's workload could not be prepared.
enum Unprepared {
    /// Reading the pod or the ConfigMaps/Secrets it refers to failed: retried.
    Kube(kube::Error),
    /// The policy or the host's validation refused the pod.
    Rejected(TranslateError),
    /// The pod is gone, or was replaced by another of the same name, since it was cached.
    Replaced,
}

/// Resolution then translation: the workload the pod should have.
/// The pod is read fresh first: the cached copy lacks what only translation needs
/// (`controller::trim_for_cache`).
async fn prepare(pod: &Pod, ctx: &Context) -> Result<Translated, Unprepared> {
    let api: Api<Pod> = Api::namespaced(
        ctx.kube.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let mut full = match api
        .get_opt(pod.metadata.name.as_deref().unwrap_or_default())
        .await
        .map_err(Unprepared::Kube)?
    {
        Some(full) if full.metadata.uid == pod.metadata.uid => full,
        // Deleted, perhaps created again under the same name.
        _ => return Err(Unprepared::Replaced),
    };
    super::controller::trim_for_policy(&mut full);
    let objects = resolve::fetch_objects(&ctx.kube, &full)
        .await
        .map_err(Unprepared::Kube)?;
    translate(&full, ctx, objects)
        .await
        .map_err(Unprepared::Rejected)
}

async fn kube_unavailable(
    pod: &Pod,
    ctx: &Context,
    key: &str,
    t: &Tracked,
    e: kube::Error,
) -> Result<Action, ReconcileError> {
    let message = format!("cannot read the pod or the ConfigMaps/Secrets it refers to: {e}");
    transient(pod, ctx, key, t, "KubernetesUnavailable", message).await
}

fn rejection_message(e: &TranslateError) -> String {
    match e {
        TranslateError::Pod(_) => format!("the pod cannot run on StackPath: {e}"),
        // The policy error already names the policy and each field.
        TranslateError::Policy(_) => e.to_string(),
    }
}

async fn create(
    pod: &Pod,
    ctx: &Context,
    key: &str,
    t: &Tracked,
) -> Result<Action, ReconcileError> {
    let fast = ctx.timing.fast;
    let translated = match prepare(pod, ctx).await {
        Ok(t) => t,
        Err(Unprepared::Kube(e)) => return kube_unavailable(pod, ctx, key, t, e).await,
        // The watch delivers the pod's successor (or its deletion) and triggers its own pass.
        Err(Unprepared::Replaced) => return Ok(Action::await_change()),
        Err(Unprepared::Rejected(e)) => {
            let message = rejection_message(&e);
            return fail(pod, ctx, key, reason::PROVIDER_FAILED, &message).await;
        }
    };
    for w in &translated.warnings {
        ctx.events
            .warning(pod, reason::POLICY_WARNING, "Translate", w.to_string())
            .await;
    }
    let slug = translated.workload.slug.clone().unwrap_or_default();
    match ctx.stackpath.create_workload(&translated.workload).await {
        Ok(w) => {
            let labels = w.metadata.as_ref().map(|m| &m.labels);
            let ours = labels.is_some_and(|l| {
                l.get(LABEL_POD_NAME) == Some(&translated.identity.pod_name)
                    && l.get(LABEL_POD_NAMESPACE) == Some(&translated.identity.namespace)
            });
            if !ours {
                let message = format!(
                    "a StackPath workload with slug `{slug}` already exists and belongs to \
                     another pod ({}); rename this pod or its namespace",
                    labels
                        .map(|l| format!(
                            "{}/{}",
                            l.get(LABEL_POD_NAMESPACE)
                                .map(String::as_str)
                                .unwrap_or("?"),
                            l.get(LABEL_POD_NAME).map(String::as_str).unwrap_or("?")
                        ))
                        .unwrap_or_else(|| "unlabelled".into())
                );
                return fail(pod, ctx, key, reason::PROVIDER_FAILED, &message).await;
            }
            let id = w.id.clone().unwrap_or_default();
            let pod_images = images(pod);
            ctx.tracker.with(key, fast, |t| {
                t.workload_id = Some(id.clone());
                t.images = pod_images;
                t.instance_name = translated.identity.instance_name().ok();
                t.interval = fast;
                t.next_poll = Instant::now() + fast;
                t.failures = 0;
                t.transient_reported = false;
            });
            ctx.events
                .normal(
                    pod,
                    reason::CREATED,
                    "Create",
                    format!(
                        "created StackPath workload `{slug}` (id {id}) in {} with policy `{}`",
                        ctx.placement.city_code,
                        ctx.policy.current().label()
                    ),
                )
                .await;
            write_status(pod, ctx, status::from_instance(pod, None, &ctx.host_ip)).await?;
            Ok(Action::requeue(fast))
        }
        Err(e) if e.is_transient() => {
            transient(
                pod,
                ctx,
                key,
                t,
                reason::STACKPATH_UNAVAILABLE,
                format!("creating the StackPath workload `{slug}` failed and will be retried: {e}"),
            )
            .await
        }
        Err(e) => {
            let message = format!("StackPath refused the workload `{slug}`: {e}");
            fail(pod, ctx, key, reason::PROVIDER_FAILED, &message).await
        }
    }
}

async fn update(
    pod: &Pod,
    ctx: &Context,
    key: &str,
    workload_id: &str,
    t: &Tracked,
) -> Result<Action, ReconcileError> {
    let fast = ctx.timing.fast;
    let translated = match prepare(pod, ctx).await {
        Ok(t) => t,
        Err(Unprepared::Kube(e)) => return kube_unavailable(pod, ctx, key, t, e).await,
        // The watch delivers the pod's successor (or its deletion) and triggers its own pass.
        Err(Unprepared::Replaced) => return Ok(Action::await_change()),
        Err(Unprepared::Rejected(e)) => {
            // The running workload stays as it is; the user hears why the change was not applied.
            let message = rejection_message(&e);
            ctx.events
                .warning(pod, reason::PROVIDER_FAILED, "Update", message)
                .await;
            ctx.tracker.with(key, fast, |t| t.images = images(pod));
            return Ok(Action::requeue(fast));
        }
    };
    let mut workload = translated.workload;
    workload.id = Some(workload_id.to_owned());
    match ctx.stackpath.update_workload(workload_id, &workload).await {
        Ok(_) => {
            let pod_images = images(pod);
            let note = pod_images
                .iter()
                .map(|(c, i)| format!("{c}={i}"))
                .collect::<Vec<_>>()
                .join(", ");
            ctx.tracker.with(key, fast, |t| {
                t.images = pod_images;
                t.interval = fast;
                t.next_poll = Instant::now() + fast;
            });
            ctx.events
                .normal(
                    pod,
                    reason::UPDATED,
                    "Update",
                    format!("updated the workload's images: {note}"),
                )
                .await;
            Ok(Action::requeue(fast))
        }
        Err(e) if e.is_not_found() => workload_gone(pod, ctx, key, workload_id).await,
        Err(e) if e.is_transient() => {
            transient(
                pod,
                ctx,
                key,
                t,
                reason::STACKPATH_UNAVAILABLE,
                format!("updating the StackPath workload failed and will be retried: {e}"),
            )
            .await
        }
        Err(e) => {
            ctx.events
                .warning(
                    pod,
                    reason::PROVIDER_FAILED,
                    "Update",
                    format!("StackPath refused the update: {e}"),
                )
                .await;
            ctx.tracker.with(key, fast, |t| t.images = images(pod));
            Ok(Action::requeue(fast))
        }
    }
}

async fn poll(
    pod: &Pod,
    ctx: &Context,
    key: &str,
    workload_id: &str,
    t: &Tracked,
) -> Result<Action, ReconcileError> {
    let pacing = ctx.pacing();
    // A settled pod's re-check can wait while the rate limit is exhausted (pods being created,
    // pods changing), rather than queue in front of them; for at most one settled interval, so
    // with more pods than the rate allows, settled pods are polled less often, never starved.
    // Polls of changing pods queue: they carry the status lag.
    let now = Instant::now();
    let deferred_since = t.deferred_since.unwrap_or(now);
    if t.interval > ctx.timing.fast
        && now.duration_since(deferred_since) < ctx.timing.settled
        && ctx.stackpath.is_rate_limited()
    {
        let wait = pacing.jitter(t.interval.min(DEFER_FOR));
        ctx.tracker.with(key, ctx.timing.fast, |t| {
            t.deferred_since = Some(deferred_since);
            t.next_poll = now + wait;
        });
        return Ok(Action::requeue(wait));
    }
    let instances = match ctx.stackpath.list_all_instances(workload_id).await {
        Ok(list) => list,
        Err(e) if e.is_not_found() => return workload_gone(pod, ctx, key, workload_id).await,
        Err(e) => {
            tracing::debug!(pod = key, error = %e, "instance poll failed; retrying");
            let wait = backoff(t.failures);
            ctx.tracker.with(key, ctx.timing.fast, |t| {
                t.failures += 1;
                t.next_poll = Instant::now() + wait;
            });
            return Ok(Action::requeue(wait));
        }
    };
    let wanted = t.instance_name.clone();
    let instance = instances
        .iter()
        .find(|i| i.name.is_some() && i.name == wanted)
        .or_else(|| instances.first());
    let new = status::from_instance(pod, instance, &ctx.host_ip);
    let changed = status::differs(pod, &new);
    let settled = status::is_settled(&new);
    let terminal_now = matches!(new.phase.as_deref(), Some("Succeeded" | "Failed"));
    if changed && !is_terminal(pod) {
        write_status(pod, ctx, new).await?;
    }
    let interval = pacing.next(t.interval, changed, settled);
    let wait = pacing.jitter(interval);
    let instance_name = instance.and_then(|i| i.name.clone());
    ctx.tracker.with(key, ctx.timing.fast, |t| {
        t.interval = interval;
        t.next_poll = Instant::now() + wait;
        t.failures = 0;
        t.deferred_since = None;
        t.has_instance = instance.is_some();
        if instance_name.is_some() {
            t.instance_name = instance_name;
        }
    });
    if terminal_now && is_terminal(pod) {
        // Nothing changes after a terminal phase; the pod's deletion wakes us.
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(wait))
}

fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(6)).min(BACKOFF_MAX)
}

async fn transient(
    pod: &Pod,
    ctx: &Context,
    key: &str,
    t: &Tracked,
    why: &str,
    message: String,
) -> Result<Action, ReconcileError> {
    let wait = backoff(t.failures);
    tracing::info!(pod = key, retry_in = ?wait, "{message}");
    if !t.transient_reported {
        ctx.events
            .warning(pod, why, "Create", message.clone())
            .await;
    }
    ctx.tracker.with(key, ctx.timing.fast, |t| {
        t.failures += 1;
        t.transient_reported = true;
    });
    write_status(pod, ctx, status::pending(pod, why, &message, &ctx.host_ip)).await?;
    Ok(Action::requeue(wait))
}

/// Fails the pod for good, with an Event; the daemon runs nothing for it.
async fn fail(
    pod: &Pod,
    ctx: &Context,
    key: &str,
    why: &str,
    message: &str,
) -> Result<Action, ReconcileError> {
    tracing::warn!(pod = key, reason = why, "{message}");
    ctx.events
        .warning(pod, why, "Create", message.to_owned())
        .await;
    write_status(pod, ctx, status::failed(pod, why, message, &ctx.host_ip)).await?;
    ctx.tracker
        .with(key, ctx.timing.fast, |t| t.finished = true);
    Ok(Action::await_change())
}

async fn workload_gone(
    pod: &Pod,
    ctx: &Context,
    key: &str,
    workload_id: &str,
) -> Result<Action, ReconcileError> {
    let slug = identity(pod, ctx).slug().unwrap_or_default();
    let message = format!(
        "the StackPath workload `{slug}` (id {workload_id}) was deleted outside Kubernetes; \
         delete this pod to run it again (a Deployment or Job replaces it by itself)"
    );
    ctx.tracker
        .with(key, ctx.timing.fast, |t| t.workload_id = None);
    fail(pod, ctx, key, reason::WORKLOAD_DELETED, &message).await
}

async fn write_status(pod: &Pod, ctx: &Context, new: PodStatus) -> Result<(), ReconcileError> {
    if !status::differs(pod, &new) {
        return Ok(());
    }
    let api: Api<Pod> = Api::namespaced(ctx.kube.clone(), &pod.namespace().unwrap_or_default());
    let patch = serde_json::json!({ "status": new });
    match api
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        // The pod is gone: nothing to write to.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A pod with `deletionTimestamp`: delete its workload, wait until StackPath says it is gone
/// (at most the pod's grace period), then remove the pod object.
async fn delete(pod: &Pod, ctx: &Context, key: &str) -> Result<Action, ReconcileError> {
    let fast = ctx.timing.fast;
    let mut t = ctx.tracker.get(key);
    if t.as_ref()
        .is_none_or(|t| t.workload_id.is_none() && t.uid.is_none())
    {
        // Never seen by this process (e.g. deleted while the daemon was down): ask StackPath.
        if let Ok(slug) = identity(pod, ctx).slug()
            && let Ok(Some(w)) = ctx.stackpath.find_workload_by_slug(&slug).await
            && w.metadata
                .as_ref()
                .is_some_and(|m| m.labels.get(LABEL_POD_NAME) == Some(&pod.name_any()))
        {
            ctx.tracker
                .with(key, fast, |t| t.workload_id = w.id.clone());
            t = ctx.tracker.get(key);
        }
    }
    let workload_id = t.as_ref().and_then(|t| t.workload_id.clone());
    let grace = Duration::from_secs(
        pod.metadata
            .deletion_grace_period_seconds
            .unwrap_or(30)
            .max(0) as u64,
    );
    if let Some(id) = workload_id {
        let since = t.as_ref().and_then(|t| t.deleting_since);
        let since = match since {
            Some(s) => s,
            None => {
                match ctx.stackpath.delete_workload(&id).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => {
                        tracing::info!(pod = key, error = %e, "deleting the workload failed; retrying");
                        return Ok(Action::requeue(backoff(1)));
                    }
                }
                ctx.events
                    .normal(
                        pod,
                        reason::DELETING,
                        "Delete",
                        format!("deleting StackPath workload {id}"),
                    )
                    .await;
                let now = Instant::now();
                ctx.tracker
                    .with(key, fast, |t| t.deleting_since = Some(now));
                now
            }
        };
        let gone = match ctx.stackpath.get_workload(&id).await {
            Err(e) if e.is_not_found() => true,
            Ok(_) | Err(_) => false,
        };
        if !gone && since.elapsed() < grace {
            return Ok(Action::requeue(fast));
        }
        if !gone {
            tracing::warn!(
                pod = key,
                workload = id,
                "StackPath still lists the workload after the grace period; removing the pod anyway"
            );
        }
    }
    let api: Api<Pod> = Api::namespaced(ctx.kube.clone(), &pod.namespace().unwrap_or_default());
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&pod.name_any(), &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    ctx.tracker.remove(key);
    Ok(Action::await_change())
}

/// The tracked workload belongs to an earlier pod of the same name: delete it first.
async fn replace_stale(
    pod: &Pod,
    ctx: &Context,
    key: &str,
    t: Tracked,
) -> Result<Action, ReconcileError> {
    if let Some(id) = &t.workload_id {
        match ctx.stackpath.delete_workload(id).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(_) => return Ok(Action::requeue(backoff(1))),
        }
        if !matches!(ctx.stackpath.get_workload(id).await, Err(e) if e.is_not_found()) {
            return Ok(Action::requeue(ctx.timing.fast));
        }
    }
    ctx.tracker.remove(key);
    let _ = pod;
    Ok(Action::requeue(Duration::ZERO))
}
