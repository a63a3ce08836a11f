//! Through the REAL kube-apiserver with real kubectl: the apiserver dials this kubelet API
//! (verifying its CSR-issued serving certificate, presenting its kubelet client certificate),
//! the kubelet API authorizes it by SubjectAccessReview and bridges to the emulator.
//! `VK_K8S_VERSION=1.37` runs it on the 1.37 control plane.

mod common;

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use local_cluster::Cluster;
use serde_json::json;
use vk_kubelet::{
    AuthMode, CsrBootstrap, HostKeyPolicy, KubeletConfig, KubeletServer, Limits, TlsSource,
};

fn kubectl_bin(minor: &str) -> std::path::PathBuf {
    let k = std::fs::canonicalize(which("kubectl")).expect("kubectl on PATH");
    let p = k.parent().unwrap().join(format!("kubectl.{minor}"));
    assert!(p.is_file(), "{} missing", p.display());
    p
}

fn which(name: &str) -> std::path::PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not on PATH"))
}

fn kubectl(cluster: &Cluster, minor: &str, args: &[&str]) -> Output {
    Command::new(kubectl_bin(minor))
        .arg("--kubeconfig")
        .arg(cluster.admin_kubeconfig())
        .args(args)
        .output()
        .expect("running kubectl")
}

async fn kubectl_async(
    cluster: &'static Cluster,
    minor: &'static str,
    args: Vec<String>,
) -> Output {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        kubectl(cluster, minor, &a)
    })
    .await
    .unwrap()
}

fn s(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Approves every kubelet-serving CSR for `node` as an admin would.
fn approve_csrs(admin: kube::Client, node: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<CertificateSigningRequest> = Api::all(admin);
        loop {
            if let Ok(list) = api.list(&Default::default()).await {
                for c in list {
                    let name = c.metadata.name.clone().unwrap_or_default();
                    let approved = c
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|v| !v.is_empty());
                    if !approved && name.starts_with(&format!("csr-{node}-")) {
                        let patch = json!({"status": {"conditions": [{"type": "Approved", "status": "True",
                            "reason": "TestApproval", "message": "approved by the vk-kubelet test"}]}});
                        let _ = api
                            .patch_approval(&name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

async fn register_node(admin: kube::Client, name: &str, port: u16) {
    let nodes: Api<Node> = Api::all(admin);
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"type": "virtual-kubelet"}},
        "spec": {"taints": [{"key": "virtual-kubelet.io/provider", "value": "stackpath", "effect": "NoSchedule"}]},
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut status = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "test",
                        "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"},
        "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"},
    }});
    // What the daemon will merge into its status: the WebSocket declaration for 1.36+.
    status["status"]["declaredFeatures"] =
        vk_kubelet::declared_features_patch()["status"]["declaredFeatures"].clone();
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

async fn create_pod(admin: kube::Client, ns: &str, name: &str, node: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(admin, ns);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [{"name": "app", "image": "busybox"}],
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}]
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    // What the daemon's status loop would write (kubectl port-forward wants Running).
    let status = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "app", "image": "busybox", "imageID": "", "ready": true, "restartCount": 0,
                               "started": true, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_through_the_real_apiserver() {
    init_tracing();
    let cluster: &'static Cluster = tokio::task::spawn_blocking(Cluster::shared).await.unwrap();
    let _dump = cluster.dump_logs_on_panic();
    let admin = cluster.admin_client().await.unwrap();
    let ns = cluster.new_namespace().await.unwrap();
    let node = format!("vk-kl-{}", std::process::id());

    let emu = emulator(Duration::from_secs(2)).await;
    let sp = stackpath(&emu);
    let loc = workload(
        &sp,
        &format!("e{}", std::process::id()),
        "i=0; while [ $i -lt 40 ]; do echo line $i; i=$((i+1)); sleep 0.1; done; sleep 3600",
    )
    .await;
    let locator = Arc::new(TestLocator::default());
    locator.add(&ns, "web", &["app"], &["init"], loc);

    // The serving certificate through the CSR flow, approved by the "admin" (this test).
    let approver = approve_csrs(admin.clone(), node.clone());
    let cfg = KubeletConfig {
        listen: loopback(),
        node_name: node.clone(),
        tls: TlsSource::Bootstrap(CsrBootstrap {
            ips: vec!["127.0.0.1".parse().unwrap()],
            dns_names: vec![node.clone()],
            approval_timeout: Duration::from_secs(60),
            ..Default::default()
        }),
        client_ca_file: cluster.kubelet_client_ca_crt(),
        auth: AuthMode::Enabled,
        console: console(
            &emu,
            HostKeyPolicy::Pinned(vec![emu.ssh_host_key_openssh.clone().unwrap()]),
        ),
        limits: Limits::default(),
    };
    let daemon = cluster.daemon_client().await.unwrap();
    let server = KubeletServer::bind(cfg, locator.clone(), sp, daemon.clone())
        .await
        .expect("bootstrapped and bound");
    let port = server.local_addr().port();
    let store = server.cert_store();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));
    register_node(admin.clone(), &node, port).await;
    let pod = create_pod(admin.clone(), &ns, "web", &node).await;
    locator.pods.lock().unwrap().push(pod);
    tokio::time::sleep(Duration::from_millis(800)).await;

    // kubectl logs, with options.
    let o = kubectl_async(
        cluster,
        "1.33",
        vec![
            "-n".into(),
            ns.clone(),
            "logs".into(),
            "web".into(),
            "-c".into(),
            "app".into(),
        ],
    )
    .await;
    let (out, err) = s(&o);
    assert!(o.status.success(), "kubectl logs: {err}");
    assert!(out.starts_with("line 0\nline 1\n"), "{out}");
    let o = kubectl_async(
        cluster,
        "1.33",
        vec![
            "-n".into(),
            ns.clone(),
            "logs".into(),
            "web".into(),
            "-c".into(),
            "app".into(),
            "--tail=2".into(),
            "--timestamps".into(),
        ],
    )
    .await;
    let (out, _) = s(&o);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.lines()
            .all(|l| chrono::DateTime::parse_from_rfc3339(l.split(' ').next().unwrap()).is_ok()),
        "{out}"
    );
    let o = kubectl_async(
        cluster,
        "1.33",
        vec![
            "-n".into(),
            ns.clone(),
            "logs".into(),
            "web".into(),
            "-c".into(),
            "app".into(),
            "--limit-bytes=8".into(),
            "--since=1h".into(),
        ],
    )
    .await;
    assert_eq!(s(&o).0, "line 0\nl");

    // logs -f across StackPath's 2 s cuts, with a certificate rotation in the middle.
    let mut follow = tokio::process::Command::new(kubectl_bin("1.33"))
        .arg("--kubeconfig")
        .arg(cluster.admin_kubeconfig())
        .args(["-n", &ns, "logs", "-f", "web", "-c", "app"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = follow.stdout.take().unwrap();
    let old_leaf = store.leaf();
    let rotated = vk_kubelet::bootstrap::request_certificate(
        &daemon,
        &node,
        &CsrBootstrap {
            ips: vec!["127.0.0.1".parse().unwrap()],
            approval_timeout: Duration::from_secs(60),
            ..Default::default()
        },
    )
    .await
    .expect("second certificate");
    store.swap(rotated);
    assert_ne!(store.leaf(), old_leaf, "certificate rotated");
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    use tokio::io::AsyncReadExt;
    while !String::from_utf8_lossy(&got).contains("line 39\n") {
        let mut b = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, stdout.read(&mut b))
            .await
            .expect("logs -f keeps delivering")
            .unwrap();
        assert!(
            n > 0,
            "logs -f ended early: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&b[..n]);
    }
    let want: String = (0..40).map(|i| format!("line {i}\n")).collect();
    assert_eq!(
        String::from_utf8_lossy(&got),
        want,
        "no gaps or repeats across cuts and the rotation"
    );
    // Still open after StackPath's cuts (it ends only when the client stops).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        follow.try_wait().unwrap().is_none(),
        "logs -f must not exit on a StackPath-side close"
    );
    let _ = follow.kill().await;

    // exec through kubectl 1.27 (SPDY end to end) and 1.33 (WebSocket to the apiserver).
    for minor in ["1.27", "1.33"] {
        let o = kubectl_async(
            cluster,
            minor,
            vec![
                "-n".into(),
                ns.clone(),
                "exec".into(),
                "web".into(),
                "-c".into(),
                "app".into(),
                "--".into(),
                "sh".into(),
                "-c".into(),
                "echo out-$((6*7)); echo err >&2".into(),
            ],
        )
        .await;
        let (out, err) = s(&o);
        assert!(o.status.success(), "kubectl {minor} exec: {err}");
        assert_eq!(out, "out-42\n", "kubectl {minor}");
        assert!(err.contains("err"), "kubectl {minor}: {err}");
        let o = kubectl_async(
            cluster,
            minor,
            vec![
                "-n".into(),
                ns.clone(),
                "exec".into(),
                "web".into(),
                "-c".into(),
                "app".into(),
                "--".into(),
                "sh".into(),
                "-c".into(),
                "exit 3".into(),
            ],
        )
        .await;
        assert_eq!(
            o.status.code(),
            Some(3),
            "kubectl {minor} exit code: {:?}",
            s(&o)
        );
        // stdin through -i.
        let mut child = Command::new(kubectl_bin(minor))
            .arg("--kubeconfig")
            .arg(cluster.admin_kubeconfig())
            .args(["-n", &ns, "exec", "-i", "web", "-c", "app", "--", "cat"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut i = child.stdin.take().unwrap();
            i.write_all(b"through stdin\n").unwrap();
        }
        let o = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            s(&o).0,
            "through stdin\n",
            "kubectl {minor} exec -i: {}",
            s(&o).1
        );
        // Init container and wrong container.
        let o = kubectl_async(
            cluster,
            minor,
            vec![
                "-n".into(),
                ns.clone(),
                "exec".into(),
                "web".into(),
                "-c".into(),
                "init".into(),
                "--".into(),
                "ls".into(),
            ],
        )
        .await;
        assert!(!o.status.success());
        assert!(
            s(&o).1.contains("init container"),
            "kubectl {minor}: {}",
            s(&o).1
        );
        let o = kubectl_async(
            cluster,
            minor,
            vec![
                "-n".into(),
                ns.clone(),
                "exec".into(),
                "web".into(),
                "-c".into(),
                "nope".into(),
                "--".into(),
                "ls".into(),
            ],
        )
        .await;
        assert!(!o.status.success());
        assert!(s(&o).1.contains("nope"), "kubectl {minor}: {}", s(&o).1);
    }

    // attach and port-forward: the clear message.
    let o = kubectl_async(
        cluster,
        "1.33",
        vec![
            "-n".into(),
            ns.clone(),
            "attach".into(),
            "web".into(),
            "-c".into(),
            "app".into(),
        ],
    )
    .await;
    assert!(
        s(&o).1.contains("not supported by the StackPath provider"),
        "attach: {}",
        s(&o).1
    );
    // kubectl 1.27 speaks SPDY end to end; 1.33 tunnels SPDY through a WebSocket.
    let o = kubectl_async(
        cluster,
        "1.27",
        vec![
            "-n".into(),
            ns.clone(),
            "port-forward".into(),
            "pod/web".into(),
            "18080:80".into(),
        ],
    )
    .await;
    assert!(
        s(&o).1.contains("not supported by the StackPath provider"),
        "port-forward: {}",
        s(&o).1
    );
    let o = kubectl_async(
        cluster,
        "1.33",
        vec![
            "-n".into(),
            ns.clone(),
            "port-forward".into(),
            "pod/web".into(),
            "18081:80".into(),
        ],
    )
    .await;
    assert!(
        s(&o).1.contains("not supported by the StackPath provider"),
        "port-forward 1.33: {}",
        s(&o).1
    );

    // 401 without credentials and 403 for a ServiceAccount token without nodes/proxy.
    let (ca, _) = (cluster.ca_crt(), ());
    let tls = tls_client(&std::fs::read_to_string(ca).unwrap());
    let raw = raw_get(tls.clone(), port, "/pods", None).await;
    assert!(raw.starts_with("HTTP/1.1 401"), "{raw}");
    let token = sa_token(admin.clone(), &ns).await;
    let raw = raw_get(
        tls.clone(),
        port,
        &format!("/containerLogs/{ns}/web/app"),
        Some(&token),
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 403"), "{raw}");
    assert!(raw.contains("subresource=proxy"), "{raw}");

    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
    approver.abort();
    let _ = Api::<Node>::all(admin)
        .delete(&node, &Default::default())
        .await;
    emu.shutdown().await;
}

async fn sa_token(admin: kube::Client, ns: &str) -> String {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    let sas: Api<ServiceAccount> = Api::namespaced(admin, ns);
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "nobody"}})).unwrap();
    let _ = sas.create(&PostParams::default(), &sa).await;
    let tr: TokenRequest = serde_json::from_value(json!({"spec": {"audiences": []}})).unwrap();
    let out = sas
        .create_token_request("nobody", &PostParams::default(), &tr)
        .await
        .unwrap();
    out.status.unwrap().token
}

async fn raw_get(
    tls: Arc<rustls::ClientConfig>,
    port: u16,
    path: &str,
    token: Option<&str>,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tls_connect(tls, ([127, 0, 0, 1], port).into()).await;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    c.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}
