//! Typed model of the StackPath Workload API (`workload-api.oas2.json`), limited to what the
//! daemon uses: workloads and their spec, instances and their status, locations, metrics,
//! pagination and API errors.
//!
//! JSON names follow the spec exactly. Where the spec encodes a 64-bit integer as a string
//! (`terminationGracePeriodSeconds`, `runAsUser`, `version`, `totalCount` …) the model keeps it
//! a `String`, as the wire does. Maps are `BTreeMap` so serialized output is deterministic.
//!
//! Request-side types (the workload spec and everything under it, and targets) carry
//! `deny_unknown_fields`: the policy engine deserializes policy output into them and must refuse
//! fields StackPath does not know. Response-only types (instances, statuses, locations, metrics,
//! page info, errors) accept unknown fields, since StackPath may extend them. Enums the server
//! reports fall back to their `…_UNSPECIFIED` value for values this model does not know.

mod container;
mod error;
mod instance;
mod location;
mod metrics;
mod page;
mod runtime;
mod target;
mod virtual_machine;
mod volume;
mod workload;

pub use container::*;
pub use error::*;
pub use instance::*;
pub use location::*;
pub use metrics::*;
pub use page::*;
pub use runtime::*;
pub use target::*;
pub use virtual_machine::*;
pub use volume::*;
pub use workload::*;

/// A string-to-string map (`v1StringMapEntry`).
pub type StringMap = std::collections::BTreeMap<String, String>;

#[cfg(test)]
mod spec_conformance;
