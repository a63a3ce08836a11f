//! The workload (`v1Workload`), its metadata and its spec (`v1WorkloadSpec`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    ContainerSpec, ImagePullCredential, RuntimeSettings, StringMap, Target, VirtualMachineSpec,
    VolumeClaim,
};

/// A computing workload (`v1Workload`). `stackId`, `id` and `status` are set by StackPath.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<WorkloadSpec>,
    /// Deployment targets keyed by target name (`v1TargetMapEntry`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub targets: BTreeMap<String, Target>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<WorkloadStatus>,
}

/// Metadata associated with an entity (`v1Metadata`). The timestamps and `version` are set by
/// StackPath; `version` is an int64 encoded as a string.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "StringMap::is_empty")]
    pub annotations: StringMap,
    #[serde(default, skip_serializing_if = "StringMap::is_empty")]
    pub labels: StringMap,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_requested_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A workload's status (`v1WorkloadStatus`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkloadStatus {
    #[default]
    Active,
    Suspended,
    BillingSuspended,
    Inactive,
    /// A status this model does not know (StackPath added one). Never sent.
    #[serde(other)]
    Unknown,
}

/// The desired state of a workload (`v1WorkloadSpec`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_interfaces: Vec<NetworkInterface>,
    /// Init containers keyed by container name (`v1ContainerSpecMapEntry`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub init_containers: BTreeMap<String, ContainerSpec>,
    /// Containers keyed by container name (`v1ContainerSpecMapEntry`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub containers: BTreeMap<String, ContainerSpec>,
    /// Virtual machines keyed by name (`v1VirtualMachineSpecMapEntry`); modelled so that a
    /// workload read back and PUT again loses nothing, though the daemon runs containers only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub virtual_machines: BTreeMap<String, VirtualMachineSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_claim_templates: Vec<VolumeClaim>,
    /// `v1WrappedImagePullCredentials`: a plain array.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_credentials: Vec<ImagePullCredential>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeSettings>,
}

/// A network interface created on the workload's instances (`v1NetworkInterface`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkInterface {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_families: Vec<IpFamily>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_subnet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_one_to_one_nat: Option<bool>,
}

/// An IP family (`v1IPFamily`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IpFamily {
    #[serde(rename = "IP_FAMILY_UNSPECIFIED")]
    Unspecified,
    #[serde(rename = "IPv4")]
    IPv4,
    #[serde(rename = "IPv6")]
    IPv6,
}

/// Request body of create (`v1CreateWorkloadRequest`) and PUT (`v1PutWorkloadRequest`).
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadRequest<'a> {
    pub workload: &'a Workload,
}

/// Response of get, create, PUT and PATCH (`v1GetWorkloadResponse` and friends).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkloadResponse {
    #[serde(default)]
    pub workload: Option<Workload>,
}
