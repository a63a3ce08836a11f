//! Volume claims (`v1VolumeClaim`), the storage a workload's instances may mount.

use serde::{Deserialize, Serialize};

use super::{Metadata, ResourceRequirements};

/// A claim for a volume (`v1VolumeClaim`). `stackId`, `id` and `phase` are set by StackPath.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeClaim {
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
    pub spec: Option<VolumeClaimSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<VolumeClaimPhase>,
}

/// The requested storage (`v1VolumeClaimSpec`), e.g. `resources.requests.storage = "10Gi"`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeClaimSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

/// `VolumeClaimVolumeClaimPhase`. Unknown values read as `Unspecified`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VolumeClaimPhase {
    Pending,
    Unbound,
    Bound,
    #[default]
    #[serde(rename = "VOLUME_CLAIM_PHASE_UNSPECIFIED", other)]
    Unspecified,
}
