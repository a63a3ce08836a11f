//! A pod's life on the virtual node: created, running, updated, deleted; rejected; its
//! workload deleted behind the daemon's back; scheduled by the real scheduler.

use std::time::Duration;

use e2e::{Env, is_ready, phase, pod_yaml};

use crate::assert_no_forbidden;

const T: Duration = Duration::from_secs(60);

/// An example pod from `examples/pods`, bound to `node`.
fn example(file: &str, node: &str) -> String {
    let path = format!("{}/../../examples/pods/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("example pod");
    text.replacen("\nspec:\n", &format!("\nspec:\n  nodeName: {node}\n"), 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_pod_runs_then_deletion_removes_its_workload() -> anyhow::Result<()> {
    let env = Env::start("web").await?;
    let _logs = env.cluster.dump_logs_on_panic();
    let daemon = env.start_daemon().await?;
    env.apply(&example("web.yaml", &env.node))?;
    let pod = env
        .wait_pod("web", T, |p| phase(p) == "Running" && is_ready(p))
        .await?;
    let status = pod.status.unwrap();
    assert!(status.pod_ip.is_some(), "no pod IP: {status:?}");
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    let cs = &status.container_statuses.unwrap()[0];
    assert!(cs.ready && cs.state.as_ref().unwrap().running.is_some());

    let workloads = env.workloads().await?;
    assert_eq!(workloads.len(), 1, "{workloads:?}");
    let labels = &workloads[0].metadata.as_ref().unwrap().labels;
    assert_eq!(labels["vk-pod-name"], "web");
    assert_eq!(labels["vk-pod-namespace"], env.ns);
    assert_eq!(
        workloads[0].slug.as_deref(),
        Some(format!("{}-web", env.ns).as_str())
    );

    let events = env.events("web").await?;
    assert!(
        events.iter().any(|e| e.starts_with("WorkloadCreated:")),
        "{events:?}"
    );
    // `kubectl get pods -o wide` shows the node and the IP.
    let wide = String::from_utf8(env.kubectl(&["get", "pod", "web", "-o", "wide"]).stdout)?;
    assert!(
        wide.contains(&env.node) && wide.contains("Running"),
        "{wide}"
    );

    let out = env.kubectl(&["delete", "pod", "web", "--wait=false"]);
    assert!(out.status.success());
    env.wait_gone("web", T).await?;
    assert!(env.workloads().await?.is_empty(), "workload left behind");
    assert_no_forbidden(&daemon.log_text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_pod_fails_with_provider_failed_and_an_event() -> anyhow::Result<()> {
    let env = Env::start("rejected").await?;
    let daemon = env.start_daemon().await?;
    env.apply(&example("rejected.yaml", &env.node))?;
    let pod = env
        .wait_pod("rejected", T, |p| phase(p) == "Failed")
        .await?;
    let status = pod.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("ProviderFailed"));
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains("spec.containers[0]") && message.contains("livenessProbe"),
        "the message should name the fields: {message}"
    );
    let events = env.events("rejected").await?;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("ProviderFailed:") && e.contains("livenessProbe")),
        "{events:?}"
    );
    assert!(env.workloads().await?.is_empty());
    // A failed pod is still deleted cleanly.
    assert!(
        env.kubectl(&["delete", "pod", "rejected", "--wait=false"])
            .status
            .success()
    );
    env.wait_gone("rejected", T).await?;
    assert_no_forbidden(&daemon.log_text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_env_and_pull_secret_reach_the_workload_but_not_the_logs() -> anyhow::Result<()> {
    let env = Env::start("secret").await?;
    let daemon = env.start_daemon().await?;
    let objects = std::fs::read_to_string(format!(
        "{}/../../examples/pods/secret-env.objects.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))?;
    env.apply(&objects)?;
    env.apply(&example("secret-env.yaml", &env.node))?;
    env.wait_pod("private-app", T, |p| phase(p) == "Running")
        .await?;
    let w = env.workloads().await?;
    assert_eq!(w.len(), 1);
    let spec = w[0].spec.as_ref().unwrap();
    let app = &spec.containers["app"];
    assert!(
        app.env
            .get("API_TOKEN")
            .is_some_and(|e| e.secret_value.is_some() || e.value.is_none()),
        "API_TOKEN must be a secretValue: {:?}",
        app.env
    );
    assert!(
        !spec.image_pull_credentials.is_empty(),
        "no pull credentials"
    );
    let log = daemon.log_text();
    for secret in ["example-token-not-real", "example-password"] {
        assert!(!log.contains(secret), "secret `{secret}` in the daemon log");
    }
    for e in env.events("private-app").await? {
        assert!(
            !e.contains("example-token-not-real"),
            "secret in an event: {e}"
        );
    }
    assert_no_forbidden(&log);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_change_updates_the_workload() -> anyhow::Result<()> {
    let env = Env::start("update").await?;
    let daemon = env.start_daemon().await?;
    env.apply(&pod_yaml(
        "app",
        &env.node,
        "nginx:1.26",
        "      command: [nginx]\n",
    ))?;
    env.wait_pod("app", T, |p| phase(p) == "Running").await?;
    let out = env.kubectl(&["set", "image", "pod/app", "app=nginx:1.27"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = std::time::Instant::now() + T;
    loop {
        let w = env.workloads().await?;
        let image = w[0].spec.as_ref().unwrap().containers["app"].image.clone();
        if image.as_deref() == Some("nginx:1.27") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "workload image still {image:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        env.workloads().await?.len(),
        1,
        "an update must not add a workload"
    );
    let events = env.events("app").await?;
    assert!(
        events.iter().any(|e| e.starts_with("WorkloadUpdated:")),
        "{events:?}"
    );
    assert_no_forbidden(&daemon.log_text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_deleted_behind_our_back_fails_the_pod() -> anyhow::Result<()> {
    let env = Env::start("vanish").await?;
    // Poll settled pods often, so the test does not wait a minute.
    let daemon = env
        .start_daemon_with(&env.node.clone(), |c| {
            c.args(["--status-settled-interval", "2s"]);
        })
        .await?;
    env.apply(&pod_yaml("app", &env.node, "nginx:1.27", ""))?;
    env.wait_pod("app", T, |p| phase(p) == "Running").await?;
    let w = env.workloads().await?;
    env.stackpath()
        .delete_workload(w[0].id.as_deref().unwrap())
        .await?;
    let pod = env.wait_pod("app", T, |p| phase(p) == "Failed").await?;
    let status = pod.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("WorkloadDeleted"));
    assert!(
        status
            .message
            .unwrap_or_default()
            .contains("deleted outside Kubernetes")
    );
    // The daemon does not quietly recreate it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(env.workloads().await?.is_empty());
    assert_no_forbidden(&daemon.log_text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_places_tolerating_pods_on_the_virtual_node() -> anyhow::Result<()> {
    let env = Env::start("sched").await?;
    let daemon = env.start_daemon().await?;
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: scheduled
spec:
  nodeSelector:
    kubernetes.io/hostname: {node}
  tolerations:
    - key: virtual-kubelet.io/provider
      operator: Exists
  containers:
    - name: app
      image: nginx:1.27
"#,
        node = env.node
    );
    env.apply(&manifest)?;
    let pod = env
        .wait_pod("scheduled", T, |p| phase(p) == "Running")
        .await?;
    assert_eq!(
        pod.spec.unwrap().node_name.as_deref(),
        Some(env.node.as_str())
    );
    assert_no_forbidden(&daemon.log_text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_exec_reach_the_workload_through_the_daemon() -> anyhow::Result<()> {
    let env = Env::start_with(
        "streams",
        stackpath_emulator::EmulatorConfig {
            run_containers: true,
            ..e2e::emulator_config()
        },
    )
    .await?;
    let daemon = env.start_daemon().await?;
    env.apply(&pod_yaml(
        "talker",
        &env.node,
        "busybox:1.36",
        "      command: [sh, -c, 'echo hello from the edge; sleep 3600']\n",
    ))?;
    env.wait_pod("talker", T, |p| phase(p) == "Running").await?;
    // The kubelet API serves once its CSR is approved; retry briefly.
    let deadline = std::time::Instant::now() + T;
    let logs = loop {
        let out = env.kubectl(&["logs", "talker"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && text.contains("hello from the edge") {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "kubectl logs: {}{}\n{}",
            text,
            String::from_utf8_lossy(&out.stderr),
            env.daemon_log_tail(40)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(logs.contains("hello from the edge"));
    let out = env.kubectl(&[
        "exec",
        "talker",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err"));
    let out = env.kubectl(&["exec", "talker", "-c", "nope", "--", "true"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nope"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_forbidden(&daemon.log_text());
    Ok(())
}

/// Once a pod is Running and ready its polling backs off to the settled interval (one
/// StackPath call per interval) and its status is not written again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settled_pod_is_polled_slowly_and_its_status_left_alone() -> anyhow::Result<()> {
    const INSTANCES: &str = "GET /workload/v1/stacks/{stack_id}/workloads/{workload_id}/instances";
    let env = Env::start("settled").await?;
    let _logs = env.cluster.dump_logs_on_panic();
    let daemon = env
        .start_daemon_with(&env.node.clone(), |c| {
            c.args(["--status-settled-interval", "4s"]);
        })
        .await?;
    env.apply(&pod_yaml("calm", &env.node, "nginx:1.27", ""))?;
    env.wait_pod("calm", T, |p| phase(p) == "Running" && is_ready(p))
        .await?;
    // 1 + 2 + 4 s of backing off, then count over three settled intervals.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let polls = || {
        env.emulator.stats()["routes"][INSTANCES]
            .as_u64()
            .unwrap_or(0)
    };
    let version = |p: &k8s_openapi::api::core::v1::Pod| p.metadata.resource_version.clone();
    let before = version(&env.pods().get("calm").await?);
    let polls_before = polls();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let n = polls() - polls_before;
    assert!(
        (2..=4).contains(&n),
        "{n} instance polls in 12 s with a 4 s settled interval"
    );
    assert_eq!(
        version(&env.pods().get("calm").await?),
        before,
        "the settled pod was written to"
    );
    assert_no_forbidden(&daemon.log_text());
    Ok(())
}
