//! Restart safety: adoption of existing workloads (the Go provider's labels), SIGKILL in the
//! middle of creations, orphans of pods deleted while the daemon was down.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use e2e::{CITY, Env, phase, pod_yaml};
use stackpath_client::model::{
    ContainerSpec, DeploymentSpec, MatchExpression, Metadata, ResourceRequirements, Target,
    TargetSpec, Workload, WorkloadSpec,
};

use crate::assert_no_forbidden;

const T: Duration = Duration::from_secs(90);

/// A workload as the Go provider created it for `ns/pod` on `node` (city DFW).
fn go_provider_workload(ns: &str, pod: &str, node: &str) -> Workload {
    go_provider_workload_in(ns, pod, node, CITY)
}

/// A workload as the Go provider of `city` created it for `ns/pod` on `node`.
pub(crate) fn go_provider_workload_in(ns: &str, pod: &str, node: &str, city: &str) -> Workload {
    let slug = format!("{ns}-{pod}");
    Workload {
        name: Some(slug.clone()),
        slug: Some(slug),
        metadata: Some(Metadata {
            labels: BTreeMap::from([
                ("vk-pod-name".into(), pod.into()),
                ("vk-pod-namespace".into(), ns.into()),
                ("vk-node-name".into(), node.into()),
            ]),
            ..Metadata::default()
        }),
        spec: Some(WorkloadSpec {
            containers: BTreeMap::from([(
                "app".to_string(),
                ContainerSpec {
                    image: Some("nginx:1.27".into()),
                    resources: Some(ResourceRequirements {
                        requests: BTreeMap::from([
                            ("cpu".to_string(), "1".to_string()),
                            ("memory".to_string(), "2Gi".to_string()),
                        ]),
                        ..ResourceRequirements::default()
                    }),
                    ..ContainerSpec::default()
                },
            )]),
            ..WorkloadSpec::default()
        }),
        targets: BTreeMap::from([(
            "city-code".to_string(),
            Target {
                spec: Some(TargetSpec {
                    deployment_scope: Some("cityCode".into()),
                    deployments: Some(DeploymentSpec {
                        min_replicas: Some(1),
                        max_replicas: Some(1),
                        selectors: vec![MatchExpression {
                            key: Some("cityCode".into()),
                            operator: Some("in".into()),
                            values: vec![city.into()],
                        }],
                        ..DeploymentSpec::default()
                    }),
                }),
            },
        )]),
        ..Workload::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_go_provider_workloads_without_duplicates() -> anyhow::Result<()> {
    let env = Env::start("adopt").await?;
    // The node exists (as under the Go provider); a pod bound to a missing node would be
    // garbage-collected by the control plane.
    env.start_daemon().await?.kill();
    let existing = env
        .stackpath()
        .create_workload(&go_provider_workload(&env.ns, "legacy", &env.node))
        .await?;
    // The pod was bound while the old provider ran it.
    env.apply(&pod_yaml("legacy", &env.node, "nginx:1.27", ""))?;
    let daemon = env.start_daemon().await?;
    env.wait_pod("legacy", T, |p| phase(p) == "Running").await?;
    let w = env.workloads().await?;
    assert_eq!(
        w.len(),
        1,
        "adoption must not create a second workload: {w:?}"
    );
    assert_eq!(w[0].id, existing.id);
    let events = env.events("legacy").await?;
    assert!(
        !events.iter().any(|e| e.starts_with("WorkloadCreated:")),
        "{events:?}"
    );
    assert_no_forbidden(&daemon.log_text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_creation_leaves_no_duplicates_and_no_orphans() -> anyhow::Result<()> {
    let env = Env::start("sigkill").await?;
    let mut daemon = env.start_daemon().await?;
    let names: Vec<String> = (0..12).map(|i| format!("p{i}")).collect();
    let manifest: String = names
        .iter()
        .map(|n| pod_yaml(n, &env.node, "nginx:1.27", ""))
        .collect::<Vec<_>>()
        .join("---\n");
    env.apply(&manifest)?;
    // Let some creations start, then kill without any shutdown work.
    tokio::time::sleep(Duration::from_millis(400)).await;
    daemon.kill();
    let first_log = daemon.log_text();

    // While the daemon is down, one pod is force-deleted: its workload (if any) is an orphan.
    let out = env.kubectl(&["delete", "pod", "p0", "--grace-period=0", "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let daemon = env.start_daemon().await?;
    for n in &names[1..] {
        env.wait_pod(n, T, |p| phase(p) == "Running").await?;
    }
    // The orphan grace is 5 s in tests; the sweep runs as often.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let w = env.workloads().await?;
        let slugs: BTreeSet<String> = w.iter().filter_map(|w| w.slug.clone()).collect();
        assert_eq!(slugs.len(), w.len(), "duplicate workloads: {w:?}");
        let want: BTreeSet<String> = names[1..]
            .iter()
            .map(|n| format!("{}-{n}", env.ns))
            .collect();
        if slugs == want {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "workloads {slugs:?}, want exactly {want:?}; daemon log:\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_no_forbidden(&first_log);
    assert_no_forbidden(&daemon.log_text());
    Ok(())
}
