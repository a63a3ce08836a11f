//! The kubelet API's view of the pod path: where a pod's container runs, from the pod cache
//! and the tracker. Read-only; the kubelet API never changes a pod's lifecycle.

use std::sync::Arc;

use bytes::Bytes;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};
use vk_kubelet::{ContainerLocation, LocateError, PodLocator};

use super::context::Context;
use super::status;
use super::tracker;

pub struct Locator {
    pub store: Store<Pod>,
    pub ctx: Arc<Context>,
}

impl PodLocator for Locator {
    fn locate(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<ContainerLocation, LocateError> {
        let not_found = || LocateError::PodNotFound {
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
        };
        let p = self
            .store
            .get(&ObjectRef::new(pod).within(namespace))
            .ok_or_else(not_found)?;
        let spec = p.spec.as_ref().ok_or_else(not_found)?;
        let init = spec.init_containers.as_deref().unwrap_or_default();
        // Native sidecars run at StackPath as containers, under their own names.
        let sidecars = init.iter().filter(|c| status::is_sidecar(c));
        let running: Vec<&str> = spec
            .containers
            .iter()
            .chain(sidecars)
            .map(|c| c.name.as_str())
            .collect();
        if !running.contains(&container) {
            if init.iter().any(|c| c.name == container) {
                return Err(LocateError::InitContainer {
                    namespace: namespace.to_owned(),
                    pod: pod.to_owned(),
                    container: container.to_owned(),
                });
            }
            return Err(LocateError::NoSuchContainer {
                namespace: namespace.to_owned(),
                pod: pod.to_owned(),
                container: container.to_owned(),
                valid: running.iter().map(|&n| n.to_owned()).collect(),
            });
        }
        let tracked = self.ctx.tracker.get(&tracker::key(namespace, pod));
        let t = match tracked {
            Some(t) if t.workload_id().is_some() => t,
            t => {
                return Err(finished(&p, t.as_ref()).unwrap_or_else(|| {
                    LocateError::NoWorkloadYet {
                        namespace: namespace.to_owned(),
                        pod: pod.to_owned(),
                    }
                }));
            }
        };
        let instance_name = t
            .instance_name()
            .map(str::to_owned)
            .filter(|_| t.has_instance())
            .ok_or_else(|| LocateError::NoInstanceYet {
                namespace: namespace.to_owned(),
                pod: pod.to_owned(),
            })?;
        Ok(ContainerLocation {
            workload_id: t.workload_id().unwrap_or_default().to_owned(),
            instance_name,
            container: container.to_owned(),
        })
    }

    fn pods(&self) -> Vec<Pod> {
        self.store.state().iter().map(|p| (**p).clone()).collect()
    }

    fn finished_logs(&self, namespace: &str, pod: &str, container: &str) -> Result<Bytes, String> {
        match self.ctx.tracker.get(&tracker::key(namespace, pod)) {
            Some(t) => match t.kept_logs() {
                Some(kept) => kept.of(container),
                None => Err(NOT_KEPT.into()),
            },
            None => Err(NOT_KEPT.into()),
        }
    }
}

const NOT_KEPT: &str = "the daemon had none to keep (the pod never ran at StackPath, or the \
                        daemon restarted since it finished: finished pods' logs are kept in \
                        memory only)";

/// A pod in a terminal phase whose workload is gone: what ended it, for the user.
fn finished(pod: &Pod, t: Option<&tracker::Tracked>) -> Option<LocateError> {
    let status = pod.status.as_ref()?;
    let phase = status
        .phase
        .as_deref()
        .filter(|p| matches!(*p, "Succeeded" | "Failed"))?;
    let why = if t.is_some_and(|t| t.kept_logs().is_some()) {
        "its containers ended and its StackPath workload was deleted so that it neither \
         restarts nor bills"
            .to_owned()
    } else {
        match (status.reason.as_deref(), status.message.as_deref()) {
            (Some(r), Some(m)) => format!("{r}: {m}"),
            (Some(r), None) => r.to_owned(),
            (None, Some(m)) => m.to_owned(),
            (None, None) => "its StackPath workload is gone".to_owned(),
        }
    };
    Some(LocateError::Finished {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        pod: pod.metadata.name.clone().unwrap_or_default(),
        phase: phase.to_owned(),
        why,
    })
}
