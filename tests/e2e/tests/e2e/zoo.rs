//! Pods as people write them, through the real controllers and the real scheduler: a
//! Deployment with its config file from a ConfigMap and env from a ConfigMap and a Secret, a
//! Service, a Job, a CronJob, a DaemonSet that tolerates everything, a pod reading its own IP
//! from the downward API, a pod with a native sidecar, a StatefulSet whose volumeClaimTemplates
//! claim is provisioned by the daemon (deploy/'s `stackpath-edge` StorageClass). The emulator
//! runs the containers as local processes; each ends as its user expects and nothing is left at
//! StackPath (or in PersistentVolumes) afterwards.

use std::time::{Duration, Instant};

use e2e::{Env, phase};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;

use crate::assert_no_forbidden;

const T: Duration = Duration::from_secs(90);

/// Pod template lines that put a pod on this test's virtual node.
fn placement(node: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    format!(
        "{pad}nodeSelector:\n{pad}  kubernetes.io/hostname: {node}\n{pad}tolerations:\n{pad}  - key: virtual-kubelet.io/provider\n{pad}    operator: Exists\n"
    )
}

async fn pods_labelled(env: &Env, selector: &str) -> anyhow::Result<Vec<Pod>> {
    Ok(env
        .pods()
        .list(&ListParams::default().labels(selector))
        .await?
        .items)
}

/// Waits until a pod with `selector` passes `check`; returns its name.
async fn wait_labelled(
    env: &Env,
    selector: &str,
    timeout: Duration,
    check: impl Fn(&Pod) -> bool,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let pods = pods_labelled(env, selector).await?;
        if let Some(p) = pods.iter().find(|p| check(p)) {
            return Ok(p.metadata.name.clone().unwrap_or_default());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no pod {selector} reached the expected state in {timeout:?}: {}\n{}",
            serde_json::to_string_pretty(&pods.iter().map(|p| &p.status).collect::<Vec<_>>())?,
            env.daemon_log_tail(60)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `kubectl logs <args>` until its output contains every one of `want`.
async fn logs_contain(env: &Env, args: &[&str], want: &[&str]) -> anyhow::Result<String> {
    let deadline = Instant::now() + T;
    loop {
        let mut all = vec!["logs"];
        all.extend_from_slice(args);
        let out = env.kubectl(&all);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if want.iter().all(|w| text.contains(w)) {
            return Ok(text);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "kubectl logs {args:?}: wanted {want:?}, got {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workload_zoo_runs_as_its_users_expect() -> anyhow::Result<()> {
    let env = Env::start_with(
        "zoo",
        stackpath_emulator::EmulatorConfig {
            run_containers: true,
            ..e2e::emulator_config()
        },
    )
    .await?;
    let daemon = env.start_daemon().await?;
    let node = env.node.clone();
    let at = |indent| placement(&node, indent);
    env.apply(&format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: web-conf
data:
  index.html: hello from the zoo
  MODE: edge
---
apiVersion: v1
kind: Secret
metadata:
  name: web-secret
stringData:
  TOKEN: zoo-token
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
{web_at}      containers:
        - name: app
          image: nginx:1.27
          command: [sh, -c, 'cat /usr/share/nginx/html/index.html; echo; echo mode=$MODE token=$TOKEN; sleep 3600']
          envFrom:
            - configMapRef: {{name: web-conf}}
            - secretRef: {{name: web-secret}}
          volumeMounts:
            - name: html
              mountPath: /usr/share/nginx/html
      volumes:
        - name: html
          configMap:
            name: web-conf
            items:
              - key: index.html
                path: index.html
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
  ports:
    - port: 80
---
apiVersion: batch/v1
kind: Job
metadata:
  name: once
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
{job_at}      containers:
        - name: job
          image: busybox:1.36
          command: [sh, -c, 'echo job ran']
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      backoffLimit: 0
      template:
        spec:
          restartPolicy: OnFailure
{cron_at}          containers:
            - name: tick
              image: busybox:1.36
              command: [sh, -c, 'echo tick']
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {{app: agent}}
  template:
    metadata:
      labels: {{app: agent}}
    spec:
      nodeSelector:
        kubernetes.io/hostname: {node}
      tolerations:
        - operator: Exists
      containers:
        - name: agent
          image: fluent/fluent-bit:3.0
---
apiVersion: v1
kind: Pod
metadata:
  name: whoami
spec:
{pod_at}  containers:
    - name: app
      image: busybox:1.36
      command: [sh, -c, 'echo ip=$MY_IP; sleep 3600']
      env:
        - name: MY_IP
          valueFrom:
            fieldRef: {{fieldPath: status.podIP}}
---
apiVersion: v1
kind: Pod
metadata:
  name: sidecar
spec:
{pod_at}  initContainers:
    - name: proxy
      image: envoyproxy/envoy:v1.31
      restartPolicy: Always
      command: [sh, -c, 'echo sidecar up; sleep 3600']
  containers:
    - name: app
      image: busybox:1.36
      command: [sh, -c, 'echo app up; sleep 3600']
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  replicas: 1
  selector:
    matchLabels: {{app: db}}
  template:
    metadata:
      labels: {{app: db}}
    spec:
{sts_at}      containers:
        - name: db
          image: busybox:1.36
          command: [sh, -c, 'echo stored > /var/lib/db/marker && echo data=$(cat /var/lib/db/marker); sleep 3600']
          volumeMounts:
            - name: data
              mountPath: /var/lib/db
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: [ReadWriteOnce]
        storageClassName: stackpath-edge
        resources:
          requests:
            storage: 1500Mi
"#,
        web_at = at(6),
        job_at = at(6),
        cron_at = at(10),
        pod_at = at(2),
        sts_at = at(6),
    ))?;

    // Deployment: Running, its config file and env in place (Secret value included: it is the
    // app's own output), and a Service selecting it.
    let web = wait_labelled(&env, "app=web", T, |p| phase(p) == "Running").await?;
    logs_contain(
        &env,
        &[&web],
        &["hello from the zoo", "mode=edge token=zoo-token"],
    )
    .await?;
    let pod_ip = env
        .pods()
        .get(&web)
        .await?
        .status
        .and_then(|s| s.pod_ip)
        .unwrap_or_default();
    assert!(!pod_ip.is_empty(), "the web pod has an IP");
    // Ready, so the Service's endpoints list it (the EndpointSlice controller's view).
    let deadline = Instant::now() + T;
    loop {
        let out = env.kubectl(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={.items[*].endpoints[*].addresses[*]}",
        ]);
        let ips = String::from_utf8_lossy(&out.stdout).into_owned();
        if ips.split_whitespace().any(|ip| ip == pod_ip) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "Service web does not list {pod_ip}: {ips}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Job: completes; the controller sees it.
    let out = env.kubectl(&[
        "wait",
        "--for=condition=complete",
        "job/once",
        "--timeout=90s",
    ]);
    assert!(
        out.status.success(),
        "job/once did not complete: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        env.daemon_log_tail(60)
    );
    let job_pod = wait_labelled(&env, "job-name=once", T, |p| phase(p) == "Succeeded").await?;
    let st = env.pods().get(&job_pod).await?.status.unwrap_or_default();
    let term = st.container_statuses.unwrap_or_default()[0]
        .state
        .clone()
        .and_then(|s| s.terminated)
        .expect("terminated state");
    assert_eq!(term.exit_code, 0);
    assert_eq!(term.reason.as_deref(), Some("Completed"));
    // Its workload is gone (nothing bills), yet its logs answer as on a kubelet: kept by the
    // daemon, read before the workload was deleted.
    logs_contain(&env, &["job/once"], &["job ran"]).await?;
    logs_contain(
        &env,
        &["job/once", "--tail=1", "--timestamps"],
        &["Z job ran"],
    )
    .await?;

    // Downward API: the pod's own IP, from StackPath's instance.
    let whoami = env.wait_pod("whoami", T, |p| phase(p) == "Running").await?;
    let ip = whoami.status.and_then(|s| s.pod_ip).unwrap_or_default();
    logs_contain(&env, &["whoami"], &[&format!("ip={ip}")]).await?;

    // Native sidecar: runs beside the app for the pod's life.
    env.wait_pod("sidecar", T, |p| phase(p) == "Running")
        .await?;
    logs_contain(&env, &["sidecar", "-c", "proxy"], &["sidecar up"]).await?;
    logs_contain(&env, &["sidecar", "-c", "app"], &["app up"]).await?;

    // StatefulSet: its claim is provisioned by this node (a 2Gi StackPath volume: 1500Mi
    // rounded up), bound, and mounted in the workload; the app writes and reads it.
    env.wait_pod("db-0", T, |p| phase(p) == "Running").await?;
    logs_contain(&env, &["db-0"], &["data=stored"]).await?;
    let out = env.kubectl(&[
        "get",
        "pvc",
        "data-db-0",
        "-o",
        "jsonpath={.status.phase} {.spec.volumeName}",
    ]);
    let pvc = String::from_utf8_lossy(&out.stdout).into_owned();
    let (pvc_phase, pv_name) = pvc.split_once(' ').unwrap_or_default();
    assert_eq!(pvc_phase, "Bound", "{pvc}");
    let out = env.kubectl(&[
        "get",
        "pv",
        pv_name,
        "-o",
        "jsonpath={.spec.csi.driver} {.spec.capacity.storage} {.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("virtual-kubelet.storage.compute.edgeengine.io 2Gi {node}"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = env
        .workloads()
        .await?
        .into_iter()
        .find(|w| w.slug.as_deref().is_some_and(|s| s.ends_with("db-0")))
        .expect("a workload for db-0");
    let spec = serde_json::to_value(&db.spec)?;
    let claims = &spec["volumeClaimTemplates"];
    assert!(
        claims.as_array().is_some_and(|c| {
            c.iter().any(|c| {
                c["slug"] == "data" && c["spec"]["resources"]["requests"]["storage"] == "2Gi"
            })
        }),
        "{claims}"
    );
    let events = env.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=data-db-0",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(
        String::from_utf8_lossy(&events.stdout).contains("ProvisioningSucceeded"),
        "{}",
        String::from_utf8_lossy(&events.stdout)
    );

    // DaemonSet: skipped, stable, saying why and which flag changes it; no churn.
    let agent = wait_labelled(&env, "app=agent", T, |p| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.reason.as_deref() == Some("DaemonSetPodSkipped"))
            })
    })
    .await?;
    let events = env.events(&agent).await?;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("DaemonSetPodSkipped") && e.contains("--daemonset-pods=run")),
        "{events:?}"
    );

    // CronJob: its first run (within a minute of the schedule) completes.
    let tick = wait_labelled(
        &env,
        "batch.kubernetes.io/job-name",
        Duration::from_secs(150),
        |p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("batch.kubernetes.io/job-name"))
                .is_some_and(|j| j.starts_with("tick-"))
                && phase(p) == "Succeeded"
        },
    )
    .await?;
    assert!(tick.starts_with("tick-"), "{tick}");
    let agents = pods_labelled(&env, "app=agent").await?;
    assert_eq!(agents.len(), 1, "the DaemonSet pod is not recreated");
    assert_eq!(agents[0].metadata.name.as_deref(), Some(agent.as_str()));
    assert_eq!(phase(&agents[0]), "Pending");

    // Completed pods have no workload left; running ones do, and none for the DaemonSet.
    let live = env.live_workload_slugs().await?;
    assert!(
        !live
            .iter()
            .any(|s| s.contains("once") || s.contains("tick")),
        "{live:?}"
    );
    assert!(!live.iter().any(|s| s.contains("agent")), "{live:?}");
    assert_eq!(live.len(), 4, "web, whoami, sidecar and db-0: {live:?}");

    // Deleting everything leaves nothing at StackPath.
    let out = env.kubectl(&[
        "delete",
        "deployment/web",
        "job/once",
        "cronjob/tick",
        "daemonset/agent",
        "pod/whoami",
        "pod/sidecar",
        "statefulset/db",
        "--wait=true",
        "--timeout=90s",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The StatefulSet's claim is kept until deleted, as Kubernetes does; then its volume goes.
    let out = env.kubectl(&["delete", "pvc", "data-db-0", "--wait=true", "--timeout=60s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + T;
    loop {
        let out = env.kubectl(&["get", "pv", pv_name, "--ignore-not-found", "-o", "name"]);
        if out.status.success() && out.stdout.is_empty() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "volume {pv_name} was not deleted after its claim: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let deadline = Instant::now() + T;
    loop {
        let left = env.workloads().await?;
        if left.is_empty() && pods_labelled(&env, "app=web").await?.is_empty() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "left at StackPath: {:?}",
            left.iter().map(|w| &w.slug).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_no_forbidden(&daemon.log_text());
    Ok(())
}
