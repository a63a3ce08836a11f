//! The kubelet API's view of the pod path: where a pod's container runs, from the pod cache
//! and the tracker. Read-only; the kubelet API never changes a pod's lifecycle.

use std::sync::Arc;

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
        let t = self
            .ctx
            .tracker
            .get(&tracker::key(namespace, pod))
            .filter(|t| t.workload_id().is_some())
            .ok_or_else(|| LocateError::NoWorkloadYet {
                namespace: namespace.to_owned(),
                pod: pod.to_owned(),
            })?;
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
}
