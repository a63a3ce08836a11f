//! The virtual node: its Node object (labels, taint, capacity, addresses, kubelet endpoint,
//! conditions) and its heartbeat Lease in `kube-node-lease`, which the node lifecycle
//! controller watches.
//!
//! - [`object`]: the Node as the daemon declares it, pure.
//! - [`heartbeat`]: registration, the lease renewal loop, status updates, NotReady on stop.

pub mod heartbeat;
pub mod object;

pub use heartbeat::{NodeHandle, register};
pub use object::NodeSettings;
