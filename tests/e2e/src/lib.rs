//! The harness of the daemon's end-to-end tests: the shared real control plane from
//! `local-cluster`, an in-process StackPath emulator per test, and the real `vk-stackpath`
//! binary started as a process with the daemon's least-privilege kubeconfig. Each test gets
//! its own namespace and its own node name, so tests run side by side on one cluster.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use local_cluster::Cluster;
use stackpath_emulator::{EmulatorConfig, RunningEmulator};

pub mod pod_template;

pub const STACK: &str = "demo-stack";
pub const CLIENT_ID: &str = "emulator-client";
pub const CLIENT_SECRET: &str = "emulator-secret";
pub const CITY: &str = "DFW";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

/// The daemon binary, built once per test run (a no-op when `cargo test --workspace` built it).
pub fn binary() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // Benchmarks may measure another build (e.g. `target/release/vk-stackpath`).
        if let Some(bin) = std::env::var_os("E2E_DAEMON_BIN") {
            return PathBuf::from(bin);
        }
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "--quiet",
                "-p",
                "vk-stackpath",
                "--bin",
                "vk-stackpath",
            ])
            .current_dir(workspace())
            .status()
            .expect("running cargo build for vk-stackpath");
        assert!(status.success(), "building vk-stackpath failed");
        target_dir().join("debug/vk-stackpath")
    })
}

/// A fresh directory for `name` below the target directory, not under /tmp or /run (which a
/// stood-in pod's mount namespace replaces); emptied first.
pub fn scratch_dir(name: &str) -> Result<PathBuf> {
    let dir = target_dir().join("e2e-scratch").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Resident memory of process `pid` in MB (from /proc; 0 when it is gone).
pub fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A running daemon process; killed on drop.
pub struct Daemon {
    child: Option<Child>,
    pub node: String,
    pub metrics: SocketAddr,
    pub log: PathBuf,
}

impl Daemon {
    /// A daemon started some other way (e.g. from a rendered Deployment).
    pub fn adopt(child: Child, node: &str, metrics: SocketAddr, log: PathBuf) -> Daemon {
        Daemon {
            child: Some(child),
            node: node.to_owned(),
            metrics,
            log,
        }
    }

    /// Everything it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// User + system CPU seconds used so far (from /proc).
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // SAFETY: sysconf has no memory effects.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        (ticks(11) + ticks(12)) / hz.max(1.0)
    }

    /// How it exited, if it has (None while it runs).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGKILL: no shutdown work at all.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for exit (the graceful path).
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return c.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Prometheus text from `/metrics`.
    pub async fn metrics_text(&self) -> Result<String> {
        self.get("/metrics").await
    }

    /// The raw HTTP/1.0 answer (status line, headers, body) to GET `path` on the metrics port.
    pub async fn get(&self, path: &str) -> Result<String> {
        let mut stream = tokio::net::TcpStream::connect(self.metrics).await?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
            .await?;
        let mut out = String::new();
        stream.read_to_string(&mut out).await?;
        Ok(out)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One test's world.
pub struct Env {
    pub cluster: &'static Cluster,
    pub emulator: RunningEmulator,
    pub ns: String,
    pub admin: kube::Client,
    pub node: String,
    pub dir: PathBuf,
    /// The log of the daemon started last, quoted when a wait fails.
    last_log: std::sync::Mutex<Option<PathBuf>>,
}

pub fn emulator_config() -> EmulatorConfig {
    EmulatorConfig {
        delays: stackpath_emulator::InstanceDelays {
            scheduling: Duration::from_millis(300),
            starting: Duration::from_millis(300),
            deleting: Duration::from_millis(300),
        },
        ..EmulatorConfig::default()
    }
}

impl Env {
    pub async fn start(test: &str) -> Result<Env> {
        Self::start_with(test, emulator_config()).await
    }

    pub async fn start_with(test: &str, config: EmulatorConfig) -> Result<Env> {
        let cluster = tokio::task::spawn_blocking(Cluster::shared).await?;
        Self::start_on(test, cluster, config).await
    }

    /// On a dedicated cluster (e.g. one with short node-monitor settings).
    pub async fn start_on(
        test: &str,
        cluster: &'static Cluster,
        config: EmulatorConfig,
    ) -> Result<Env> {
        let emulator =
            stackpath_emulator::start(config, "127.0.0.1:0".parse()?, Some("127.0.0.1:0".parse()?))
                .await?;
        let ns = cluster.new_namespace().await?;
        let admin = cluster.admin_client().await?;
        let dir = cluster.dir().join("e2e").join(&ns);
        std::fs::create_dir_all(&dir)?;
        Ok(Env {
            cluster,
            emulator,
            // Ends in the city, so `--nodename` keeps it as is (a name without it gets
            // `-dfw` appended, as the Go provider did).
            node: format!("vk-{test}-{}-{}", &ns[2..], CITY).to_lowercase(),
            ns,
            admin,
            dir,
            last_log: Default::default(),
        })
    }

    /// The daemon command with the emulator's credentials and the daemon kubeconfig.
    pub fn daemon_command(&self, node: &str) -> (Command, SocketAddr) {
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut cmd = Command::new(binary());
        cmd.arg("run")
            .arg("--kubeconfig")
            .arg(self.cluster.daemon_kubeconfig())
            .args(["--nodename", node])
            .args(["--metrics-addr", &metrics.to_string()])
            .args(["--node-ip", "127.0.0.1"])
            .args(["--kubelet-port", &free_port().to_string()])
            .args(["--orphan-grace", "5s"])
            .args(["--kubelet-address", "127.0.0.1"])
            .args(["--console-host", "127.0.0.1"]);
        if let Some(ca) = self.cluster.kubelet_client_ca_crt() {
            cmd.arg("--client-ca-file").arg(ca);
        }
        if let Some(addr) = self.emulator.ssh_addr {
            cmd.args(["--console-port", &addr.port().to_string()]);
        }
        if let Some(key) = &self.emulator.ssh_host_key_openssh {
            cmd.args(["--console-host-key", key.trim()]);
        }
        // Benchmarks set E2E_DAEMON_LOG=info: debug logs of thousands of pods cost CPU.
        let log =
            std::env::var("E2E_DAEMON_LOG").unwrap_or_else(|_| "info,vk_stackpath=debug".into());
        cmd.args(["--log", &log])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.dir)
            .env("SP_STACK_ID", STACK)
            .env("SP_CLIENT_ID", CLIENT_ID)
            .env("SP_CLIENT_SECRET", CLIENT_SECRET)
            .env("SP_CITY_CODE", CITY.to_lowercase())
            .env("SP_API_HOST", &self.emulator.base_url);
        (cmd, metrics)
    }

    /// Starts a daemon for this test's node and waits until its node is Ready.
    pub async fn start_daemon(&self) -> Result<Daemon> {
        self.start_daemon_with(&self.node, |_| {}).await
    }

    pub async fn start_daemon_with(
        &self,
        node: &str,
        adjust: impl FnOnce(&mut Command),
    ) -> Result<Daemon> {
        self.start_daemon_for(node, &[node.to_owned()], adjust)
            .await
    }

    /// Starts a daemon given `--nodename nodename` (a template for several cities) that
    /// registers `nodes`, and waits until every one is Ready.
    pub async fn start_daemon_for(
        &self,
        nodename: &str,
        nodes: &[String],
        adjust: impl FnOnce(&mut Command),
    ) -> Result<Daemon> {
        for node in nodes {
            self.cluster.grant_node(node).await?;
        }
        let node = &nodes[0];
        let (mut cmd, metrics) = self.daemon_command(nodename);
        adjust(&mut cmd);
        let n = std::fs::read_dir(&self.dir).map(|d| d.count()).unwrap_or(0);
        let log = self.dir.join(format!("daemon-{node}-{n}.log"));
        let file = std::fs::File::create(&log)?;
        *self.last_log.lock().unwrap() = Some(log.clone());
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("starting vk-stackpath")?;
        let mut daemon = Daemon {
            child: Some(child),
            node: node.to_owned(),
            metrics,
            log,
        };
        self.approve_serving_csrs(node);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut waiting: Vec<&String> = nodes.iter().collect();
        loop {
            if let Some(c) = daemon.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                bail!(
                    "the daemon exited ({status}) at start:\n{}",
                    daemon.log_text()
                );
            }
            let mut still = Vec::new();
            for n in waiting {
                if !self.node_ready(n).await {
                    still.push(n);
                }
            }
            waiting = still;
            if waiting.is_empty() {
                return Ok(daemon);
            }
            if Instant::now() > deadline {
                daemon.kill();
                bail!(
                    "node(s) {waiting:?} not Ready after 60 s; daemon log:\n{}",
                    daemon.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Approves the daemon's kubelet-serving CSRs for `node` as an admin would, in the
    /// background (the daemon never approves its own).
    pub fn approve_serving_csrs(&self, node: &str) {
        use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
        let csrs: Api<CertificateSigningRequest> = Api::all(self.admin.clone());
        let note = format!("approved by the e2e test for system:node:{node}");
        tokio::spawn(async move {
            for _ in 0..600 {
                if let Ok(list) = csrs.list(&Default::default()).await {
                    for csr in list.items {
                        let pending = csr
                            .status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_none_or(|c| c.is_empty());
                        let ours = csr.spec.signer_name == "kubernetes.io/kubelet-serving"
                            && csr.spec.username.as_deref()
                                == Some("system:serviceaccount:vk-stackpath:vk-stackpath");
                        if pending && ours {
                            let name = csr.metadata.name.clone().unwrap_or_default();
                            let body = serde_json::json!({"status": {"conditions": [{
                                "type": "Approved", "status": "True",
                                "reason": "E2ETest", "message": note}]}});
                            let _ = csrs
                                .patch_approval(
                                    &name,
                                    &Default::default(),
                                    &kube::api::Patch::Merge(&body),
                                )
                                .await;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }

    pub async fn node_ready(&self, node: &str) -> bool {
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.admin.clone());
        let Ok(Some(n)) = nodes.get_opt(node).await else {
            return false;
        };
        n.status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.cluster.admin_kubeconfig())
            .args(["-n", &self.ns])
            .args(args)
            .output()
            .expect("running kubectl")
    }

    /// `kubectl apply -f -` with the given manifest; requires success.
    pub fn apply(&self, manifest: &str) -> Result<String> {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.cluster.admin_kubeconfig())
            .args(["-n", &self.ns, "apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("kubectl stdin")?
            .write_all(manifest.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "kubectl apply failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    /// Waits until `check` accepts the pod; returns it. Fails with the last pod seen.
    pub async fn wait_pod(
        &self,
        name: &str,
        timeout: Duration,
        check: impl Fn(&Pod) -> bool,
    ) -> Result<Pod> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(p) = self.pods().get_opt(name).await? {
                if check(&p) {
                    return Ok(p);
                }
                last = Some(p);
            }
            if Instant::now() > deadline {
                bail!(
                    "pod {name} did not reach the expected state in {timeout:?}; last status: {}\n{}",
                    last.map(|p| serde_json::to_string_pretty(&p.status).unwrap_or_default())
                        .unwrap_or_else(|| "no pod".into()),
                    self.daemon_log_tail(80)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The last `n` lines of the most recently started daemon's log.
    pub fn daemon_log_tail(&self, n: usize) -> String {
        let Some(path) = self.last_log.lock().unwrap().clone() else {
            return String::new();
        };
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- daemon log ({}), last {n} lines ---\n{}",
            path.display(),
            lines[lines.len().saturating_sub(n)..].join("\n")
        )
    }

    pub async fn wait_gone(&self, name: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.pods().get_opt(name).await?.is_some() {
            if Instant::now() > deadline {
                bail!("pod {name} still exists after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// A StackPath client on the emulator (the test's view of StackPath).
    pub fn stackpath(&self) -> stackpath_client::Client {
        let mut config =
            stackpath_client::Config::new(&self.emulator.base_url, STACK, CLIENT_ID, CLIENT_SECRET)
                .expect("client config");
        if let Some(pem) = &self.emulator.ca_pem {
            let file = self.dir.join("emulator-ca.pem");
            std::fs::write(&file, pem).expect("writing the emulator's CA");
            config.ca_file = Some(file);
        }
        stackpath_client::Client::new(config).expect("client")
    }

    /// This test's workloads at StackPath (by the node label).
    /// Slugs of this node's workloads that are not being deleted (StackPath deletes
    /// asynchronously: a deleted workload is listed, with `deleteRequestedAt`, for a while).
    pub async fn live_workload_slugs(&self) -> Result<Vec<String>> {
        Ok(self
            .workloads()
            .await?
            .into_iter()
            .filter(|w| {
                w.metadata
                    .as_ref()
                    .is_none_or(|m| m.delete_requested_at.is_none())
            })
            .filter_map(|w| w.slug)
            .collect())
    }

    pub async fn workloads(&self) -> Result<Vec<stackpath_client::model::Workload>> {
        Ok(self
            .stackpath()
            .list_all_workloads(None)
            .await?
            .into_iter()
            .filter(|w| {
                w.metadata
                    .as_ref()
                    .and_then(|m| m.labels.get("vk-node-name"))
                    == Some(&self.node)
            })
            .collect())
    }

    /// Events of a pod, as `reason: note` lines.
    pub async fn events(&self, pod: &str) -> Result<Vec<String>> {
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.admin.clone(), &self.ns);
        let list = api.list(&Default::default()).await?;
        Ok(list
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod))
            .map(|e| {
                format!(
                    "{}: {}",
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default()
                )
            })
            .collect())
    }
}

/// When each pod of `pods` was first seen Running (by `now`), from a watch, as a user's
/// `kubectl get -w` would see it; the watch runs until the handle is aborted.
pub fn first_seen_running<T: Send + 'static>(
    pods: Api<Pod>,
    now: fn() -> T,
) -> (
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, T>>>,
    tokio::task::JoinHandle<()>,
) {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let running: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, T>>> =
        Default::default();
    let seen = running.clone();
    let watch = tokio::spawn(
        watcher(pods, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .for_each(move |p| {
                if let Ok(p) = p
                    && phase(&p) == "Running"
                {
                    let name = p.metadata.name.unwrap_or_default();
                    seen.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(name)
                        .or_insert_with(now);
                }
                futures::future::ready(())
            }),
    );
    (running, watch)
}

/// The `p` quantile (0 to 1) of `v`, nearest rank; NaN when `v` is empty. Sorts `v`.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// A pod manifest bound to `node` (tolerating the provider taint).
pub fn pod_yaml(name: &str, node: &str, image: &str, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: {node}
  tolerations:
    - key: virtual-kubelet.io/provider
      operator: Exists
  containers:
    - name: app
      image: {image}
{extra_spec}"#
    )
}

pub fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
