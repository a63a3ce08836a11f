//! What the host hands a policy besides the pod: used by the engine (to call the policy) and
//! by the output validation (to check Secret-sourced variables against it).

use super::config_volume::{ConfigVolume, EnvOrigin};

/// Inputs the host gives a policy besides the pod.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    pub node_name: String,
    pub city_code: String,
    pub stack_id: String,
    pub env: Vec<ResolvedEnv>,
    /// Volumes the host can write into the containers (contract 0.2.0).
    pub config_volumes: Vec<ConfigVolume>,
}

/// An env value resolved by the host. Secret values never reach the policy: only the fact
/// that the value is a Secret's.
#[derive(Debug, Clone, Default)]
pub struct ResolvedEnv {
    pub container: String,
    pub name: String,
    /// `None` when `from_secret` or `instance_field`.
    pub value: Option<String>,
    pub from_secret: bool,
    /// Resolved by StackPath on the instance: this field path (contract 0.2.0).
    pub instance_field: Option<String>,
    /// A figure of the StackPath size chosen for a container, written by the host after the
    /// policy ran (`value` is empty until then).
    pub size_limit: bool,
    /// Where the variable was declared (`envFrom` needs contract 0.2.0).
    pub origin: EnvOrigin,
}
