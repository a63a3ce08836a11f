//! Native mirrors of the WIT records, so the mapping can run (and be tested, and benchmarked)
//! outside a component. `component.rs` converts between these and the generated bindings.

use crate::prelude::*;

/// An env value the host resolved from `valueFrom`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedEnv {
    pub container: String,
    pub name: String,
    /// `None` for Secret-sourced values: the policy never sees secret material.
    pub value: Option<String>,
    pub from_secret: bool,
}

/// What the host knows that is not in the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    pub node_name: String,
    pub city_code: String,
    pub stack_id: String,
    pub env: Vec<ResolvedEnv>,
}

impl Context {
    pub fn resolved(&self, container: &str, name: &str) -> Option<&ResolvedEnv> {
        self.env
            .iter()
            .find(|e| e.container == container && e.name == name)
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
