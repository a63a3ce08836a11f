//! Native mirrors of the WIT records, so the mapping can run (and be tested, and benchmarked)
//! outside a component. `component.rs` converts between these and the generated bindings.

use crate::prelude::*;

/// How a resolved value reaches the container (WIT `env-value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// `{"value": …}`.
    Plain(String),
    /// A Secret's value, withheld: `{"secretValue": ""}`, the host fills it in.
    Secret,
    /// Resolved by StackPath on the instance: `valueFrom.instanceFieldRef.fieldPath`.
    InstanceField(String),
    /// A figure of the container's StackPath size: `{"value": ""}`, the host fills it in.
    SizeLimit,
}

/// Where a resolved variable was declared (WIT `env-origin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvOrigin {
    /// `env[i].valueFrom`.
    Env(u32),
    /// `envFrom[i]`.
    EnvFrom(u32),
}

/// An env value the host resolved from `valueFrom` or `envFrom`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedEnv {
    pub container: String,
    pub name: String,
    pub value: EnvValue,
    pub origin: EnvOrigin,
}

/// The kind of a volume the host can provide (WIT `config-volume-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigVolumeKind {
    ConfigMap,
    Secret,
    DownwardApi,
    Projected,
    EmptyDir,
}

/// A file of a config volume: where and with which mode, never its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    pub path: String,
    pub mode: u32,
}

/// A pod volume the host writes into a claim the policy emits for it (WIT `config-volume`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigVolume {
    pub name: String,
    pub kind: ConfigVolumeKind,
    pub files: Vec<ConfigFile>,
    pub bytes: u64,
}

/// What the host knows that is not in the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    pub node_name: String,
    pub city_code: String,
    pub stack_id: String,
    pub env: Vec<ResolvedEnv>,
    pub config_volumes: Vec<ConfigVolume>,
}

impl Context {
    /// The value resolved for the variable declared at `origin` of `container`, when that
    /// declaration is the one that wins.
    pub fn resolved(&self, container: &str, origin: EnvOrigin) -> Option<&ResolvedEnv> {
        self.env
            .iter()
            .find(|e| e.origin == origin && e.container == container)
    }

    /// The variables `envFrom` gives `container`, in the host's order.
    pub fn from_env_from<'s>(
        &'s self,
        container: &'s str,
    ) -> impl Iterator<Item = &'s ResolvedEnv> {
        self.env
            .iter()
            .filter(move |e| e.container == container && matches!(e.origin, EnvOrigin::EnvFrom(_)))
    }

    /// The config volume named `name`, when the host can provide it.
    pub fn config_volume(&self, name: &str) -> Option<&ConfigVolume> {
        self.config_volumes.iter().find(|v| v.name == name)
    }
}

/// A field path in the pod and a message about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub path: String,
    pub message: String,
}

impl Finding {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Finding {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// The policy's answer for a pod that can run.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    /// The `v1WorkloadSpec` as a JSON object (without host-owned fields).
    pub spec: String,
    pub annotations: Vec<(String, String)>,
    pub warnings: Vec<Finding>,
}

/// The policy's answer for a pod that cannot run: every reason, not just the first.
pub type Violations = Vec<Finding>;
