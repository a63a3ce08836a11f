//! What a pod needs next, decided without I/O: from the pod as the watch delivered it, what
//! the daemon remembers of it ([`Tracked`]) and the clock. [`super::reconcile`] carries the
//! step out and records what happened through the tracker's transitions; then it asks again,
//! until a step ends the pass.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use super::tracker::Tracked;

/// How long at most a settled pod's poll yields at a time.
pub const DEFER_FOR: Duration = Duration::from_secs(5);

/// What to do with pods of DaemonSets (`--daemonset-pods`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DaemonSetPods {
    /// Leave them Pending with a condition saying why: a DaemonSet that tolerates every taint
    /// (log and monitoring agents) would otherwise cost one paid workload per virtual node,
    /// running an agent meant for a real node's host.
    #[default]
    Skip,
    /// Run them like any pod.
    Run,
}

/// What the decision needs to know besides the pod and its memory.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now: Instant,
    /// Wall-clock time, for deadlines the pod states in wall-clock terms
    /// (`activeDeadlineSeconds` from `status.startTime`).
    pub wall: Timestamp,
    /// Poll interval while a pod is changing.
    pub fast: Duration,
    /// Poll interval once a pod is settled.
    pub settled: Duration,
    /// StackPath's rate limit is exhausted right now (calls would queue).
    pub rate_limited: bool,
    pub daemonset_pods: DaemonSetPods,
}

/// The next thing to do for a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The pod is being deleted.
    Delete(Deletion),
    /// The daemon remembers a workload of an earlier pod with the same name (that one was
    /// force-deleted): delete it, forget it, then start over for this pod.
    ReplaceStale { workload_id: Option<String> },
    /// Nothing to do until the pod changes (failed by the daemon, or terminal and settled).
    Done,
    /// A terminal pod without a workload (failed by an earlier run of the daemon): remember
    /// that it is finished.
    Finish,
    /// No workload yet: resolve, translate, create.
    Create,
    /// The pod's images differ from the workload's: resolve, translate, update.
    Update { workload_id: String },
    /// The next poll is not due yet.
    Wait(Duration),
    /// A settled pod's poll yields while the rate limit is exhausted (busier pods first), for
    /// at most one settled interval in a row, so it is slowed, never starved.
    Defer { since: Instant, wait: Duration },
    /// Ask StackPath how the workload's instance is doing.
    Poll { workload_id: String },
    /// A pod the daemon does not run (a DaemonSet's, by default): Pending, saying why.
    Skip,
    /// `activeDeadlineSeconds` passed: delete the workload, fail the pod `DeadlineExceeded`.
    DeadlineExceeded { workload_id: Option<String> },
}

/// The steps of a deletion: delete the workload, wait until StackPath no longer lists it (at
/// most the pod's grace period), then remove the pod object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// This process never handled the pod (deleted while the daemon was down): look its
    /// workload up by slug.
    Lookup,
    /// Ask StackPath to delete the workload.
    DeleteWorkload { workload_id: String },
    /// Deletion was asked for: check whether the workload is gone; after `deadline` the pod is
    /// removed whether or not it is.
    ConfirmGone {
        workload_id: String,
        deadline: Instant,
    },
    /// No workload (any more): remove the pod object.
    RemovePod,
}

/// The pod's containers and init containers with their images, in spec order.
pub fn images(pod: &Pod) -> Vec<(String, String)> {
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

/// The pod reached `Succeeded` or `Failed`.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The pod belongs to a DaemonSet (its controlling owner).
pub fn is_daemonset_pod(pod: &Pod) -> bool {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "DaemonSet" && o.controller == Some(true))
}

/// `activeDeadlineSeconds` counted from `status.startTime` has passed.
fn deadline_passed(pod: &Pod, wall: Timestamp) -> bool {
    let Some(secs) = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds) else {
        return false;
    };
    let Some(start) = pod.status.as_ref().and_then(|s| s.start_time.as_ref()) else {
        return false;
    };
    wall.as_second().saturating_sub(start.0.as_second()) >= secs
}

/// The pod's grace period, when it is being deleted.
fn deletion_grace(pod: &Pod) -> Option<Duration> {
    pod.metadata.deletion_timestamp.as_ref()?;
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .unwrap_or(30)
        .max(0);
    Some(Duration::from_secs(secs as u64))
}

/// The step for `pod`, given what is remembered of it (`None`: never handled by this process).
pub fn next_step(pod: &Pod, tracked: Option<&Tracked>, clock: Clock) -> Step {
    if let Some(grace) = deletion_grace(pod) {
        return Step::Delete(deletion(tracked, grace));
    }
    let uid = pod.metadata.uid.as_deref();
    let fresh = Tracked::new(clock.fast);
    let t = tracked.unwrap_or(&fresh);
    if t.uid().is_some() && t.uid() != uid {
        return Step::ReplaceStale {
            workload_id: t.workload_id().map(str::to_owned),
        };
    }
    if t.is_finished() {
        return Step::Done;
    }
    if is_terminal(pod) && t.workload_id().is_none() {
        return Step::Finish;
    }
    if !is_terminal(pod) && deadline_passed(pod, clock.wall) {
        return Step::DeadlineExceeded {
            workload_id: t.workload_id().map(str::to_owned),
        };
    }
    let Some(workload_id) = t.workload_id() else {
        return if is_daemonset_pod(pod) && clock.daemonset_pods == DaemonSetPods::Skip {
            Step::Skip
        } else {
            Step::Create
        };
    };
    let images_changed = !t.images().is_empty() && t.images() != images(pod);
    if images_changed || !t.config_changed().is_empty() {
        return Step::Update {
            workload_id: workload_id.to_owned(),
        };
    }
    if let Some(due) = t.next_poll().filter(|due| clock.now < *due) {
        return Step::Wait(due - clock.now);
    }
    let since = t.deferred_since().unwrap_or(clock.now);
    if t.interval() > clock.fast
        && clock.now.duration_since(since) < clock.settled
        && clock.rate_limited
    {
        return Step::Defer {
            since,
            wait: t.interval().min(DEFER_FOR),
        };
    }
    Step::Poll {
        workload_id: workload_id.to_owned(),
    }
}

fn deletion(tracked: Option<&Tracked>, grace: Duration) -> Deletion {
    let Some(t) = tracked.filter(|t| t.workload_id().is_some() || t.uid().is_some()) else {
        return Deletion::Lookup;
    };
    match (t.workload_id(), t.deleting_since()) {
        (None, _) => Deletion::RemovePod,
        (Some(id), None) => Deletion::DeleteWorkload {
            workload_id: id.to_owned(),
        },
        (Some(id), Some(since)) => Deletion::ConfirmGone {
            workload_id: id.to_owned(),
            deadline: since + grace,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Duration = Duration::from_secs(1);
    const SETTLED: Duration = Duration::from_secs(60);

    fn pod(phase: &str, uid: &str, image: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": uid},
            "spec": {"containers": [{"name": "app", "image": image}]},
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    fn deleting(mut p: Pod, grace: Option<i64>) -> Pod {
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        p.metadata.deletion_grace_period_seconds = grace;
        p
    }

    fn clock(now: Instant) -> Clock {
        Clock {
            now,
            wall: Timestamp::now(),
            fast: FAST,
            settled: SETTLED,
            rate_limited: false,
            daemonset_pods: DaemonSetPods::Skip,
        }
    }

    /// Memory of a pod (uid `u1`) whose workload `w1` runs `nginx:1`, next poll at `t0`.
    fn running(t0: Instant) -> Tracked {
        let mut t = Tracked::new(FAST);
        t.seen(Some("u1".into()));
        t.created(
            "w1".into(),
            vec![("app".into(), "nginx:1".into())],
            Some("default-web-city-code-dfw-0".into()),
            FAST,
            t0 - FAST,
        );
        t
    }

    fn poll() -> Step {
        Step::Poll {
            workload_id: "w1".into(),
        }
    }

    #[test]
    fn a_new_pod_is_created_unless_it_is_already_terminal() {
        let t0 = Instant::now();
        for (phase, want) in [
            ("Pending", Step::Create),
            ("Running", Step::Create),
            ("Unknown", Step::Create),
            ("Succeeded", Step::Finish),
            ("Failed", Step::Finish),
        ] {
            let p = pod(phase, "u1", "nginx:1");
            assert_eq!(next_step(&p, None, clock(t0)), want, "{phase}, never seen");
            let mut seen = Tracked::new(FAST);
            seen.seen(Some("u1".into()));
            assert_eq!(next_step(&p, Some(&seen), clock(t0)), want, "{phase}, seen");
        }
    }

    #[test]
    fn a_pod_with_a_workload_is_polled_when_due_and_waits_otherwise() {
        let t0 = Instant::now();
        let t = running(t0);
        let p = pod("Running", "u1", "nginx:1");
        assert_eq!(next_step(&p, Some(&t), clock(t0)), poll());
        assert_eq!(
            next_step(&p, Some(&t), clock(t0 - Duration::from_millis(300))),
            Step::Wait(Duration::from_millis(300))
        );
        // Every phase the pod may be in: the workload's instance decides its status.
        for phase in ["Pending", "Running", "Succeeded", "Failed", "Unknown"] {
            let p = pod(phase, "u1", "nginx:1");
            assert_eq!(next_step(&p, Some(&t), clock(t0)), poll(), "{phase}");
        }
    }

    #[test]
    fn changed_images_update_the_workload_before_any_poll() {
        let t0 = Instant::now();
        let t = running(t0);
        let p = pod("Running", "u1", "nginx:2");
        let want = Step::Update {
            workload_id: "w1".into(),
        };
        assert_eq!(next_step(&p, Some(&t), clock(t0)), want);
        // Even when the next poll is far away.
        assert_eq!(next_step(&p, Some(&t), clock(t0 - SETTLED)), want);
        // Refused updates are not retried until the images change again.
        let mut refused = t.clone();
        refused.update_refused(vec![("app".into(), "nginx:2".into())]);
        assert_eq!(next_step(&p, Some(&refused), clock(t0)), poll());
    }

    #[test]
    fn adopted_workloads_without_known_images_are_not_updated() {
        let t0 = Instant::now();
        let mut t = Tracked::new(FAST);
        t.adopted("w1".into(), Vec::new());
        let p = pod("Running", "u1", "nginx:2");
        assert_eq!(next_step(&p, Some(&t), clock(t0)), poll());
    }

    #[test]
    fn a_new_pod_under_an_old_name_replaces_the_stale_workload() {
        let t0 = Instant::now();
        let t = running(t0);
        let p = pod("Pending", "u2", "nginx:1");
        assert_eq!(
            next_step(&p, Some(&t), clock(t0)),
            Step::ReplaceStale {
                workload_id: Some("w1".into())
            }
        );
        let mut failed = Tracked::new(FAST);
        failed.seen(Some("u1".into()));
        failed.finish();
        assert_eq!(
            next_step(&p, Some(&failed), clock(t0)),
            Step::ReplaceStale { workload_id: None }
        );
    }

    #[test]
    fn a_finished_pod_is_left_alone_whatever_its_phase() {
        let t0 = Instant::now();
        let mut t = running(t0);
        t.workload_gone();
        t.finish();
        for phase in ["Pending", "Running", "Failed"] {
            let p = pod(phase, "u1", "nginx:9");
            assert_eq!(next_step(&p, Some(&t), clock(t0)), Step::Done, "{phase}");
        }
    }

    #[test]
    fn a_workload_gone_from_a_terminal_pod_finishes_it() {
        let t0 = Instant::now();
        let mut t = running(t0);
        t.workload_gone();
        assert_eq!(
            next_step(&pod("Failed", "u1", "nginx:1"), Some(&t), clock(t0)),
            Step::Finish
        );
        assert_eq!(
            next_step(&pod("Running", "u1", "nginx:1"), Some(&t), clock(t0)),
            Step::Create
        );
    }

    #[test]
    fn settled_polls_yield_to_the_rate_limit_for_at_most_one_settled_interval() {
        let t0 = Instant::now();
        let mut t = running(t0);
        t.polled(Duration::from_secs(16), t0, None, true);
        let p = pod("Running", "u1", "nginx:1");
        let limited = Clock {
            rate_limited: true,
            ..clock(t0)
        };
        assert_eq!(
            next_step(&p, Some(&t), limited),
            Step::Defer {
                since: t0,
                wait: DEFER_FOR
            }
        );
        assert_eq!(next_step(&p, Some(&t), clock(t0)), poll(), "not limited");
        t.deferred(t0, t0 + DEFER_FOR);
        let later = Clock {
            now: t0 + SETTLED,
            ..limited
        };
        assert_eq!(
            next_step(&p, Some(&t), later),
            poll(),
            "deferred long enough"
        );
        let sooner = Clock {
            now: t0 + SETTLED - FAST,
            ..limited
        };
        assert_eq!(
            next_step(&p, Some(&t), sooner),
            Step::Defer {
                since: t0,
                wait: DEFER_FOR
            },
            "the deferral is counted from the first one"
        );
        // A changing pod (fast interval) carries the status lag: never deferred.
        let fresh = running(t0);
        assert_eq!(next_step(&p, Some(&fresh), limited), poll());
    }

    #[test]
    fn poll_failures_back_off_exponentially_up_to_a_minute() {
        let t0 = Instant::now();
        let mut t = running(t0);
        let waits: Vec<u64> = (0..9).map(|_| t.poll_failed(t0).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        let p = pod("Running", "u1", "nginx:1");
        assert_eq!(
            next_step(&p, Some(&t), clock(t0)),
            Step::Wait(Duration::from_secs(60))
        );
        t.polled(FAST, t0, None, true);
        assert_eq!(t.failures(), 0, "an answer resets the back-off");
    }

    #[test]
    fn transient_failures_are_reported_once_per_outage() {
        let mut t = Tracked::new(FAST);
        assert_eq!(t.transient_failure(), (Duration::from_secs(1), true));
        assert_eq!(t.transient_failure(), (Duration::from_secs(2), false));
        t.created("w1".into(), Vec::new(), None, FAST, Instant::now());
        assert_eq!(t.transient_failure(), (Duration::from_secs(1), true));
    }

    #[test]
    fn deletion_deletes_the_workload_then_waits_for_it_within_the_grace_period() {
        let t0 = Instant::now();
        let p = deleting(pod("Running", "u1", "nginx:1"), Some(10));
        let mut t = running(t0);
        assert_eq!(
            next_step(&p, Some(&t), clock(t0)),
            Step::Delete(Deletion::DeleteWorkload {
                workload_id: "w1".into()
            })
        );
        t.deletion_requested(t0);
        assert_eq!(
            next_step(&p, Some(&t), clock(t0)),
            Step::Delete(Deletion::ConfirmGone {
                workload_id: "w1".into(),
                deadline: t0 + Duration::from_secs(10)
            })
        );
        // Default grace period 30 s; a negative one counts as 0.
        let d = next_step(
            &deleting(pod("Running", "u1", "x"), None),
            Some(&t),
            clock(t0),
        );
        assert!(
            matches!(d, Step::Delete(Deletion::ConfirmGone { deadline, .. }) if deadline == t0 + Duration::from_secs(30))
        );
        let d = next_step(
            &deleting(pod("Running", "u1", "x"), Some(-5)),
            Some(&t),
            clock(t0),
        );
        assert!(
            matches!(d, Step::Delete(Deletion::ConfirmGone { deadline, .. }) if deadline == t0)
        );
    }

    #[test]
    fn deletion_of_a_pod_never_handled_looks_up_its_workload_first() {
        let t0 = Instant::now();
        let p = deleting(pod("Running", "u1", "nginx:1"), Some(30));
        assert_eq!(
            next_step(&p, None, clock(t0)),
            Step::Delete(Deletion::Lookup)
        );
        assert_eq!(
            next_step(&p, Some(&Tracked::new(FAST)), clock(t0)),
            Step::Delete(Deletion::Lookup)
        );
        // Looked up, nothing found: the pod goes.
        let mut t = Tracked::new(FAST);
        t.found(None);
        t.seen(Some("u1".into()));
        assert_eq!(
            next_step(&p, Some(&t), clock(t0)),
            Step::Delete(Deletion::RemovePod)
        );
        // A pod failed without a workload is removed at once.
        let mut failed = Tracked::new(FAST);
        failed.seen(Some("u1".into()));
        failed.finish();
        assert_eq!(
            next_step(&p, Some(&failed), clock(t0)),
            Step::Delete(Deletion::RemovePod)
        );
    }

    #[test]
    fn deletion_wins_over_everything_else() {
        let t0 = Instant::now();
        let mut t = running(t0);
        // Images changed, poll due, rate limited, stale uid, finished: all ignored.
        let p = deleting(pod("Running", "u2", "nginx:2"), Some(30));
        t.finish();
        let limited = Clock {
            rate_limited: true,
            ..clock(t0)
        };
        assert_eq!(
            next_step(&p, Some(&t), limited),
            Step::Delete(Deletion::DeleteWorkload {
                workload_id: "w1".into()
            })
        );
    }

    fn daemonset(p: Value) -> Pod {
        let mut p = p;
        p["metadata"]["ownerReferences"] = serde_json::json!([
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "d1", "controller": true}
        ]);
        serde_json::from_value(p).unwrap()
    }

    use serde_json::Value;

    fn json(p: &Pod) -> Value {
        serde_json::to_value(p).unwrap()
    }

    #[test]
    fn daemonset_pods_are_skipped_unless_asked_to_run() {
        let t0 = Instant::now();
        let p = daemonset(json(&pod("Pending", "u1", "agent:1")));
        assert_eq!(next_step(&p, None, clock(t0)), Step::Skip);
        let run = Clock {
            daemonset_pods: DaemonSetPods::Run,
            ..clock(t0)
        };
        assert_eq!(next_step(&p, None, run), Step::Create);
        // A DaemonSet pod whose workload exists (the Go provider ran it) keeps running.
        let t = running(t0);
        let ran = daemonset(json(&pod("Running", "u1", "nginx:1")));
        assert_eq!(next_step(&ran, Some(&t), clock(t0)), poll());
        // Owned but not controlled by a DaemonSet: an ordinary pod.
        let mut v = json(&p);
        v["metadata"]["ownerReferences"][0]["controller"] = Value::Bool(false);
        let loose: Pod = serde_json::from_value(v).unwrap();
        assert_eq!(next_step(&loose, None, clock(t0)), Step::Create);
    }

    #[test]
    fn the_active_deadline_ends_a_running_pod_once() {
        let t0 = Instant::now();
        let mut v = json(&pod("Running", "u1", "nginx:1"));
        v["spec"]["activeDeadlineSeconds"] = 30.into();
        v["status"]["startTime"] = "2026-01-01T00:00:00Z".into();
        let p: Pod = serde_json::from_value(v.clone()).unwrap();
        let at = |secs: i64| Clock {
            wall: Timestamp::from_second(
                "2026-01-01T00:00:00Z"
                    .parse::<Timestamp>()
                    .unwrap()
                    .as_second()
                    + secs,
            )
            .unwrap(),
            ..clock(t0)
        };
        let t = running(t0);
        assert_eq!(next_step(&p, Some(&t), at(29)), poll());
        assert_eq!(
            next_step(&p, Some(&t), at(30)),
            Step::DeadlineExceeded {
                workload_id: Some("w1".into())
            }
        );
        // Not yet created: no workload to delete, still ended.
        assert_eq!(
            next_step(&p, None, at(31)),
            Step::DeadlineExceeded { workload_id: None }
        );
        // Once failed by the deadline, nothing more.
        let mut done = t.clone();
        done.workload_gone();
        done.finish();
        assert_eq!(next_step(&p, Some(&done), at(90)), Step::Done);
        // A pod that already ended is not ended again.
        v["status"]["phase"] = "Succeeded".into();
        let ended: Pod = serde_json::from_value(v).unwrap();
        assert_eq!(next_step(&ended, Some(&t), at(90)), poll());
    }
}
