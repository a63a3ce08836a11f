//! Two replicas with `--leader-elect`: one acts, the other stands by and takes over within
//! 15 s of the leader's death; pods keep converging and no workload is duplicated.

use std::time::{Duration, Instant};

use e2e::{Env, phase, pod_yaml};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

use crate::assert_no_forbidden;

async fn holder(env: &Env) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(env.admin.clone(), "vk-stackpath");
    leases
        .get_opt(&format!("vk-stackpath-{}", env.node))
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takes_over_within_15s() -> anyhow::Result<()> {
    let env = Env::start("leader").await?;
    let node = env.node.clone();
    let mut a = env
        .start_daemon_with(&node, |c| {
            c.args(["--leader-elect", "--leader-elect-identity", "replica-a"]);
        })
        .await?;
    assert_eq!(holder(&env).await.as_deref(), Some("replica-a"));
    // The standby starts while A leads; it must not act (its start returns once the node is
    // Ready, which A already made it).
    let b = env
        .start_daemon_with(&node, |c| {
            c.args(["--leader-elect", "--leader-elect-identity", "replica-b"]);
        })
        .await?;
    env.apply(&pod_yaml("before", &node, "nginx:1.27", ""))?;
    env.wait_pod("before", Duration::from_secs(60), |p| phase(p) == "Running")
        .await?;
    assert!(
        !b.log_text().contains("watching pods"),
        "the standby acted:\n{}",
        b.log_text()
    );

    a.kill();
    let killed = Instant::now();
    loop {
        if holder(&env).await.as_deref() == Some("replica-b") {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "no takeover within 15 s:\n{}",
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "standby took over {:.1?} after the leader died",
        killed.elapsed()
    );
    env.apply(&pod_yaml("after", &node, "nginx:1.27", ""))?;
    env.wait_pod("after", Duration::from_secs(60), |p| phase(p) == "Running")
        .await?;
    assert_eq!(env.workloads().await?.len(), 2, "one workload per pod");
    assert_no_forbidden(&a.log_text());
    assert_no_forbidden(&b.log_text());
    Ok(())
}
