//! What every reconcile pass shares: clients, the policy, where workloads run, the tracker,
//! timings. Built once by the daemon, handed to the controller in an `Arc`.

use std::sync::Arc;
use std::time::Duration;

use super::decide::DaemonSetPods;
use super::events::Events;
use super::tracker::{Pacing, Tracker};
use crate::active_policy::ActivePolicy;
use crate::metrics::Metrics;
use crate::translation::Placement;

/// Timings of the pod path (flags of `vk-stackpath run`).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Poll interval while a pod is changing.
    pub fast: Duration,
    /// Poll interval once a pod is settled (≤ 1 StackPath call per pod per this interval).
    pub settled: Duration,
    /// How long a workload without a pod is left alone before it is deleted.
    pub orphan_grace: Duration,
    /// How often workloads are listed to find orphans.
    pub sweep_interval: Duration,
    /// Longest poll interval of a running pod that runs to completion (a Job's): how late its
    /// end is noticed, and so how long StackPath may restart a container that should not be.
    pub completion: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            fast: Duration::from_secs(1),
            settled: Duration::from_secs(60),
            orphan_grace: Duration::from_secs(60),
            sweep_interval: Duration::from_secs(60),
            completion: Duration::from_secs(5),
        }
    }
}

impl Timing {
    pub fn pacing(&self) -> Pacing {
        Pacing {
            fast: self.fast,
            settled: self.settled,
        }
    }
}

/// Everything a reconcile pass needs; shared by all workers.
pub struct Context {
    pub kube: kube::Client,
    pub stackpath: stackpath_client::Client,
    pub policy: Arc<ActivePolicy>,
    pub placement: Placement,
    /// The node's InternalIP, reported as each pod's hostIP.
    pub host_ip: String,
    pub events: Events,
    pub tracker: Tracker,
    pub timing: Timing,
    pub metrics: Arc<Metrics>,
    pub daemonset_pods: DaemonSetPods,
}
