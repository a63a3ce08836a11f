//! StackPath misbehaving: 5xx, 429 bursts, latency, lost responses, failing instances. Every
//! pod still converges, with exactly one workload each.

use std::collections::BTreeSet;
use std::time::Duration;

use e2e::{Env, emulator_config, phase, pod_yaml};
use stackpath_emulator::Faults;

use crate::assert_no_forbidden;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_converge_through_errors_rate_limits_and_latency() -> anyhow::Result<()> {
    let env = Env::start("faults").await?;
    let daemon = env.start_daemon().await?;
    env.emulator.set_faults(Faults {
        error_rate: 0.2,
        drop_rate: 0.05,
        rate_limit_burst: 10,
        retry_after_seconds: 1,
        latency_ms: 50,
        ..Faults::default()
    });
    let names: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
    let manifest = names
        .iter()
        .map(|n| pod_yaml(n, &env.node, "nginx:1.27", ""))
        .collect::<Vec<_>>()
        .join("---\n");
    env.apply(&manifest)?;
    for n in &names {
        env.wait_pod(n, Duration::from_secs(120), |p| phase(p) == "Running")
            .await?;
    }
    env.emulator.set_faults(Faults::default());
    let w = env.workloads().await?;
    let slugs: BTreeSet<_> = w.iter().filter_map(|w| w.slug.clone()).collect();
    assert_eq!(w.len(), names.len(), "one workload per pod: {slugs:?}");
    assert_eq!(slugs.len(), names.len());
    assert_no_forbidden(&daemon.log_text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_instances_fail_the_pod() -> anyhow::Result<()> {
    let env = Env::start_with("instfail", emulator_config()).await?;
    let daemon = env.start_daemon().await?;
    env.emulator.set_faults(Faults {
        fail_new_instances: true,
        ..Faults::default()
    });
    env.apply(&pod_yaml(
        "doomed",
        &env.node,
        "nginx:1.27",
        "  restartPolicy: Never\n",
    ))?;
    let pod = env
        .wait_pod("doomed", Duration::from_secs(60), |p| phase(p) == "Failed")
        .await?;
    let cs = &pod.status.unwrap().container_statuses.unwrap()[0];
    assert!(
        cs.state.as_ref().unwrap().terminated.is_some(),
        "a failed instance's container is terminated: {cs:?}"
    );
    assert_no_forbidden(&daemon.log_text());
    Ok(())
}
