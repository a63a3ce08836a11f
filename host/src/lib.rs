//! vk-stackpath: a Virtual Kubelet for StackPath Edge Compute.
//!
//! - [`policy`]: the WebAssembly policy engine (load, sandbox, validate).
//! - [`resolve`]: a pod's references (ConfigMaps, Secrets, fields, pull secrets).
//! - [`workload`]: the host-owned parts of a workload (identity, network, credentials).
//! - [`translation`]: pod → workload, the path shared by the daemon and the CLI.
//! - [`policy_diff`]: two policies compared pod by pod (`vk-stackpath policy diff`).
//! - [`provisioner`]: volumes for PersistentVolumeClaims (StatefulSets).
//! - [`manifest`]: reading pods and objects from YAML/JSON files.
//! - [`daemon`]: `vk-stackpath run`, joining [`node`], [`pods`], [`active_policy`],
//!   [`leader`], [`health`] and [`metrics`]; [`config`] reads the Go provider's settings.

pub mod active_policy;
pub mod config;
pub mod daemon;
pub mod health;
pub mod leader;
pub mod manifest;
pub mod materialize;
pub mod memory;
pub mod metrics;
pub mod node;
pub mod pods;
pub mod policy;
pub mod policy_diff;
pub mod provisioner;
pub mod resolve;
pub mod translation;
pub mod workload;

/// The daemon's version, reported as the node's kubelet version and in the user agent.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
