//! What the node declares so API servers use WebSocket toward it.
//!
//! Kubernetes 1.36 added `ExtendWebSocketsToKubelet` (beta, on by default): when the node
//! advertises it, the API server proxies exec/attach/port-forward WebSocket streams straight to
//! the kubelet instead of translating them to SPDY. Nodes advertise features in
//! `status.declaredFeatures` (KEP-5328 "Node Declared Features", alpha in 1.35, gate
//! `NodeDeclaredFeatures`). Older API servers drop the unknown field.

use serde_json::{Value, json};

/// The features this kubelet API implements.
pub const DECLARED_FEATURES: &[&str] = &["ExtendWebSocketsToKubelet"];

/// A merge patch for the Node's status (apply with `Api::<Node>::patch_status`) declaring
/// [`DECLARED_FEATURES`]. The daemon merges this into the status it writes.
pub fn declared_features_patch() -> Value {
    json!({"status": {"declaredFeatures": DECLARED_FEATURES}})
}
