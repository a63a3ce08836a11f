//! The Node object the daemon declares. Pure: the heartbeat decides when to write it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

/// The taint that keeps ordinary pods off the virtual node (the Go provider's).
pub const TAINT_KEY: &str = "virtual-kubelet.io/provider";
pub const TAINT_VALUE: &str = "stackpath";

/// What the node declares about itself.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub name: String,
    /// Upper case city code; the zone label.
    pub city_code: String,
    /// The StackPath region of the city (its location's `regionCode`, e.g. `NA`); the region
    /// label, when StackPath names one.
    pub region: Option<String>,
    pub internal_ip: String,
    pub kubelet_port: u16,
    pub cpu: String,
    pub memory: String,
    pub pods: String,
    pub storage: String,
    /// `None`: no taint (`--disable-taint`).
    pub taint: Option<Taint>,
    /// Reported as `nodeInfo.kubeletVersion`.
    pub kubelet_version: String,
    /// Extra node labels (`--node-label k=v`).
    pub extra_labels: BTreeMap<String, String>,
}

impl NodeSettings {
    pub fn default_taint(effect: &str) -> Taint {
        Taint {
            key: TAINT_KEY.into(),
            value: Some(TAINT_VALUE.into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut l = BTreeMap::from([
            ("type".to_owned(), "virtual-kubelet".to_owned()),
            ("kubernetes.io/role".to_owned(), "agent".to_owned()),
            ("kubernetes.io/os".to_owned(), "linux".to_owned()),
            ("kubernetes.io/arch".to_owned(), "amd64".to_owned()),
            ("kubernetes.io/hostname".to_owned(), self.name.clone()),
            (
                "topology.kubernetes.io/zone".to_owned(),
                self.city_code.clone(),
            ),
            (
                "node.kubernetes.io/exclude-from-external-load-balancers".to_owned(),
                "true".to_owned(),
            ),
        ]);
        if let Some(region) = &self.region {
            l.insert("topology.kubernetes.io/region".to_owned(), region.clone());
        }
        l.extend(self.extra_labels.clone());
        l
    }

    fn resources(&self) -> BTreeMap<String, Quantity> {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(self.cpu.clone())),
            ("memory".to_owned(), Quantity(self.memory.clone())),
            ("pods".to_owned(), Quantity(self.pods.clone())),
            (
                "ephemeral-storage".to_owned(),
                Quantity(self.storage.clone()),
            ),
        ])
    }

    /// The node's status; `problem` is why StackPath is unusable (→ Ready False), if it is.
    /// Transition times are kept from `current` when a condition keeps its status.
    pub fn status(&self, problem: Option<&str>, current: Option<&NodeStatus>) -> NodeStatus {
        let now = Time(Timestamp::now());
        let previous = |t: &str| {
            current
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == t))
        };
        let cond = |type_: &str, status: bool, reason: &str, message: String| {
            let status = if status { "True" } else { "False" };
            let last_transition_time = match previous(type_) {
                Some(p) if p.status == status => p.last_transition_time.clone(),
                _ => Some(now.clone()),
            };
            NodeCondition {
                type_: type_.into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message),
                last_heartbeat_time: Some(now.clone()),
                last_transition_time,
            }
        };
        let ready = match problem {
            None => cond(
                "Ready",
                true,
                "KubeletReady",
                "vk-stackpath is ready and StackPath answers".into(),
            ),
            Some(p) => cond("Ready", false, "StackPathUnreachable", p.to_owned()),
        };
        NodeStatus {
            capacity: Some(self.resources()),
            allocatable: Some(self.resources()),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: self.internal_ip.clone(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: self.name.clone(),
                },
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint {
                    port: i32::from(self.kubelet_port),
                }),
            }),
            node_info: Some(NodeSystemInfo {
                architecture: "amd64".into(),
                kubelet_version: self.kubelet_version.clone(),
                kube_proxy_version: String::new(),
                operating_system: "linux".into(),
                os_image: format!("StackPath Edge Compute ({})", self.city_code),
                kernel_version: String::new(),
                container_runtime_version: "stackpath://v1".into(),
                boot_id: String::new(),
                machine_id: String::new(),
                system_uuid: String::new(),
                ..NodeSystemInfo::default()
            }),
            conditions: Some(vec![
                ready,
                cond(
                    "MemoryPressure",
                    false,
                    "KubeletHasSufficientMemory",
                    "StackPath sizes each workload".into(),
                ),
                cond(
                    "DiskPressure",
                    false,
                    "KubeletHasNoDiskPressure",
                    "StackPath sizes each workload".into(),
                ),
                cond(
                    "PIDPressure",
                    false,
                    "KubeletHasSufficientPID",
                    "StackPath sizes each workload".into(),
                ),
                cond(
                    "NetworkUnavailable",
                    false,
                    "RouteCreated",
                    "StackPath provides each workload's network".into(),
                ),
            ]),
            ..NodeStatus::default()
        }
    }

    /// The status of a node whose daemon stopped: Ready Unknown-like False.
    pub fn stopped_status(&self, current: Option<&NodeStatus>) -> NodeStatus {
        let mut s = self.status(
            Some("vk-stackpath stopped; workloads keep running at StackPath"),
            current,
        );
        if let Some(c) = s
            .conditions
            .as_mut()
            .and_then(|cs| cs.iter_mut().find(|c| c.type_ == "Ready"))
        {
            c.reason = Some("KubeletStopped".into());
        }
        s
    }

    /// A new Node object.
    pub fn node(&self, problem: Option<&str>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(self.labels()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                taints: self.taint.clone().map(|t| vec![t]),
                ..NodeSpec::default()
            }),
            status: Some(self.status(problem, None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> NodeSettings {
        NodeSettings {
            name: "stackpath-edge-provider-dfw".into(),
            city_code: "DFW".into(),
            region: Some("NA".into()),
            internal_ip: "127.0.0.1".into(),
            kubelet_port: 10250,
            cpu: "10000".into(),
            memory: "1Ti".into(),
            pods: "1000".into(),
            storage: "1Ti".into(),
            taint: Some(NodeSettings::default_taint("NoSchedule")),
            kubelet_version: "v0.1.0".into(),
            extra_labels: BTreeMap::new(),
        }
    }

    #[test]
    fn node_declares_labels_taint_and_endpoint() {
        let n = settings().node(None);
        let labels = n.metadata.labels.unwrap();
        assert_eq!(labels["type"], "virtual-kubelet");
        assert_eq!(labels["topology.kubernetes.io/zone"], "DFW");
        assert_eq!(labels["topology.kubernetes.io/region"], "NA");
        let taint = &n.spec.unwrap().taints.unwrap()[0];
        assert_eq!(
            (taint.key.as_str(), taint.effect.as_str()),
            (TAINT_KEY, "NoSchedule")
        );
        let st = n.status.unwrap();
        assert_eq!(
            st.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port,
            10250
        );
        assert_eq!(st.capacity.unwrap()["pods"].0, "1000");
    }

    #[test]
    fn ready_follows_stackpath_and_keeps_transition_time() {
        let s = settings();
        let ok = s.status(None, None);
        let ready = |st: &NodeStatus| {
            st.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == "Ready")
                .unwrap()
                .clone()
        };
        assert_eq!(ready(&ok).status, "True");
        let again = s.status(None, Some(&ok));
        assert_eq!(
            ready(&again).last_transition_time,
            ready(&ok).last_transition_time
        );
        let down = s.status(Some("StackPath answers 503"), Some(&ok));
        assert_eq!(ready(&down).status, "False");
        assert_eq!(
            ready(&down).message.as_deref(),
            Some("StackPath answers 503")
        );
    }
}
