//! One pass over one pod: asks [`decide::next_step`] what the pod needs, carries the step out
//! against StackPath and the API server, records what happened in the tracker, and asks
//! again until a step ends the pass. kube-runtime guarantees passes over the same pod never
//! overlap, so a pod deleted while its workload is being created is seen as deleted by the
//! next pass, which then deletes the workload it just created.
//!
//! Data flows one way: pod → resolved inputs → policy → StackPath call → status.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use tokio::time::Instant;

use super::context::Context;
use super::decide::{self, Clock, Deletion, Step};
use super::kept;
use super::reason::{self, action};
use super::status;
use super::tracker::{self, Tracked, backoff};
use crate::resolve::{self, Objects};
use crate::translation::{self, PreparedWorkload, TranslateError};
use crate::workload::Identity;

/// Failures that make kube-runtime retry the pass (Kubernetes API errors); StackPath errors
/// are handled inside the pass, where the pod's status can say why it waits.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

type Outcome = Result<Action, ReconcileError>;

pub async fn reconcile(pod: Arc<Pod>, ctx: Arc<Context>) -> Outcome {
    let key = tracker::key(&pod.namespace().unwrap_or_default(), &pod.name_any());
    let fast = ctx.timing.fast;
    if pod.metadata.deletion_timestamp.is_none() {
        ctx.tracker.with(&key, fast, |t| t.seen(pod.uid()));
    }
    loop {
        let tracked = ctx.tracker.get(&key);
        let clock = Clock {
            now: Instant::now(),
            wall: k8s_openapi::jiff::Timestamp::now(),
            fast,
            settled: ctx.timing.settled,
            rate_limited: ctx.stackpath.is_rate_limited(),
            daemonset_pods: ctx.daemonset_pods,
        };
        let step = decide::next_step(&pod, tracked.as_ref(), clock);
        let t = tracked.unwrap_or_else(|| Tracked::new(fast));
        return match step {
            Step::Delete(d) => match delete(&pod, &ctx, &key, d).await? {
                Some(action) => Ok(action),
                None => continue,
            },
            Step::ReplaceStale { workload_id } => {
                replace_stale(&ctx, &key, workload_id.as_deref()).await
            }
            Step::Done => Ok(Action::await_change()),
            Step::Finish => {
                ctx.tracker.with(&key, fast, Tracked::finish);
                Ok(Action::await_change())
            }
            Step::Create => create(&pod, &ctx, &key, &t).await,
            Step::Update { workload_id } => update(&pod, &ctx, &key, &workload_id, &t).await,
            Step::Wait(d) => Ok(Action::requeue(d)),
            Step::Defer { since, wait } => {
                let wait = ctx.timing.pacing().jitter(wait);
                let until = clock.now + wait;
                ctx.tracker.with(&key, fast, |t| t.deferred(since, until));
                Ok(Action::requeue(wait))
            }
            Step::Poll { workload_id } => poll(&pod, &ctx, &key, &workload_id, &t).await,
            Step::Skip => skip(&pod, &ctx, &key).await,
            Step::DeadlineExceeded { workload_id } => {
                let secs = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.active_deadline_seconds)
                    .unwrap_or_default();
                let message = format!(
                    "Pod was active on the node longer than the specified deadline \
                     (activeDeadlineSeconds {secs})"
                );
                end(
                    &pod,
                    &ctx,
                    &key,
                    workload_id.as_deref(),
                    reason::DEADLINE_EXCEEDED,
                    &message,
                )
                .await
            }
        };
    }
}

/// Why a pod's workload could not be prepared.
enum Unprepared {
    /// Reading the pod or the ConfigMaps/Secrets it refers to failed: retried.
    Kube(kube::Error),
    /// The policy or the host's validation refused the pod.
    Rejected(TranslateError),
    /// The daemon failed (the policy call's task died): not the pod's fault, retried.
    Daemon(String),
    /// The pod is gone, or was replaced by another of the same name, since it was cached.
    Replaced,
}

async fn translate(
    pod: Pod,
    ctx: &Context,
    objects: Objects,
) -> Result<PreparedWorkload, Unprepared> {
    let engine = ctx.policy.current();
    let placement = ctx.placement.clone();
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
        Ok(r) => r.map_err(Unprepared::Rejected),
        Err(join) => Err(Unprepared::Daemon(format!(
            "the policy call's task ended without an answer ({join}); this is a daemon error, \
             not the pod's: retrying"
        ))),
    }
}

/// Resolution then translation: the workload the pod should have.
/// The pod is read fresh first: the cached copy lacks what only translation needs
/// ([`super::trim::for_cache`]).
async fn prepare(pod: &Pod, ctx: &Context) -> Result<PreparedWorkload, Unprepared> {
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
    super::trim::for_policy(&mut full);
    let objects = resolve::fetch_objects(&ctx.kube, &full)
        .await
        .map_err(Unprepared::Kube)?;
    translate(full, ctx, objects).await
}

fn rejection_message(e: &TranslateError) -> String {
    match e {
        TranslateError::Pod(_) => format!("the pod cannot run on StackPath: {e}"),
        // The policy error already names the policy and each field.
        TranslateError::Policy(_) => e.to_string(),
    }
}

/// What went wrong while preparing, for a create (`action::CREATE`) or an update: `Ok` with the
/// pass's result when the pass ends here, `Err` with the rejection for the caller to handle.
async fn unprepared(
    pod: &Pod,
    ctx: &Context,
    key: &str,
    t: &Tracked,
    act: &'static str,
    why: Unprepared,
) -> Result<Outcome, TranslateError> {
    Ok(match why {
        Unprepared::Kube(e) => {
            let message =
                format!("cannot read the pod or the ConfigMaps/Secrets it refers to: {e}");
            transient(
                pod,
                ctx,
                key,
                t,
                reason::KUBERNETES_UNAVAILABLE,
                act,
                message,
            )
            .await
        }
        Unprepared::Daemon(message) => {
            transient(pod, ctx, key, t, reason::DAEMON_ERROR, act, message).await
        }
        // The watch delivers the pod's successor (or its deletion) and triggers its own pass.
        Unprepared::Replaced => Ok(Action::await_change()),
        Unprepared::Rejected(e) => return Err(e),
    })
}

async fn create(pod: &Pod, ctx: &Context, key: &str, t: &Tracked) -> Outcome {
    let prepared = match prepare(pod, ctx).await {
        Ok(p) => p,
        Err(why) => {
            return match unprepared(pod, ctx, key, t, action::CREATE, why).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    fail(
                        pod,
                        ctx,
                        key,
                        reason::PROVIDER_FAILED,
                        &rejection_message(&e),
                    )
                    .await
                }
            };
        }
    };
    for w in &prepared.warnings {
        ctx.events
            .warning(
                pod,
                reason::POLICY_WARNING,
                action::TRANSLATE,
                w.to_string(),
            )
            .await;
    }
    // As the kubelet does when it starts the containers: one Event per source.
    for skipped in &prepared.invalid_env_names {
        ctx.events
            .warning(
                pod,
                resolve::InvalidEnvNames::REASON,
                action::CREATE,
                skipped.message(),
            )
            .await;
    }
    let identity = &prepared.identity;
    let slug = prepared.workload.slug.clone().unwrap_or_default();
    match ctx.stackpath.create_workload(&prepared.workload).await {
        Ok(w) if !identity.owns(&w) => {
            let message = format!(
                "a StackPath workload with slug `{slug}` already exists and belongs to another \
                 pod ({}); rename this pod or its namespace",
                Identity::owner_of(&w).unwrap_or_else(|| "unlabelled".into())
            );
            fail(pod, ctx, key, reason::PROVIDER_FAILED, &message).await
        }
        Ok(w) => {
            let id = w.id.clone().unwrap_or_default();
            let instance = identity.instance_name().ok();
            let fast = ctx.timing.fast;
            let images = decide::images(pod);
            let config = prepared.config.clone();
            ctx.tracker.with(key, fast, |t| {
                t.created(id.clone(), images, instance, fast, Instant::now());
                t.config_applied(config, Instant::now());
            });
            ctx.events
                .normal(
                    pod,
                    reason::CREATED,
                    action::CREATE,
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
            let message =
                format!("creating the StackPath workload `{slug}` failed and will be retried: {e}");
            let why = reason::STACKPATH_UNAVAILABLE;
            transient(pod, ctx, key, t, why, action::CREATE, message).await
        }
        Err(e) => {
            let message = format!("StackPath refused the workload `{slug}`: {e}");
            fail(pod, ctx, key, reason::PROVIDER_FAILED, &message).await
        }
    }
}

async fn update(pod: &Pod, ctx: &Context, key: &str, workload_id: &str, t: &Tracked) -> Outcome {
    let fast = ctx.timing.fast;
    let refused = |message: String| async move {
        // The running workload stays as it is; the user hears why the change was not applied.
        ctx.events
            .warning(pod, reason::PROVIDER_FAILED, action::UPDATE, message)
            .await;
        let images = decide::images(pod);
        ctx.tracker.with(key, fast, |t| t.update_refused(images));
        Ok(Action::requeue(fast))
    };
    let prepared = match prepare(pod, ctx).await {
        Ok(p) => p,
        Err(why) => {
            return match unprepared(pod, ctx, key, t, action::UPDATE, why).await {
                Ok(outcome) => outcome,
                Err(e) => refused(rejection_message(&e)).await,
            };
        }
    };
    let mut workload = prepared.workload;
    workload.id = Some(workload_id.to_owned());
    let config = prepared.config;
    match ctx.stackpath.update_workload(workload_id, &workload).await {
        Ok(_) => {
            let images = decide::images(pod);
            let message = if t.config_changed().is_empty() {
                let note = images
                    .iter()
                    .map(|(c, i)| format!("{c}={i}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("updated the workload's images: {note}")
            } else {
                format!(
                    "updated the workload: {} changed",
                    t.config_changed().join(", ")
                )
            };
            ctx.tracker.with(key, fast, |t| {
                t.updated(images, fast, Instant::now());
                t.config_applied(config, Instant::now());
            });
            ctx.events
                .normal(pod, reason::UPDATED, action::UPDATE, message)
                .await;
            Ok(Action::requeue(fast))
        }
        Err(e) if e.is_not_found() => workload_gone(pod, ctx, key, workload_id).await,
        Err(e) if e.is_transient() => {
            let message =
                format!("updating the StackPath workload failed and will be retried: {e}");
            let why = reason::STACKPATH_UNAVAILABLE;
            transient(pod, ctx, key, t, why, action::UPDATE, message).await
        }
        Err(e) => refused(format!("StackPath refused the update: {e}")).await,
    }
}

async fn poll(pod: &Pod, ctx: &Context, key: &str, workload_id: &str, t: &Tracked) -> Outcome {
    let fast = ctx.timing.fast;
    let instances = match ctx.stackpath.list_all_instances(workload_id).await {
        Ok(list) => list,
        Err(e) if e.is_not_found() => return workload_gone(pod, ctx, key, workload_id).await,
        Err(e) => {
            tracing::debug!(pod = key, error = %e, "instance poll failed; retrying");
            let wait = ctx
                .tracker
                .with(key, fast, |t| t.poll_failed(Instant::now()));
            return Ok(Action::requeue(wait));
        }
    };
    let instance = instances
        .iter()
        .find(|i| i.name.is_some() && i.name.as_deref() == t.instance_name())
        .or_else(|| instances.first());
    let restart = status::RestartPolicy::of(pod);
    if let Some(done) = instance.and_then(|i| status::completion(pod, i, &ctx.host_ip)) {
        let name = instance.and_then(|i| i.name.as_deref());
        keep_logs(pod, ctx, key, workload_id, name).await;
        return complete(pod, ctx, key, workload_id, done).await;
    }
    let new = status::from_instance(pod, instance, &ctx.host_ip);
    let changed = status::differs(pod, &new);
    let settled = status::is_settled(&new);
    let terminal_now = matches!(new.phase.as_deref(), Some("Succeeded" | "Failed"));
    if changed && !decide::is_terminal(pod) {
        write_status(pod, ctx, new).await?;
    }
    let pacing = ctx.timing.pacing();
    let mut interval = pacing.next(t.interval(), changed, settled);
    if restart.runs_to_completion() && !terminal_now {
        // Its end must be seen soon: StackPath restarts containers that exit.
        interval = interval.min(ctx.timing.completion.max(ctx.timing.fast));
    }
    let wait = pacing.jitter(interval);
    let name = instance.and_then(|i| i.name.clone());
    let has_instance = instance.is_some();
    ctx.tracker.with(key, fast, |t| {
        t.polled(interval, Instant::now() + wait, name, has_instance)
    });
    if settled && !terminal_now && config_changed(pod, ctx, key, t).await {
        // The next pass updates the workload (decide sees the change).
        return Ok(Action::requeue(Duration::ZERO));
    }
    if terminal_now && decide::is_terminal(pod) {
        // Nothing changes after a terminal phase; the pod's deletion wakes us.
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(wait))
}

/// A run-to-completion pod's containers finished: delete the workload (so it neither restarts
/// nor bills), then write the pod's final status.
async fn complete(
    pod: &Pod,
    ctx: &Context,
    key: &str,
    workload_id: &str,
    done: PodStatus,
) -> Outcome {
    match ctx.stackpath.delete_workload(workload_id).await {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => {
            tracing::info!(pod = key, error = %e, "deleting the completed workload failed; retrying");
            let wait = ctx
                .tracker
                .with(key, ctx.timing.fast, |t| t.poll_failed(Instant::now()));
            return Ok(Action::requeue(wait));
        }
    }
    let phase = done.phase.clone().unwrap_or_default();
    let codes = done
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| {
            let t = c.state.as_ref()?.terminated.as_ref()?;
            Some(format!("{} exited {}", c.name, t.exit_code))
        })
        .collect::<Vec<_>>()
        .join(", ");
    ctx.events
        .normal(
            pod,
            reason::COMPLETED,
            action::DELETE,
            format!(
                "the pod {} ({codes}); its StackPath workload {workload_id} was deleted so that it \
                 neither restarts nor bills",
                phase.to_lowercase()
            ),
        )
        .await;
    write_status(pod, ctx, done).await?;
    ctx.tracker.with(key, ctx.timing.fast, |t| {
        t.workload_gone();
        t.finish();
    });
    Ok(Action::await_change())
}

/// Reads the containers' last output before their workload is deleted, so that `kubectl logs`
/// works on the finished pod as on a kubelet's; once per pod (a retried delete reads nothing).
async fn keep_logs(
    pod: &Pod,
    ctx: &Context,
    key: &str,
    workload_id: &str,
    instance_name: Option<&str>,
) {
    let Some(instance_name) = instance_name else {
        return;
    };
    if ctx
        .tracker
        .get(key)
        .is_some_and(|t| t.kept_logs().is_some())
    {
        return;
    }
    let names: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| {
            let sidecars = s
                .init_containers
                .iter()
                .flatten()
                .filter(|c| status::is_sidecar(c));
            s.containers.iter().chain(sidecars).map(|c| c.name.clone())
        })
        .collect();
    let kept = kept::read(
        &ctx.stackpath,
        ctx.tracker.kept_budget(),
        workload_id,
        instance_name,
        &names,
    )
    .await;
    ctx.tracker
        .with(key, ctx.timing.fast, |t| t.logs_kept(kept));
}

/// Ends a pod before its containers did (its deadline passed): the workload is deleted and the
/// pod Failed with `why`.
async fn end(
    pod: &Pod,
    ctx: &Context,
    key: &str,
    workload_id: Option<&str>,
    why: &str,
    message: &str,
) -> Outcome {
    if let Some(id) = workload_id {
        let instance_name = ctx
            .tracker
            .get(key)
            .and_then(|t| t.instance_name().map(str::to_owned));
        keep_logs(pod, ctx, key, id, instance_name.as_deref()).await;
        match ctx.stackpath.delete_workload(id).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                tracing::info!(pod = key, error = %e, "deleting the workload failed; retrying");
                return Ok(Action::requeue(backoff(1)));
            }
        }
        ctx.tracker
            .with(key, ctx.timing.fast, Tracked::workload_gone);
    }
    fail(pod, ctx, key, why, message).await
}

/// A pod the daemon does not run: Pending, its condition and one Event saying why and which
/// flag changes it. Stable: nothing is retried, so the pod's owner has nothing to recreate.
async fn skip(pod: &Pod, ctx: &Context, key: &str) -> Outcome {
    let message = "a DaemonSet's pod is not run at StackPath (it would cost one workload per \
                   virtual node, running an agent meant for a real node's host); start the \
                   daemon with --daemonset-pods=run to run it, or keep the DaemonSet off this \
                   node (nodeAffinity, or no toleration of the \
                   virtual-kubelet.io/provider=stackpath taint)";
    let why = reason::DAEMONSET_POD_SKIPPED;
    let status = status::pending(pod, why, message, &ctx.host_ip);
    if status::differs(pod, &status) {
        ctx.events
            .normal(pod, why, action::CREATE, message.to_owned())
            .await;
        write_status(pod, ctx, status).await?;
    }
    ctx.tracker.with(key, ctx.timing.fast, Tracked::finish);
    Ok(Action::await_change())
}

/// Creating or updating failed for a reason that passes: the pod stays Pending (its condition
/// says why), one Event per outage, retried with back-off.
async fn transient(
    pod: &Pod,
    ctx: &Context,
    key: &str,
    t: &Tracked,
    why: &str,
    act: &str,
    message: String,
) -> Outcome {
    let (wait, first) = ctx
        .tracker
        .with(key, ctx.timing.fast, Tracked::transient_failure);
    tracing::info!(pod = key, retry_in = ?wait, "{message}");
    if first {
        ctx.events.warning(pod, why, act, message.clone()).await;
    }
    // A running workload's pod keeps its status; only a pod still waiting shows why.
    // The retry is already scheduled with back-off: a status the API server does not take now
    // (often the same outage) is written by that retry, not by kube-runtime's error path.
    if t.workload_id().is_none()
        && let Err(e) =
            write_status(pod, ctx, status::pending(pod, why, &message, &ctx.host_ip)).await
    {
        tracing::debug!(pod = key, error = %e, "the Pending status was not written; retrying");
    }
    Ok(Action::requeue(wait))
}

/// Fails the pod for good, with an Event; the daemon runs nothing for it.
async fn fail(pod: &Pod, ctx: &Context, key: &str, why: &str, message: &str) -> Outcome {
    tracing::warn!(pod = key, reason = why, "{message}");
    ctx.events
        .warning(pod, why, action::CREATE, message.to_owned())
        .await;
    write_status(pod, ctx, status::failed(pod, why, message, &ctx.host_ip)).await?;
    ctx.tracker.with(key, ctx.timing.fast, Tracked::finish);
    Ok(Action::await_change())
}

async fn workload_gone(pod: &Pod, ctx: &Context, key: &str, workload_id: &str) -> Outcome {
    let slug = Identity::of(pod, &ctx.placement).slug().unwrap_or_default();
    let message = format!(
        "the StackPath workload `{slug}` (id {workload_id}) was deleted outside Kubernetes; \
         delete this pod to run it again (a Deployment or Job replaces it by itself)"
    );
    ctx.tracker
        .with(key, ctx.timing.fast, Tracked::workload_gone);
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

/// One step of a deletion. `Ok(None)`: the step is done, decide the next one in this pass.
async fn delete(
    pod: &Pod,
    ctx: &Context,
    key: &str,
    step: Deletion,
) -> Result<Option<Action>, ReconcileError> {
    let fast = ctx.timing.fast;
    match step {
        Deletion::Lookup => {
            let identity = Identity::of(pod, &ctx.placement);
            let found = match identity.slug() {
                Ok(slug) => match ctx.stackpath.find_workload_by_slug(&slug).await {
                    Ok(w) => w.filter(|w| identity.owns(w)).and_then(|w| w.id),
                    Err(e) => {
                        tracing::info!(pod = key, error = %e, "looking the workload up failed; retrying");
                        return Ok(Some(Action::requeue(backoff(1))));
                    }
                },
                // A name StackPath cannot hold never had a workload.
                Err(_) => None,
            };
            ctx.tracker.with(key, fast, |t| {
                t.found(found);
                t.seen(pod.uid());
            });
            Ok(None)
        }
        Deletion::DeleteWorkload { workload_id } => {
            match ctx.stackpath.delete_workload(&workload_id).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    tracing::info!(pod = key, error = %e, "deleting the workload failed; retrying");
                    return Ok(Some(Action::requeue(backoff(1))));
                }
            }
            ctx.events
                .normal(
                    pod,
                    reason::DELETING,
                    action::DELETE,
                    format!("deleting StackPath workload {workload_id}"),
                )
                .await;
            ctx.tracker
                .with(key, fast, |t| t.deletion_requested(Instant::now()));
            Ok(None)
        }
        Deletion::ConfirmGone {
            workload_id,
            deadline,
        } => {
            let gone = matches!(ctx.stackpath.get_workload(&workload_id).await, Err(e) if e.is_not_found());
            if gone {
                return remove_pod(pod, ctx, key).await.map(Some);
            }
            if Instant::now() < deadline {
                return Ok(Some(Action::requeue(fast)));
            }
            tracing::warn!(
                pod = key,
                workload = workload_id,
                "StackPath still lists the workload after the grace period; removing the pod anyway"
            );
            remove_pod(pod, ctx, key).await.map(Some)
        }
        Deletion::RemovePod => remove_pod(pod, ctx, key).await.map(Some),
    }
}

/// Whether the ConfigMaps and Secrets the running workload was made from changed (env values,
/// config volume files): compared at most once per settled interval, by reading them (the
/// daemon may not list or watch Secrets: least privilege), as a kubelet refreshes its volumes.
async fn config_changed(pod: &Pod, ctx: &Context, key: &str, t: &Tracked) -> bool {
    let now = Instant::now();
    let due = t
        .config_checked()
        .is_none_or(|at| now.duration_since(at) >= ctx.timing.settled);
    if !due || resolve::references(pod).is_empty() {
        return false;
    }
    let objects = match resolve::fetch_config(&ctx.kube, pod).await {
        Ok(o) => o,
        Err(e) => {
            tracing::debug!(pod = key, error = %e, "reading the pod's ConfigMaps/Secrets failed; next time");
            return false;
        }
    };
    let fast = ctx.timing.fast;
    let changed = ctx.tracker.with(key, fast, |t| {
        t.config_compared(objects.fingerprints(), now);
        t.config_changed().to_vec()
    });
    if !changed.is_empty() {
        tracing::info!(pod = key, changed = ?changed, "the pod's ConfigMaps/Secrets changed; updating its workload");
    }
    !changed.is_empty()
}

/// Removes the pod object (its workload is gone) and forgets it.
async fn remove_pod(pod: &Pod, ctx: &Context, key: &str) -> Outcome {
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

/// The tracked workload belongs to an earlier pod of the same name: delete it, wait until it
/// is gone, forget it; the next pass starts over for the new pod.
async fn replace_stale(ctx: &Context, key: &str, workload_id: Option<&str>) -> Outcome {
    if let Some(id) = workload_id {
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
    Ok(Action::requeue(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use stackpath_client::model::Workload;

    use super::super::fixtures::{self, Fixture, TIMING};
    use super::*;
    use crate::workload::LABEL_POD_NAME;

    fn phase(f: &Fixture, name: &str) -> Option<String> {
        f.api.pod("default", name)?.status?.phase
    }

    fn reasons(f: &Fixture) -> Vec<String> {
        f.api.events().into_iter().map(|(r, _)| r).collect()
    }

    /// Workloads StackPath still runs (bills): not being deleted.
    async fn live(f: &Fixture) -> Vec<Workload> {
        let mut ws = f.workloads().await;
        ws.retain(|w| {
            w.metadata
                .as_ref()
                .is_none_or(|m| m.delete_requested_at.is_none())
        });
        ws
    }

    /// Passes, a few milliseconds apart (as requeues would come), until `done` holds.
    async fn passes_until(f: &Fixture, name: &str, done: impl Fn(&Fixture) -> bool) {
        for _ in 0..400 {
            if done(f) {
                return;
            }
            f.pass("default", name).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{name}: the expected state was not reached");
    }

    fn by_slug<'a>(ws: &'a [Workload], slug: &str) -> Option<&'a Workload> {
        ws.iter().find(|w| w.slug.as_deref() == Some(slug))
    }

    fn image(w: &Workload) -> String {
        let spec = w.spec.as_ref().expect("spec");
        spec.containers["app"].image.clone().unwrap_or_default()
    }

    /// A pod created, its workload running.
    async fn running(name: &str) -> Fixture {
        let f = Fixture::new().await;
        f.api.put_pod(fixtures::pod(name, "u1", "nginx:1"));
        f.pass("default", name).await;
        f.pass("default", name).await;
        assert_eq!(phase(&f, name).as_deref(), Some("Running"));
        f.api.take_calls();
        f
    }

    #[tokio::test]
    async fn create_posts_the_workload_and_reports_it() {
        let f = Fixture::new().await;
        f.api.put_pod(fixtures::pod("web", "u1", "nginx:1"));
        let action = f.pass("default", "web").await;
        assert_eq!(action, Action::requeue(TIMING.fast));
        let ws = f.workloads().await;
        let w = by_slug(&ws, "default-web").expect("workload");
        assert_eq!(image(w), "nginx:1");
        assert_eq!(
            w.metadata
                .as_ref()
                .unwrap()
                .labels
                .get(LABEL_POD_NAME)
                .map(String::as_str),
            Some("web")
        );
        assert_eq!(reasons(&f), [reason::CREATED]);
        let pod = f.api.pod("default", "web").unwrap();
        let conds = pod.status.unwrap().conditions.unwrap();
        assert!(
            conds
                .iter()
                .any(|c| c.type_ == status::CONDITION_WORKLOAD && c.status == "True")
        );
        let t = f.ctx.tracker.get("default/web").unwrap();
        assert_eq!(t.workload_id(), w.id.as_deref());
        assert_eq!(t.instance_name(), Some("default-web-city-code-dfw-0"));
    }

    #[tokio::test]
    async fn poll_writes_the_running_status_once_and_then_backs_off() {
        let f = running("web").await;
        let t = f.ctx.tracker.get("default/web").unwrap();
        assert!(t.has_instance());
        assert!(t.interval() > TIMING.fast, "settled after the change");
        // Unchanged instance: nothing written, pace slows down to the settled interval.
        passes_until(&f, "web", |f| {
            f.ctx.tracker.get("default/web").unwrap().interval() == TIMING.settled
        })
        .await;
        let writes = f
            .api
            .take_calls()
            .into_iter()
            .filter(|c| c.path.ends_with("/status"))
            .count();
        assert_eq!(writes, 0, "an unchanged instance writes no status");
    }

    #[tokio::test]
    async fn a_changed_image_updates_the_workload() {
        let f = running("web").await;
        f.api.edit_pod(
            "default",
            "web",
            json!({"spec": {"containers": [{"name": "app", "image": "nginx:2",
                "command": ["/bin/sh", "-c", "sleep 3600"],
                "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}]}}),
        );
        f.pass("default", "web").await;
        let ws = f.workloads().await;
        assert_eq!(image(by_slug(&ws, "default-web").unwrap()), "nginx:2");
        assert_eq!(reasons(&f), [reason::UPDATED]);
    }

    #[tokio::test]
    async fn deletion_removes_the_workload_then_the_pod() {
        let f = running("web").await;
        f.api.edit_pod(
            "default",
            "web",
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z",
                                "deletionGracePeriodSeconds": 30}}),
        );
        let mut action = f.pass("default", "web").await;
        // The emulator deletes at once; at most a few confirmations.
        for _ in 0..5 {
            if f.api.pod("default", "web").is_none() {
                break;
            }
            action = f.pass("default", "web").await;
        }
        assert_eq!(action, Action::await_change());
        assert!(f.api.pod("default", "web").is_none(), "pod removed");
        assert!(by_slug(&f.workloads().await, "default-web").is_none());
        assert!(f.ctx.tracker.get("default/web").is_none(), "forgotten");
        assert_eq!(reasons(&f), [reason::DELETING]);
    }

    #[tokio::test]
    async fn deletion_of_a_pod_never_seen_finds_its_workload_by_slug() {
        let f = running("web").await;
        // A fresh process (e.g. restarted while the pod was being deleted).
        f.ctx.tracker.remove("default/web");
        f.api.edit_pod(
            "default",
            "web",
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z",
                                "deletionGracePeriodSeconds": 30}}),
        );
        for _ in 0..5 {
            if f.api.pod("default", "web").is_none() {
                break;
            }
            f.pass("default", "web").await;
        }
        assert!(f.api.pod("default", "web").is_none());
        assert!(by_slug(&f.workloads().await, "default-web").is_none());
    }

    #[tokio::test]
    async fn a_new_pod_under_the_same_name_replaces_the_stale_workload() {
        let f = running("web").await;
        let old = by_slug(&f.workloads().await, "default-web")
            .unwrap()
            .id
            .clone();
        // Force-deleted and created again: same name, new uid.
        f.api.put_pod(fixtures::pod("web", "u2", "nginx:1"));
        // The old workload is deleted and waited for (its slug is taken until it is gone).
        passes_until(&f, "web", |f| f.ctx.tracker.get("default/web").is_none()).await;
        f.pass("default", "web").await;
        let ws = f.workloads().await;
        let new = by_slug(&ws, "default-web").expect("new workload");
        assert_ne!(new.id, old, "a new workload for the new pod");
        assert_eq!(ws.len(), 1, "no duplicate");
        assert_eq!(f.ctx.tracker.get("default/web").unwrap().uid(), Some("u2"));
    }

    #[tokio::test]
    async fn a_workload_deleted_behind_our_back_fails_the_pod() {
        let f = running("web").await;
        let id = by_slug(&f.workloads().await, "default-web")
            .unwrap()
            .id
            .clone()
            .unwrap();
        f.ctx.stackpath.delete_workload(&id).await.unwrap();
        passes_until(&f, "web", |f| phase(f, "web").as_deref() == Some("Failed")).await;
        let pod = f.api.pod("default", "web").unwrap();
        let st = pod.status.unwrap();
        assert_eq!(st.phase.as_deref(), Some("Failed"));
        assert_eq!(st.reason.as_deref(), Some(reason::WORKLOAD_DELETED));
        assert!(st.message.unwrap().contains("deleted outside Kubernetes"));
        assert_eq!(reasons(&f), [reason::WORKLOAD_DELETED]);
        // Nothing more happens: no new workload.
        assert_eq!(f.pass("default", "web").await, Action::await_change());
        assert!(live(&f).await.is_empty());
    }

    #[tokio::test]
    async fn a_rejected_pod_fails_and_nothing_reaches_stackpath() {
        let f = Fixture::new().await;
        let mut p = fixtures::pod("bad", "u1", "nginx:1");
        p["spec"]["containers"][0]["command"] = serde_json::Value::Null;
        p["spec"]["containers"][0]["args"] = json!(["serve"]);
        f.api.put_pod(p);
        assert_eq!(f.pass("default", "bad").await, Action::await_change());
        let st = f.api.pod("default", "bad").unwrap().status.unwrap();
        assert_eq!(st.phase.as_deref(), Some("Failed"));
        assert_eq!(st.reason.as_deref(), Some(reason::PROVIDER_FAILED));
        assert!(st.message.unwrap().contains("args but no command"));
        assert!(f.workloads().await.is_empty());
        assert!(f.ctx.tracker.get("default/bad").unwrap().is_finished());
    }

    #[tokio::test]
    async fn a_missing_secret_fails_the_pod_naming_it() {
        let f = Fixture::new().await;
        let mut p = fixtures::pod("web", "u1", "nginx:1");
        p["spec"]["containers"][0]["env"] = json!([{"name": "TOKEN", "valueFrom":
            {"secretKeyRef": {"name": "creds", "key": "token"}}}]);
        f.api.put_pod(p);
        f.pass("default", "web").await;
        let st = f.api.pod("default", "web").unwrap().status.unwrap();
        assert_eq!(st.phase.as_deref(), Some("Failed"));
        assert!(st.message.unwrap().contains("Secret `creds` not found"));
        assert!(f.workloads().await.is_empty());
    }

    #[tokio::test]
    async fn the_api_server_down_while_creating_is_retried_with_one_event() {
        let f = Fixture::new().await;
        f.api.put_pod(fixtures::pod("web", "u1", "nginx:1"));
        let pod = f.api.pod("default", "web").unwrap();
        f.api.set_down(true);
        let first = f.pass_with(pod.clone()).await;
        let second = f.pass_with(pod.clone()).await;
        assert_eq!(first, Action::requeue(Duration::from_secs(1)));
        assert_eq!(second, Action::requeue(Duration::from_secs(2)), "backs off");
        assert!(f.workloads().await.is_empty());
        f.api.set_down(false);
        // One Event for the outage (the first attempt's; the second was not even tried as the
        // API was down, and the next attempt succeeds).
        assert_eq!(f.pass_with(pod).await, Action::requeue(TIMING.fast));
        assert_eq!(f.workloads().await.len(), 1);
        assert_eq!(f.ctx.tracker.get("default/web").unwrap().failures(), 0);
    }

    #[tokio::test]
    async fn stackpath_down_while_creating_leaves_the_pod_pending_with_the_reason() {
        let f = Fixture::new().await;
        f.api.put_pod(fixtures::pod("web", "u1", "nginx:1"));
        f.emulator.set_faults(stackpath_emulator::Faults {
            error_rate: 1.0,
            ..Default::default()
        });
        assert_eq!(
            f.pass("default", "web").await,
            Action::requeue(Duration::from_secs(1))
        );
        f.pass("default", "web").await;
        let st = f.api.pod("default", "web").unwrap().status.unwrap();
        assert_eq!(st.phase.as_deref(), Some("Pending"));
        let cond = st
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == status::CONDITION_WORKLOAD)
            .unwrap();
        assert_eq!(cond.status, "False");
        assert_eq!(cond.reason.as_deref(), Some(reason::STACKPATH_UNAVAILABLE));
        assert_eq!(
            reasons(&f),
            [reason::STACKPATH_UNAVAILABLE],
            "one Event per outage"
        );
        f.emulator.set_faults(stackpath_emulator::Faults::default());
        f.pass("default", "web").await;
        assert_eq!(f.workloads().await.len(), 1);
    }

    #[tokio::test]
    async fn a_slug_taken_by_another_pod_fails_this_one() {
        let f = Fixture::new().await;
        // Another pod's workload under the slug this pod would get.
        let other = Identity {
            namespace: "default".into(),
            pod_name: "someone-else".into(),
            node_name: fixtures::NODE.into(),
            city_code: fixtures::CITY.into(),
        };
        f.api.put_pod(fixtures::pod("web", "u1", "nginx:1"));
        let mut theirs = {
            f.pass("default", "web").await;
            let w = by_slug(&f.workloads().await, "default-web")
                .unwrap()
                .clone();
            f.ctx
                .stackpath
                .delete_workload(w.id.as_deref().unwrap())
                .await
                .unwrap();
            while !f.workloads().await.is_empty() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            w
        };
        theirs.id = None;
        theirs.metadata.as_mut().unwrap().labels = other.labels();
        f.ctx.stackpath.create_workload(&theirs).await.unwrap();
        let f2_pod = fixtures::pod("web", "u9", "nginx:1");
        f.ctx.tracker.remove("default/web");
        f.api.put_pod(f2_pod);
        assert_eq!(f.pass("default", "web").await, Action::await_change());
        let st = f.api.pod("default", "web").unwrap().status.unwrap();
        assert_eq!(st.phase.as_deref(), Some("Failed"));
        assert!(
            st.message
                .unwrap()
                .contains("belongs to another pod (default/someone-else)")
        );
    }

    #[tokio::test]
    async fn env_from_keys_that_are_not_variable_names_are_skipped_with_the_kubelets_event() {
        let f = Fixture::new().await;
        f.api.put_object(
            "configmaps",
            json!({"metadata": {"name": "settings", "namespace": "default"},
                   "data": {"MODE": "fast", "log.level": "debug"}}),
        );
        let mut p = fixtures::pod("web", "u1", "nginx:1");
        // Kubernetes 1.34 accepts any printable name without `=` (relaxed validation): a
        // prefix with `=` makes every key of that source invalid.
        p["spec"]["containers"][0]["envFrom"] = json!([
            {"configMapRef": {"name": "settings"}, "prefix": "OLD="},
            {"configMapRef": {"name": "settings"}}
        ]);
        f.api.put_pod(p);
        f.pass("default", "web").await;
        let ws = f.workloads().await;
        let env = &ws[0].spec.as_ref().unwrap().containers["app"].env;
        assert!(
            env.contains_key("MODE") && env.contains_key("log.level"),
            "{env:?}"
        );
        assert!(!env.keys().any(|k| k.contains('=')), "{env:?}");
        let events = f.api.events();
        let (_, message) = events
            .iter()
            .find(|(r, _)| r == resolve::InvalidEnvNames::REASON)
            .expect("an InvalidEnvironmentVariableNames Event");
        assert_eq!(
            message,
            "Keys [OLD=MODE, OLD=log.level] from the EnvFrom configMap default/settings were skipped since they \
             are considered invalid environment variable names."
        );
    }

    #[tokio::test]
    async fn a_changed_config_map_updates_the_running_workload_with_an_event() {
        let f = Fixture::new().await;
        let settings = |mode: &str| {
            json!({"metadata": {"name": "settings", "namespace": "default"},
                   "data": {"MODE": mode}})
        };
        f.api.put_object("configmaps", settings("slow"));
        let mut p = fixtures::pod("web", "u1", "nginx:1");
        p["spec"]["containers"][0]["envFrom"] = json!([{"configMapRef": {"name": "settings"}}]);
        f.api.put_pod(p);
        let mode = |ws: &[Workload]| {
            ws[0].spec.as_ref().unwrap().containers["app"].env["MODE"]
                .value
                .clone()
        };
        passes_until(&f, "web", |f| phase(f, "web").as_deref() == Some("Running")).await;
        assert_eq!(mode(&f.workloads().await).as_deref(), Some("slow"));
        // Unchanged: no update however long it runs.
        for _ in 0..5 {
            f.pass("default", "web").await;
            tokio::time::sleep(TIMING.settled / 2).await;
        }
        assert_eq!(reasons(&f), [reason::CREATED]);
        f.api.put_object("configmaps", settings("fast"));
        passes_until(&f, "web", |f| reasons(f).len() > 1).await;
        assert_eq!(mode(&f.workloads().await).as_deref(), Some("fast"));
        let events = f.api.events();
        assert_eq!(events[1].0, reason::UPDATED);
        assert!(
            events[1].1.contains("configMap/settings changed"),
            "{}",
            events[1].1
        );
        // Applied once.
        for _ in 0..5 {
            f.pass("default", "web").await;
            tokio::time::sleep(TIMING.settled / 2).await;
        }
        assert_eq!(reasons(&f).len(), 2, "{:?}", reasons(&f));
    }

    #[tokio::test]
    async fn secret_env_reaches_the_workload_as_secret_value() {
        let f = Fixture::new().await;
        f.api.put_object(
            "secrets",
            json!({"metadata": {"name": "creds", "namespace": "default"},
                   "data": {"token": "czNjcjN0"}}),
        );
        let mut p = fixtures::pod("web", "u1", "nginx:1");
        p["spec"]["containers"][0]["env"] = json!([{"name": "TOKEN", "valueFrom":
            {"secretKeyRef": {"name": "creds", "key": "token"}}}]);
        f.api.put_pod(p);
        f.pass("default", "web").await;
        assert_eq!(f.workloads().await.len(), 1);
        let calls = f.api.take_calls();
        assert!(
            calls
                .iter()
                .any(|c| c.path == "/api/v1/namespaces/default/secrets/creds")
        );
        // Neither Events nor status carry the value.
        for c in calls {
            assert!(!c.body.to_string().contains("s3cr3t"), "{}", c.path);
        }
    }

    #[tokio::test]
    async fn daemonset_pods_are_left_pending_with_one_event() {
        let f = Fixture::new().await;
        let mut p = fixtures::pod("agent-x", "u1", "agent:1");
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "DaemonSet",
            "name": "agent", "uid": "d1", "controller": true}]);
        f.api.put_pod(p);
        assert_eq!(f.pass("default", "agent-x").await, Action::await_change());
        // The status write wakes the watch: the next pass changes nothing.
        assert_eq!(f.pass("default", "agent-x").await, Action::await_change());
        let st = f.api.pod("default", "agent-x").unwrap().status.unwrap();
        assert_eq!(st.phase.as_deref(), Some("Pending"));
        let cond = st
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == status::CONDITION_WORKLOAD)
            .unwrap();
        assert_eq!(cond.reason.as_deref(), Some(reason::DAEMONSET_POD_SKIPPED));
        assert!(cond.message.unwrap().contains("--daemonset-pods=run"));
        assert_eq!(reasons(&f), [reason::DAEMONSET_POD_SKIPPED]);
        assert!(f.workloads().await.is_empty());
    }

    #[tokio::test]
    async fn the_active_deadline_deletes_the_workload_and_fails_the_pod() {
        let f = running("web").await;
        f.api.edit_pod(
            "default",
            "web",
            json!({"spec": {"activeDeadlineSeconds": 1},
                   "status": {"startTime": "2026-01-01T00:00:00Z"}}),
        );
        assert_eq!(f.pass("default", "web").await, Action::await_change());
        let st = f.api.pod("default", "web").unwrap().status.unwrap();
        assert_eq!(st.phase.as_deref(), Some("Failed"));
        assert_eq!(st.reason.as_deref(), Some(reason::DEADLINE_EXCEEDED));
        assert!(live(&f).await.is_empty(), "nothing left running or billing");
        assert_eq!(f.pass("default", "web").await, Action::await_change());
    }

    /// A run-to-completion pod whose container exits with `code`, run by the emulator as a
    /// local process; passes until the pod is terminal.
    async fn job(restart: &str, code: i32) -> (Fixture, PodStatus) {
        let f = Fixture::with_emulator(|c| c.run_containers = true).await;
        let mut p = fixtures::pod("job", "u1", "busybox:1");
        p["spec"]["restartPolicy"] = restart.into();
        p["spec"]["containers"][0]["command"] =
            json!(["/bin/sh", "-c", format!("echo done; exit {code}")]);
        f.api.put_pod(p);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            f.pass("default", "job").await;
            let st = f
                .api
                .pod("default", "job")
                .unwrap()
                .status
                .unwrap_or_default();
            if matches!(st.phase.as_deref(), Some("Succeeded" | "Failed")) {
                return (f, st);
            }
            assert!(Instant::now() < deadline, "not terminal: {st:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn exit_code(st: &PodStatus) -> i32 {
        let c = &st.container_statuses.as_ref().unwrap()[0];
        c.state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code
    }

    #[tokio::test]
    async fn a_job_pod_that_succeeds_completes_and_its_workload_is_deleted() {
        let (f, st) = job("Never", 0).await;
        assert_eq!(st.phase.as_deref(), Some("Succeeded"));
        assert_eq!(exit_code(&st), 0);
        let c = &st.container_statuses.as_ref().unwrap()[0];
        let t = c.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(t.reason.as_deref(), Some("Completed"));
        assert!(t.finished_at.is_some());
        assert!(live(&f).await.is_empty(), "no workload left to bill");
        assert!(reasons(&f).contains(&reason::COMPLETED.to_string()));
        assert_eq!(f.pass("default", "job").await, Action::await_change());

        // `kubectl logs` still answers, from what was read before the workload went.
        let (store, mut writer) = kube::runtime::reflector::store::<Pod>();
        let pod = f.api.pod("default", "job").unwrap();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(pod));
        let locator = super::super::locator::Locator {
            store,
            ctx: f.ctx.clone(),
        };
        use vk_kubelet::PodLocator;
        let e = locator.locate("default", "job", "app").unwrap_err();
        assert!(
            e.to_string().contains("has finished (Succeeded)")
                && e.to_string().contains("neither restarts nor bills"),
            "{e}"
        );
        let kept = locator.finished_logs("default", "job", "app").unwrap();
        assert!(
            String::from_utf8_lossy(&kept).contains(" done\n"),
            "{kept:?}"
        );
        assert!(f.ctx.tracker.kept_budget().used() > 0);
        f.ctx.tracker.remove("default/job");
        assert_eq!(
            f.ctx.tracker.kept_budget().used(),
            0,
            "released with the pod"
        );
    }

    #[tokio::test]
    async fn a_job_pod_that_fails_under_never_fails_with_the_exit_code() {
        let (f, st) = job("Never", 3).await;
        assert_eq!(st.phase.as_deref(), Some("Failed"));
        assert_eq!(exit_code(&st), 3);
        assert!(live(&f).await.is_empty(), "no workload left to bill");
    }
}
