//! The pod path: watch the pods bound to this node, run each as a StackPath workload, write
//! their status back.
//!
//! - [`controller`]: the kube-runtime controller wiring (watch, queue, workers, requeues).
//! - [`reconcile`]: one pass over one pod (create, update, delete, poll status).
//! - [`tracker`]: what the daemon remembers per pod between passes (workload id, poll pacing).
//! - [`adopt`]: workloads that already exist at start (ours, or the Go provider's).
//! - [`orphans`]: workloads whose pod is gone, removed after a grace window.
//! - [`status`]: instance → pod status, pure.
//! - [`events`]: Events (events.k8s.io/v1) with reasons.
//! - [`locator`]: where a pod's container runs, for the kubelet API.

pub mod adopt;
pub mod controller;
pub mod events;
pub mod locator;
pub mod orphans;
pub mod reconcile;
pub mod status;
pub mod tracker;

pub use controller::{Context, Timing, run};
