//! End-to-end tests of the local control plane, all in one test binary so they share one
//! cluster (`Cluster::shared()`), each in its own namespace.

mod common;
mod csr;
mod kubectl;
mod kubelet_proxy;
mod rbac;
mod scheduling;
