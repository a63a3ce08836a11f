//! End-to-end tests of `vk-stackpath run` against the real control plane and the emulator.
//! One test binary, so that all tests share one control plane.

mod config;
mod deploy_contract;
mod faults;
mod fixtures;
mod leader;
mod lifecycle;
mod multi_city;
mod node_lease;
mod outage;
mod policy_diff;
mod restart;
mod zoo;

/// Every test ends with this: nothing the daemon needed was refused by its RBAC.
pub fn assert_no_forbidden(log: &str) {
    let forbidden: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("403") && l.to_lowercase().contains("forbidden"))
        .collect();
    assert!(
        forbidden.is_empty(),
        "the daemon was refused by RBAC:\n{}",
        forbidden.join("\n")
    );
}
