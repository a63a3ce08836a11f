//! What can go wrong loading or running a policy. Every message names the policy.

use std::time::Duration;

/// A field path and a message, as the policy or the output validation reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy {policy}: cannot load it: {reason}")]
    Load { policy: String, reason: String },

    #[error(
        "policy {policy} targets contract {found}, but this vk-stackpath speaks {speaks}; \
         rebuild the policy against wit/ of this release"
    )]
    IncompatibleContract {
        policy: String,
        found: String,
        speaks: String,
    },

    /// The policy loads, but its contract cannot carry what this pod needs.
    #[error(
        "policy {policy} implements {contract}, which cannot carry {needs}; rebuild the policy \
         against wit/policy.wit of this release ({current}) to run this pod"
    )]
    ContractTooOld {
        policy: String,
        contract: String,
        needs: String,
        current: String,
    },

    #[error(
        "policy {policy} did not finish within {limit:?} and was stopped; a policy must not \
         loop or wait (raise --policy-timeout only if the policy is known to be slow)"
    )]
    Timeout { policy: String, limit: Duration },

    #[error(
        "policy {policy} needed more than its memory limit of {limit_mib} MiB and was stopped \
         (raise --policy-memory-mib only if the policy is known to need it)"
    )]
    OutOfMemory { policy: String, limit_mib: u64 },

    #[error("policy {policy} crashed: {message}")]
    Trap { policy: String, message: String },

    #[error("the pod was rejected by policy {policy}: {}", join(.violations))]
    Rejected {
        policy: String,
        violations: Vec<Violation>,
    },

    #[error("policy {policy} returned an invalid workload: {}", join(.violations))]
    InvalidOutput {
        policy: String,
        violations: Vec<Violation>,
    },
}

impl PolicyError {
    /// The short, stable label used in metrics and Event reasons.
    pub fn metric_label(&self) -> &'static str {
        match self {
            PolicyError::Load { .. } => "load",
            PolicyError::IncompatibleContract { .. } => "incompatible",
            PolicyError::ContractTooOld { .. } => "contract_too_old",
            PolicyError::Timeout { .. } => "timeout",
            PolicyError::OutOfMemory { .. } => "out_of_memory",
            PolicyError::Trap { .. } => "trap",
            PolicyError::Rejected { .. } => "rejected",
            PolicyError::InvalidOutput { .. } => "invalid_output",
        }
    }

    /// The field-level reasons, when there are any.
    pub fn violations(&self) -> &[Violation] {
        match self {
            PolicyError::Rejected { violations, .. }
            | PolicyError::InvalidOutput { violations, .. } => violations,
            _ => &[],
        }
    }
}

fn join(v: &[Violation]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
