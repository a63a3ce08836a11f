//! A hook through which the daemon counts API calls (for its metrics endpoint) without this
//! crate depending on a metrics library.

use std::time::Duration;

/// Told about every HTTP attempt the client makes, retries included.
pub trait CallObserver: Send + Sync + 'static {
    /// `route` is the spec's route template (e.g.
    /// `/workload/v1/stacks/{stack_id}/workloads/{workload_id}`); `status` is `None` when no
    /// response arrived (connection failure, timeout); `elapsed` runs until the response
    /// headers for streams, until the whole body otherwise.
    fn observe(&self, route: &'static str, method: &str, status: Option<u16>, elapsed: Duration);
}
