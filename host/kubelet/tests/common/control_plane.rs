//! The real control plane side of the apiserver tests: one cluster (with metrics-server) per
//! test binary, kubectl of a given minor, and an edge node: emulator workload, kubelet API with
//! a CSR-bootstrapped certificate (approved here as an admin would), Node and Pod objects.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use local_cluster::Cluster;
use serde_json::json;
use stackpath_emulator::RunningEmulator;
use vk_kubelet::{
    AuthMode, CertStore, ContainerLocation, CsrBootstrap, HostKeyPolicy, KubeletConfig,
    KubeletServer, Limits, TlsSource,
};

use super::*;

/// The cluster of this test binary: started with metrics-server (for `kubectl top`), unless
/// `VK_TEST_KUBECONFIG` names an existing one.
pub fn cluster() -> &'static Cluster {
    static C: OnceLock<Result<Cluster, String>> = OnceLock::new();
    if std::env::var_os("VK_TEST_KUBECONFIG").is_some_and(|v| !v.is_empty()) {
        return Cluster::shared();
    }
    match C.get_or_init(|| {
        Cluster::builder()
            .with_metrics_server(true)
            .start()
            .map_err(|e| e.to_string())
    }) {
        Ok(c) => c,
        Err(e) => panic!("the test control plane failed to start: {e}"),
    }
}

pub async fn cluster_async() -> &'static Cluster {
    tokio::task::spawn_blocking(cluster).await.unwrap()
}

pub fn which(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not on PATH"))
}

/// `kubectl.<minor>` next to the `kubectl` on PATH.
pub fn kubectl_bin(minor: &str) -> PathBuf {
    let k = std::fs::canonicalize(which("kubectl")).expect("kubectl on PATH");
    let p = k.parent().unwrap().join(format!("kubectl.{minor}"));
    assert!(p.is_file(), "{} missing", p.display());
    p
}

pub fn kubectl_sync(cluster: &Cluster, minor: &str, args: &[&str]) -> Output {
    Command::new(kubectl_bin(minor))
        .arg("--kubeconfig")
        .arg(cluster.admin_kubeconfig())
        .args(args)
        .output()
        .expect("running kubectl")
}

/// Runs kubectl to completion off the runtime's worker threads.
pub async fn kubectl(cluster: &'static Cluster, minor: &str, args: &[&str]) -> Output {
    let minor = minor.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        kubectl_sync(cluster, &minor, &a)
    })
    .await
    .unwrap()
}

/// (stdout, stderr) as text.
pub fn s(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Approves every kubelet-serving CSR for `node` as an admin would.
pub fn approve_csrs(admin: kube::Client, node: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<CertificateSigningRequest> = Api::all(admin);
        loop {
            if let Ok(list) = api.list(&Default::default()).await {
                for c in list {
                    let name = c.metadata.name.clone().unwrap_or_default();
                    let decided = c
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|v| !v.is_empty());
                    if !decided && name.starts_with(&format!("csr-{node}-")) {
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

/// The Node object the daemon would maintain, pointing at the kubelet API on 127.0.0.1:`port`.
pub async fn register_node(admin: kube::Client, name: &str, port: u16) {
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

/// A pod bound to `node` with an `init` and an `app` container, status Running.
pub async fn create_pod(admin: kube::Client, ns: &str, name: &str, node: &str) -> Pod {
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
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let status = json!({"status": {"phase": "Running", "startTime": now,
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "app", "image": "busybox", "imageID": "", "ready": true, "restartCount": 0,
                               "started": true, "state": {"running": {"startedAt": now}}}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap()
}

/// How the edge node's serving certificate is requested.
#[derive(Debug, Clone, Copy, Default)]
pub struct CertPolicy {
    /// `spec.expirationSeconds` of the CSR.
    pub expiration: Option<Duration>,
    /// Renew this long before expiry.
    pub renew_before: Option<Duration>,
}

/// One virtual node: a workload in its own emulator, the kubelet API serving it, and the Node
/// and Pod (`web`, containers `app` and init `init`) in a fresh namespace.
pub struct EdgeNode {
    pub cluster: &'static Cluster,
    pub admin: kube::Client,
    pub ns: String,
    pub node: String,
    pub port: u16,
    pub store: Arc<CertStore>,
    /// Exec sessions by transport, as the kubelet API counted them.
    pub exec: Arc<vk_kubelet::ExecTransports>,
    pub emu: RunningEmulator,
    pub sp: stackpath_client::Client,
    pub loc: ContainerLocation,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), vk_kubelet::KubeletError>>,
    approver: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl EdgeNode {
    /// `tag` keeps names apart between tests of one binary; `script` is the container's
    /// `sh -c` command.
    pub async fn start(tag: &str, script: &str, cert: CertPolicy) -> Self {
        let cluster = cluster_async().await;
        let admin = cluster.admin_client().await.unwrap();
        let ns = cluster.new_namespace().await.unwrap();
        let node = format!("vk-kl-{}-{tag}", std::process::id());

        let emu = emulator(Duration::from_secs(2)).await;
        let sp = stackpath(&emu);
        let loc = workload(&sp, &format!("e{}{tag}", std::process::id()), script).await;
        let locator = Arc::new(TestLocator::default());
        locator.add(&ns, "web", &["app"], &["init"], loc.clone());

        // As real kubelets are set up: the client CA bundle trusts both the API server's
        // kubelet client CA and the cluster CA (metrics-server's client certificate).
        let dir = tempfile::tempdir().unwrap();
        let client_ca_file = cluster.kubelet_client_ca_crt().map(|kc| {
            let mut bundle = std::fs::read(kc).unwrap();
            bundle.extend(std::fs::read(cluster.ca_crt()).unwrap());
            let path = dir.path().join("client-ca.crt");
            std::fs::write(&path, bundle).unwrap();
            path
        });
        let approver = approve_csrs(admin.clone(), node.clone());
        let cfg = KubeletConfig {
            listen: loopback(),
            node_name: node.clone(),
            tls: TlsSource::Bootstrap(CsrBootstrap {
                ips: vec!["127.0.0.1".parse().unwrap()],
                dns_names: vec![node.clone()],
                expiration: cert.expiration,
                renew_before: cert.renew_before,
                ..Default::default()
            }),
            client_ca_file,
            auth: AuthMode::Enabled,
            console: console(
                &emu,
                HostKeyPolicy::Pinned(vec![emu.ssh_host_key_openssh.clone().unwrap()]),
            ),
            limits: Limits::default(),
        };
        let daemon = cluster.daemon_client().await.unwrap();
        let server = KubeletServer::bind(cfg, locator.clone(), sp.clone(), daemon)
            .await
            .expect("bootstrapped and bound");
        let port = server.local_addr().port();
        let store = server.cert_store();
        let exec = server.exec_transports();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stop_rx.await;
        }));
        register_node(admin.clone(), &node, port).await;
        let pod = create_pod(admin.clone(), &ns, "web", &node).await;
        locator.pods.lock().unwrap().push(pod);
        Self {
            cluster,
            admin,
            ns,
            node,
            port,
            store,
            exec,
            emu,
            sp,
            loc,
            stop: Some(stop_tx),
            task,
            approver,
            _dir: dir,
        }
    }

    /// Asserts which transports the API server used toward this kubelet for exec. Before 1.36
    /// always SPDY (it translates a WebSocket client's session into SPDY). From 1.36 on, with
    /// the node declaring `ExtendWebSocketsToKubelet`, a WebSocket client's session stays
    /// WebSocket through to the kubelet while an SPDY client's (kubectl 1.27) stays SPDY: both.
    pub fn assert_exec_transport(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let (ws, spdy) = (
            self.exec.websocket.load(Relaxed),
            self.exec.spdy.load(Relaxed),
        );
        let minor = local_cluster::K8sVersion::from_env().unwrap().minor();
        if minor >= 36 {
            assert!(
                ws > 0 && spdy > 0,
                "1.{minor}: exec sessions websocket={ws} spdy={spdy}, expected both"
            );
        } else {
            assert!(
                spdy > 0 && ws == 0,
                "1.{minor}: exec sessions websocket={ws} spdy={spdy}, expected SPDY only"
            );
        }
    }

    /// `kubectl -n <ns> <args…>`.
    pub async fn kubectl(&self, minor: &str, args: &[&str]) -> Output {
        let mut a = vec!["-n", self.ns.as_str()];
        a.extend_from_slice(args);
        kubectl(self.cluster, minor, &a).await
    }

    /// A kubectl command line (namespace and kubeconfig set) for spawning it yourself.
    pub fn kubectl_cmd(&self, minor: &str) -> (PathBuf, Vec<String>) {
        let args = vec![
            "--kubeconfig".to_string(),
            self.cluster.admin_kubeconfig().display().to_string(),
            "-n".to_string(),
            self.ns.clone(),
        ];
        (kubectl_bin(minor), args)
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), &mut self.task).await;
        self.approver.abort();
        let _ = Api::<Node>::all(self.admin.clone())
            .delete(&self.node, &Default::default())
            .await;
        self.emu.shutdown().await;
    }
}

/// A kubelet API run by `vk_kubelet::serve` as the daemon runs it, with a serving certificate
/// from a CSR that nobody approves but the test (or the kubelet itself, with `approve_own`).
pub struct CsrKubelet {
    pub cluster: &'static Cluster,
    pub admin: kube::Client,
    pub node: String,
    pub health: vk_kubelet::Health,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<Result<(), vk_kubelet::KubeletError>>,
}

impl CsrKubelet {
    pub async fn start(tag: &str, approve_own: bool) -> Self {
        let cluster = cluster_async().await;
        let admin = cluster.admin_client().await.unwrap();
        let node = format!("vk-kl-{}-{tag}", std::process::id());
        let sp = stackpath_client::Client::new(
            stackpath_client::Config::new("http://127.0.0.1:9", STACK, CLIENT_ID, SECRET).unwrap(),
        )
        .unwrap();
        let cfg = KubeletConfig {
            listen: loopback(),
            node_name: node.clone(),
            tls: TlsSource::Bootstrap(CsrBootstrap {
                ips: vec!["127.0.0.1".parse().unwrap()],
                dns_names: vec![node.clone()],
                approve_own,
                retry_initial: Duration::from_secs(1),
                retry_max: Duration::from_secs(2),
                remind_every: Duration::from_secs(2),
                ..Default::default()
            }),
            client_ca_file: None,
            auth: AuthMode::Enabled,
            console: vk_kubelet::ConsoleConfig {
                host: "127.0.0.1".into(),
                port: 9,
                stack_id: STACK.into(),
                client_id: CLIENT_ID.into(),
                client_secret: stackpath_client::Secret::new(SECRET),
                host_key: HostKeyPolicy::Pinned(vec![]),
                connect_timeout: Duration::from_secs(1),
            },
            limits: Limits::default(),
        };
        let daemon = cluster.daemon_client().await.unwrap();
        let health = vk_kubelet::Health::new();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(vk_kubelet::serve(
            cfg,
            Arc::new(TestLocator::default()),
            sp,
            daemon,
            health.clone(),
            async {
                let _ = stop_rx.await;
            },
        ));
        Self {
            cluster,
            admin,
            node,
            health,
            stop: Some(stop_tx),
            task,
        }
    }

    /// Waits until the health satisfies `ok` (or panics after `within`).
    pub async fn wait(
        &self,
        within: Duration,
        ok: impl Fn(&vk_kubelet::HealthState) -> bool,
    ) -> vk_kubelet::HealthState {
        let mut rx = self.health.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let s = rx.borrow_and_update().clone();
            if ok(&s) {
                return s;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                panic!("{}: health never got there; it is {s:?}", self.node);
            }
        }
    }

    /// The CSRs filed for this node, oldest first.
    pub async fn csrs(&self) -> Vec<CertificateSigningRequest> {
        let api: Api<CertificateSigningRequest> = Api::all(self.admin.clone());
        let mut v: Vec<_> = api
            .list(&Default::default())
            .await
            .unwrap()
            .into_iter()
            .filter(|c| {
                c.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(&format!("csr-{}-", self.node)))
            })
            .collect();
        v.sort_by_key(|c| c.metadata.creation_timestamp.clone().map(|t| t.0));
        v
    }

    /// Events (events.k8s.io/v1) regarding this node's Node object.
    pub async fn events(&self) -> Vec<k8s_openapi::api::events::v1::Event> {
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.admin.clone(), "default");
        api.list(&Default::default())
            .await
            .unwrap()
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some("Node") && r.name.as_deref() == Some(&self.node)
                })
            })
            .collect()
    }

    /// Sets an `Approved` or `Denied` condition on CSR `name`, as `kubectl certificate` does.
    pub async fn decide(&self, name: &str, approve: bool) {
        let api: Api<CertificateSigningRequest> = Api::all(self.admin.clone());
        let (t, reason) = if approve {
            ("Approved", "KubectlApprove")
        } else {
            ("Denied", "KubectlDeny")
        };
        let patch = json!({"status": {"conditions": [{"type": t, "status": "True",
            "reason": reason, "message": format!("{t} by the vk-kubelet test")}]}});
        api.patch_approval(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), &mut self.task).await;
        let api: Api<CertificateSigningRequest> = Api::all(self.admin.clone());
        for c in self.csrs().await {
            let _ = api
                .delete(c.metadata.name.as_deref().unwrap(), &Default::default())
                .await;
        }
    }
}
