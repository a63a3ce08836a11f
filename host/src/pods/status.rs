//! StackPath instance → Kubernetes pod status (docs/mapping.md "Status back from StackPath").
//!
//! Pure functions: the controller decides when to call them and whether to write the result.
//! Condition transition times are carried over from the current status when a condition keeps
//! its value, so an unchanged instance yields an unchanged status (and no write).

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use stackpath_client::model::{
    ContainerPhase, ContainerStatus as SpContainerStatus, Instance, InstancePhase,
};

/// A condition the daemon owns: whether the workload exists at StackPath, and if not, why.
pub const CONDITION_WORKLOAD: &str = "stackpath.com/WorkloadCreated";

pub fn to_time(t: chrono::DateTime<chrono::Utc>) -> Option<Time> {
    Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32)
        .ok()
        .map(Time)
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// Pod phase from the instance phase.
pub fn pod_phase(phase: Option<InstancePhase>) -> &'static str {
    match phase {
        Some(InstancePhase::Running) => "Running",
        Some(InstancePhase::Completed | InstancePhase::Stopped) => "Succeeded",
        Some(InstancePhase::Failed) => "Failed",
        Some(InstancePhase::Scheduling | InstancePhase::Starting | InstancePhase::Deleting)
        | None => "Pending",
        Some(InstancePhase::Unspecified) => "Unknown",
    }
}

/// Keeps `lastTransitionTime` when the condition's status did not change.
fn condition(
    current: &[PodCondition],
    type_: &str,
    status: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> PodCondition {
    let status = if status { "True" } else { "False" };
    let previous = current.iter().find(|c| c.type_ == type_);
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Some(now()),
    };
    PodCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.map(str::to_owned),
        message,
        last_transition_time,
        ..PodCondition::default()
    }
}

fn container_state(s: Option<&SpContainerStatus>) -> (ContainerState, bool) {
    let Some(s) = s else {
        return (
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("ContainerCreating".into()),
                    message: None,
                }),
                ..ContainerState::default()
            },
            false,
        );
    };
    let waiting = |reason: Option<&str>, message: Option<&str>| ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.unwrap_or("ContainerCreating").to_owned()),
            message: message.map(str::to_owned),
        }),
        ..ContainerState::default()
    };
    match s.phase {
        Some(ContainerPhase::Running) => {
            let started = s
                .running
                .as_ref()
                .and_then(|r| r.started_at)
                .or(s.started_at)
                .and_then(to_time);
            (
                ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: started,
                    }),
                    ..ContainerState::default()
                },
                true,
            )
        }
        Some(ContainerPhase::Failed | ContainerPhase::Stopped) => {
            let t = s.terminated.clone().unwrap_or_default();
            let failed = s.phase == Some(ContainerPhase::Failed);
            let exit_code = t.exit_code.unwrap_or(if failed { 1 } else { 0 });
            (
                ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code,
                        reason: t.reason.or_else(|| {
                            Some(if exit_code == 0 { "Completed" } else { "Error" }.into())
                        }),
                        message: t.message,
                        started_at: t.started_at.or(s.started_at).and_then(to_time),
                        finished_at: t.finished_at.or(s.finished_at).and_then(to_time),
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                },
                false,
            )
        }
        _ => {
            let w = s.waiting.as_ref();
            (
                waiting(
                    w.and_then(|w| w.reason.as_deref()),
                    w.and_then(|w| w.message.as_deref()),
                ),
                false,
            )
        }
    }
}

fn container_statuses(
    names_images: &[(String, String)],
    statuses: &[SpContainerStatus],
) -> Vec<ContainerStatus> {
    names_images
        .iter()
        .map(|(name, image)| {
            let s = statuses.iter().find(|s| s.name.as_deref() == Some(name));
            let (state, running) = container_state(s);
            let ready = running && s.and_then(|s| s.ready).unwrap_or(true);
            ContainerStatus {
                name: name.clone(),
                image: image.clone(),
                image_id: String::new(),
                container_id: s
                    .and_then(|s| s.container_id.clone())
                    .map(|id| format!("stackpath://{id}")),
                ready,
                started: Some(running),
                restart_count: s.and_then(|s| s.restart_count).unwrap_or(0),
                state: Some(state),
                ..ContainerStatus::default()
            }
        })
        .collect()
}

/// An init container with `restartPolicy: Always` (a native sidecar): it runs beside the app
/// containers for the pod's life.
pub fn is_sidecar(c: &k8s_openapi::api::core::v1::Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn names_images(cs: &[k8s_openapi::api::core::v1::Container]) -> Vec<(String, String)> {
    cs.iter()
        .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
        .collect()
}

/// The status of a pod whose workload runs as `instance` (None: not scheduled yet).
pub fn from_instance(pod: &Pod, instance: Option<&Instance>, host_ip: &str) -> PodStatus {
    let current = pod.status.clone().unwrap_or_default();
    let conds = current.conditions.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let phase = pod_phase(instance.and_then(|i| i.phase));
    let main = container_statuses(
        &names_images(&spec.containers),
        instance
            .map(|i| i.container_statuses.as_slice())
            .unwrap_or_default(),
    );
    // A native sidecar runs as a StackPath container, so its status is among the containers';
    // Kubernetes reports it with the init containers (names are unique across both lists).
    let sp_init: Vec<SpContainerStatus> = instance
        .map(|i| {
            i.init_container_statuses
                .iter()
                .chain(&i.container_statuses)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let init_containers = spec.init_containers.as_deref().unwrap_or_default();
    let init = container_statuses(&names_images(init_containers), &sp_init);
    let init_done = init.iter().zip(init_containers).all(|(c, spec)| {
        let state = c.state.as_ref();
        if is_sidecar(spec) {
            state.is_some_and(|s| s.running.is_some())
        } else {
            state
                .and_then(|s| s.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0)
        }
    }) || phase == "Running"
        || phase == "Succeeded";
    let all_ready = phase == "Running" && !main.is_empty() && main.iter().all(|c| c.ready);
    let not_ready_msg = (!all_ready).then(|| {
        let names: Vec<_> = main
            .iter()
            .filter(|c| !c.ready)
            .map(|c| c.name.as_str())
            .collect();
        format!("containers with unready status: [{}]", names.join(" "))
    });
    let not_ready_reason = (!all_ready).then_some("ContainersNotReady");
    let terminal = phase == "Succeeded" || phase == "Failed";
    let ready_reason = if terminal && !all_ready {
        Some("PodCompleted")
    } else {
        not_ready_reason
    };
    let ready_msg = if terminal {
        None
    } else {
        not_ready_msg.clone()
    };
    let mut conditions = vec![
        condition(&conds, "PodScheduled", true, None, None),
        condition(
            &conds,
            "Initialized",
            init_done,
            (!init_done).then_some("ContainersNotInitialized"),
            None,
        ),
        condition(
            &conds,
            "ContainersReady",
            all_ready,
            ready_reason,
            ready_msg.clone(),
        ),
        condition(&conds, "Ready", all_ready, ready_reason, ready_msg),
        condition(&conds, CONDITION_WORKLOAD, true, None, None),
    ];
    // Keep PodScheduled exactly as the scheduler wrote it.
    if let Some(s) = conds.iter().find(|c| c.type_ == "PodScheduled") {
        conditions[0] = s.clone();
    }
    let ips: Vec<PodIP> = instance
        .into_iter()
        .flat_map(|i| [i.ip_address.clone(), i.ipv6_address.clone()])
        .flatten()
        .filter(|ip| !ip.is_empty())
        .map(|ip| PodIP { ip })
        .collect();
    PodStatus {
        phase: Some(phase.to_owned()),
        conditions: Some(conditions),
        host_ip: Some(host_ip.to_owned()),
        host_ips: Some(vec![k8s_openapi::api::core::v1::HostIP {
            ip: host_ip.to_owned(),
        }]),
        pod_ip: ips.first().map(|p| p.ip.clone()),
        pod_ips: (!ips.is_empty()).then_some(ips),
        start_time: current.start_time.clone().or_else(|| {
            instance
                .and_then(|i| i.started_at.or(i.created_at))
                .and_then(to_time)
        }),
        reason: instance.and_then(|i| i.reason.clone()),
        message: instance.and_then(|i| i.message.clone()),
        container_statuses: Some(main),
        init_container_statuses: (!init.is_empty()).then_some(init),
        qos_class: current.qos_class.clone(),
        ..PodStatus::default()
    }
}

/// A pod the daemon will not run: Failed, with the reason and the message users see in
/// `kubectl get pod` and `kubectl describe pod`.
pub fn failed(pod: &Pod, reason: &str, message: &str, host_ip: &str) -> PodStatus {
    let current = pod.status.clone().unwrap_or_default();
    let conds = current.conditions.clone().unwrap_or_default();
    let mut conditions: Vec<PodCondition> = conds
        .iter()
        .filter(|c| c.type_ == "PodScheduled")
        .cloned()
        .collect();
    conditions.push(condition(&conds, "Ready", false, Some(reason), None));
    conditions.push(condition(
        &conds,
        CONDITION_WORKLOAD,
        false,
        Some(reason),
        Some(message.to_owned()),
    ));
    let spec = pod.spec.clone().unwrap_or_default();
    let terminated = |(name, image): &(String, String)| ContainerStatus {
        name: name.clone(),
        image: image.clone(),
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 1,
                reason: Some(reason.to_owned()),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        }),
        ..ContainerStatus::default()
    };
    PodStatus {
        phase: Some("Failed".into()),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        conditions: Some(conditions),
        host_ip: Some(host_ip.to_owned()),
        host_ips: Some(vec![k8s_openapi::api::core::v1::HostIP {
            ip: host_ip.to_owned(),
        }]),
        container_statuses: Some(
            names_images(&spec.containers)
                .iter()
                .map(terminated)
                .collect(),
        ),
        start_time: current.start_time.clone().or_else(|| Some(now())),
        qos_class: current.qos_class.clone(),
        ..PodStatus::default()
    }
}

/// A pod still waiting for its workload (StackPath unreachable, rate limited, …): Pending,
/// with the daemon's condition saying why.
pub fn pending(pod: &Pod, reason: &str, message: &str, host_ip: &str) -> PodStatus {
    let mut status = from_instance(pod, None, host_ip);
    let conds = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    if let Some(cs) = status.conditions.as_mut() {
        cs.retain(|c| c.type_ != CONDITION_WORKLOAD);
        cs.push(condition(
            &conds,
            CONDITION_WORKLOAD,
            false,
            Some(reason),
            Some(message.to_owned()),
        ));
    }
    status
}

/// How a pod's containers are restarted (`spec.restartPolicy`, `Always` by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn of(pod: &Pod) -> Self {
        match pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) {
            Some("Never") => Self::Never,
            Some("OnFailure") => Self::OnFailure,
            _ => Self::Always,
        }
    }

    /// The pod runs to completion (a Job's pod): it ends when its containers do.
    pub fn runs_to_completion(self) -> bool {
        self != Self::Always
    }
}

/// A container's last termination as StackPath reports it: the current state when the
/// container is stopped or failed, else the termination before its latest restart.
fn last_termination(s: &SpContainerStatus) -> Option<ContainerStateTerminated> {
    let stopped = matches!(
        s.phase,
        Some(ContainerPhase::Failed | ContainerPhase::Stopped)
    );
    let restarted = s.restart_count.unwrap_or(0) > 0;
    if !stopped && !restarted {
        return None;
    }
    let t = s.terminated.clone().unwrap_or_default();
    if !stopped && t.exit_code.is_none() && t.finished_at.is_none() {
        // Restarted, but StackPath kept nothing of how the last run ended.
        return None;
    }
    let failed = s.phase == Some(ContainerPhase::Failed);
    let exit_code = t.exit_code.unwrap_or(if failed { 1 } else { 0 });
    Some(ContainerStateTerminated {
        exit_code,
        reason: t
            .reason
            .or_else(|| Some(if exit_code == 0 { "Completed" } else { "Error" }.into())),
        message: t.message,
        started_at: t.started_at.or(s.started_at).and_then(to_time),
        finished_at: t.finished_at.or(s.finished_at).and_then(to_time),
        ..ContainerStateTerminated::default()
    })
}

/// For a pod that runs to completion: its final status once every container has finished as
/// its restart policy says (`Never`: at its first exit; `OnFailure`: at an exit with code 0,
/// StackPath restarting the others), `None` while one still runs. Succeeded when every
/// container exited 0, else Failed; each container's `terminated` state carries the exit code,
/// reason and finish time StackPath reported.
pub fn completion(pod: &Pod, instance: &Instance, host_ip: &str) -> Option<PodStatus> {
    let policy = RestartPolicy::of(pod);
    if !policy.runs_to_completion() {
        return None;
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let mut finished = Vec::new();
    for c in &spec.containers {
        let s = instance
            .container_statuses
            .iter()
            .find(|s| s.name.as_deref() == Some(c.name.as_str()))?;
        let t = last_termination(s)?;
        if policy == RestartPolicy::OnFailure && t.exit_code != 0 {
            return None;
        }
        finished.push((c, s, t));
    }
    if finished.is_empty() {
        return None;
    }
    let succeeded = finished.iter().all(|(_, _, t)| t.exit_code == 0);
    let mut status = from_instance(pod, Some(instance), host_ip);
    status.phase = Some(if succeeded { "Succeeded" } else { "Failed" }.into());
    status.container_statuses = Some(
        finished
            .into_iter()
            .map(|(c, s, t)| ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                container_id: s.container_id.clone().map(|id| format!("stackpath://{id}")),
                restart_count: s.restart_count.unwrap_or(0),
                ready: false,
                started: Some(false),
                state: Some(ContainerState {
                    terminated: Some(t),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            })
            .collect(),
    );
    let conds = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    if let Some(cs) = status.conditions.as_mut() {
        for c in cs.iter_mut() {
            if c.type_ == "Ready" || c.type_ == "ContainersReady" {
                *c = condition(&conds, &c.type_, false, Some("PodCompleted"), None);
            }
        }
    }
    Some(status)
}

/// Whether writing `new` would change what the API server holds (ignoring fields we do not own).
pub fn differs(pod: &Pod, new: &PodStatus) -> bool {
    let current = pod.status.clone().unwrap_or_default();
    // The API server stores an absent container state as `{}`: compare them as equal, or
    // every poll of an unchanged pod would write its status again.
    let states = |c: &Option<Vec<ContainerStatus>>| {
        c.clone().map(|v| {
            v.into_iter()
                .map(|mut c| {
                    for s in [&mut c.state, &mut c.last_state] {
                        if s.as_ref().is_none_or(|s| *s == ContainerState::default()) {
                            *s = None;
                        }
                    }
                    c
                })
                .collect()
        })
    };
    let owned = |s: &PodStatus| PodStatus {
        phase: s.phase.clone(),
        conditions: s.conditions.clone(),
        host_ip: s.host_ip.clone(),
        host_ips: s.host_ips.clone(),
        pod_ip: s.pod_ip.clone(),
        pod_ips: s.pod_ips.clone(),
        start_time: s.start_time.clone(),
        reason: s.reason.clone(),
        message: s.message.clone(),
        container_statuses: states(&s.container_statuses),
        init_container_statuses: states(&s.init_container_statuses),
        ..PodStatus::default()
    };
    serde_json::to_value(owned(&current)).ok() != serde_json::to_value(owned(new)).ok()
}

/// Whether a pod in this status is still changing (poll fast) or settled (poll slowly).
pub fn is_settled(status: &PodStatus) -> bool {
    match status.phase.as_deref() {
        Some("Succeeded" | "Failed") => true,
        Some("Running") => status.container_statuses.iter().flatten().all(|c| c.ready),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stackpath_client::model::ContainerStateRunning as SpRunning;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ]}
        }))
        .unwrap()
    }

    fn running() -> Instance {
        let t = "2026-01-01T00:00:05Z".parse().unwrap();
        Instance {
            phase: Some(InstancePhase::Running),
            ip_address: Some("10.1.2.3".into()),
            ipv6_address: Some("fd00::3".into()),
            started_at: Some(t),
            container_statuses: vec![SpContainerStatus {
                name: Some("app".into()),
                phase: Some(ContainerPhase::Running),
                running: Some(SpRunning {
                    started_at: Some(t),
                }),
                ready: Some(true),
                restart_count: Some(2),
                ..SpContainerStatus::default()
            }],
            ..Instance::default()
        }
    }

    #[test]
    fn a_native_sidecar_is_reported_with_the_init_containers_from_its_stackpath_container() {
        let mut p = pod();
        p.spec.as_mut().unwrap().init_containers =
            Some(vec![serde_json::from_value(
            serde_json::json!({"name": "proxy", "image": "envoy", "restartPolicy": "Always"}),
        )
        .unwrap()]);
        let mut i = running();
        let mut proxy = i.container_statuses[0].clone();
        proxy.name = Some("proxy".into());
        i.container_statuses.push(proxy);
        let s = from_instance(&p, Some(&i), "192.0.2.1");
        let init = s.init_container_statuses.as_ref().unwrap();
        assert_eq!(init[0].name, "proxy");
        assert!(
            init[0].state.as_ref().unwrap().running.is_some(),
            "{init:?}"
        );
        assert_eq!(s.container_statuses.as_ref().unwrap().len(), 1);
        let initialized = s
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Initialized");
        assert_eq!(initialized.unwrap().status, "True");
    }

    #[test]
    fn phases_follow_the_mapping() {
        use InstancePhase::*;
        for (p, want) in [
            (Running, "Running"),
            (Completed, "Succeeded"),
            (Stopped, "Succeeded"),
            (Failed, "Failed"),
            (Scheduling, "Pending"),
            (Starting, "Pending"),
            (Deleting, "Pending"),
            (Unspecified, "Unknown"),
        ] {
            assert_eq!(pod_phase(Some(p)), want, "{p:?}");
        }
    }

    #[test]
    fn running_instance_gives_ready_pod_with_ips_and_restarts() {
        let mut p = pod();
        let s = from_instance(&p, Some(&running()), "192.0.2.1");
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.1.2.3"));
        assert_eq!(s.pod_ips.as_ref().unwrap().len(), 2);
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert!(c.ready);
        assert_eq!(c.restart_count, 2);
        let ready = s
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
        assert!(is_settled(&s));
        assert!(differs(&p, &s));
        // Written back, the same instance changes nothing.
        p.status = Some(s);
        let again = from_instance(&p, Some(&running()), "192.0.2.1");
        assert!(!differs(&p, &again));
    }

    #[test]
    fn status_as_the_api_server_returns_it_is_not_rewritten() {
        let mut p = pod();
        let s = from_instance(&p, Some(&running()), "192.0.2.1");
        // What a GET returns after our write: absent container states as `{}`, a QoS class.
        let mut stored = serde_json::to_value(&s).unwrap();
        for c in stored["containerStatuses"].as_array_mut().unwrap() {
            c["lastState"] = serde_json::json!({});
        }
        stored["qosClass"] = "BestEffort".into();
        p.status = Some(serde_json::from_value(stored).unwrap());
        let again = from_instance(&p, Some(&running()), "192.0.2.1");
        assert!(!differs(&p, &again));
    }

    #[test]
    fn failed_pod_keeps_reason_and_message() {
        let s = failed(
            &pod(),
            crate::pods::reason::PROVIDER_FAILED,
            "spec.containers[0]: bad",
            "192.0.2.1",
        );
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        assert_eq!(s.reason.as_deref(), Some("ProviderFailed"));
        assert!(!is_settled(&PodStatus::default()));
        assert!(is_settled(&s));
    }
}
