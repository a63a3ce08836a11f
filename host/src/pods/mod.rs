//! The pod path: watch the pods bound to this node, run each as a StackPath workload, write
//! their status back.
//!
//! - [`controller`]: the kube-runtime controller wiring (watch, queue, workers, requeues).
//! - [`context`]: what every pass shares (clients, policy, tracker, timings).
//! - [`decide`]: what a pod needs next, pure: from the pod, the tracker's memory and the clock.
//! - [`reconcile`]: one pass over one pod: carries out the decided steps (create, update,
//!   poll, delete) against StackPath and the API server.
//! - [`tracker`]: what the daemon remembers per pod between passes (workload id, poll pacing),
//!   changed only through its transition methods.
//! - [`adopt`]: workloads that already exist at start (ours, or the Go provider's).
//! - [`orphans`]: workloads whose pod is gone, removed after a grace window.
//! - [`status`]: instance → pod status, pure.
//! - [`events`]: Events (events.k8s.io/v1); [`reason`]: every reason the pod path gives.
//! - [`trim`]: what is dropped from pods before caching or translating them.
//! - [`locator`]: where a pod's container runs, for the kubelet API.
//! - [`kept`]: the last output of finished pods' containers, whose workloads are gone.

pub mod adopt;
pub mod context;
pub mod controller;
pub mod decide;
pub mod events;
pub mod kept;
pub mod locator;
pub mod orphans;
pub mod reason;
pub mod reconcile;
pub mod status;
pub mod tracker;
pub mod trim;

#[cfg(test)]
mod fixtures;

pub use context::{Context, Timing};
pub use controller::run;
