//! Starting, sharing and stopping a local control plane.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::build::{Binaries, Progress, ensure_binaries};
use crate::error::{Error, Result};
use crate::identities;
use crate::kubeconfig::{self, Credential};
use crate::paths;
use crate::pki::{self, PkiFiles};
use crate::process::Process;
use crate::version::K8sVersion;

/// How long tokens minted for the daemon stay valid (the apiserver caps at its own maximum).
const DAEMON_TOKEN_SECONDS: i64 = 24 * 3600;

/// Settings of a cluster to start; `Cluster::builder()`.
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    version: Option<K8sVersion>,
    dir: Option<PathBuf>,
    with_metrics_server: bool,
    kubeadm_kubelet_client: bool,
    node_monitor_period: Duration,
    node_monitor_grace_period: Duration,
    ready_timeout: Duration,
    apiserver_args: Vec<String>,
    controller_manager_args: Vec<String>,
    quiet: bool,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        Self {
            version: None,
            dir: None,
            with_metrics_server: false,
            kubeadm_kubelet_client: false,
            node_monitor_period: Duration::from_secs(5),
            node_monitor_grace_period: Duration::from_secs(40),
            ready_timeout: Duration::from_secs(120),
            apiserver_args: vec![],
            controller_manager_args: vec![],
            quiet: true,
        }
    }
}

impl ClusterBuilder {
    /// Kubernetes minor to run; default `VK_K8S_VERSION`, else 1.34.
    pub fn version(mut self, v: K8sVersion) -> Self {
        self.version = Some(v);
        self
    }

    /// Cluster dir (PKI, kubeconfigs, data, logs); default a fresh dir under the cache dir.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    pub fn with_metrics_server(mut self, on: bool) -> Self {
        self.with_metrics_server = on;
        self
    }

    /// Sign the API server's kubelet client certificate with the cluster CA, as kubeadm does
    /// (the default is a CA of its own). The shipped Deployment trusts the cluster CA
    /// (`kube-root-ca.crt`) for kubelet clients, so the deploy contract test needs this.
    pub fn kubeadm_kubelet_client(mut self, on: bool) -> Self {
        self.kubeadm_kubelet_client = on;
        self
    }

    /// `--node-monitor-period` of the controller-manager (how often it checks node leases).
    pub fn node_monitor_period(mut self, d: Duration) -> Self {
        self.node_monitor_period = d;
        self
    }

    /// `--node-monitor-grace-period`: how long a node may miss heartbeats before it turns
    /// NotReady/Unknown. Short values make lease-loss tests run in seconds.
    pub fn node_monitor_grace_period(mut self, d: Duration) -> Self {
        self.node_monitor_grace_period = d;
        self
    }

    pub fn ready_timeout(mut self, d: Duration) -> Self {
        self.ready_timeout = d;
        self
    }

    /// An extra kube-apiserver flag (e.g. `--default-not-ready-toleration-seconds=5`).
    pub fn apiserver_arg(mut self, arg: impl Into<String>) -> Self {
        self.apiserver_args.push(arg.into());
        self
    }

    /// An extra kube-controller-manager flag.
    pub fn controller_manager_arg(mut self, arg: impl Into<String>) -> Self {
        self.controller_manager_args.push(arg.into());
        self
    }

    /// Print progress (build, start steps) on stderr; the CLI does, tests by default do not.
    pub fn verbose(mut self, on: bool) -> Self {
        self.quiet = !on;
        self
    }

    /// Builds what is missing, starts every component and waits until the cluster is usable.
    /// Blocking; callable from inside or outside a tokio runtime.
    pub fn start(self) -> Result<Cluster> {
        let mut progress = QuietProgress(!self.quiet);
        let version = match self.version {
            Some(v) => v,
            None => K8sVersion::from_env()?,
        };
        let binaries = ensure_binaries(version, self.with_metrics_server, &mut progress)?;
        start_cluster(self, version, binaries, &mut progress)
    }
}

struct QuietProgress(bool);

impl Progress for QuietProgress {
    fn step(&mut self, message: &str) {
        if self.0 {
            eprintln!("local-cluster: {message}");
        }
    }
}

/// Free loopback ports for every listener, picked up front.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Ports {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub apiserver: u16,
    pub controller_manager: u16,
    pub scheduler: u16,
    pub metrics_server: u16,
}

impl Ports {
    fn pick() -> Result<Self> {
        // Hold every listener until all are picked, so the same port is not handed out twice.
        let mut held = vec![];
        let mut next = || -> Result<u16> {
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .map_err(Error::io("finding a free port on", "127.0.0.1"))?;
            let p = l
                .local_addr()
                .map_err(Error::io("finding a free port on", "127.0.0.1"))?
                .port();
            held.push(l);
            Ok(p)
        };
        Ok(Self {
            etcd_client: next()?,
            etcd_peer: next()?,
            apiserver: next()?,
            controller_manager: next()?,
            scheduler: next()?,
            metrics_server: next()?,
        })
    }
}

/// A running cluster (or, with `VK_TEST_KUBECONFIG`, an existing one). Stops its components
/// on drop; the shared one is stopped by the kernel when the test binary exits.
pub struct Cluster {
    dir: PathBuf,
    /// Removed on drop (a dir the harness chose, not one the user named).
    owned_dir: bool,
    processes: Mutex<Vec<Process>>,
    apiserver_url: String,
    release: String,
    ports: Option<Ports>,
    external: bool,
    /// Time from `start` to ready (binaries already built).
    startup: Duration,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("dir", &self.dir)
            .field("apiserver_url", &self.apiserver_url)
            .field("release", &self.release)
            .field("external", &self.external)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// The cluster shared by every test of this test binary: started on first use (or taken
    /// from `VK_TEST_KUBECONFIG`), never stopped explicitly: its processes die with the binary.
    /// Panics with the start error, since no test can run without it.
    pub fn shared() -> &'static Cluster {
        match Self::try_shared() {
            Ok(c) => c,
            Err(e) => panic!("local-cluster: the shared test cluster failed to start: {e}"),
        }
    }

    /// Like [`Cluster::shared`], returning the (same, cached) start error instead of panicking.
    pub fn try_shared() -> std::result::Result<&'static Cluster, &'static str> {
        static SHARED: OnceLock<std::result::Result<Cluster, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let started = match std::env::var_os("VK_TEST_KUBECONFIG").filter(|v| !v.is_empty())
                {
                    Some(path) => Cluster::external(Path::new(&path)),
                    None => Cluster::builder().start(),
                };
                started.map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(String::as_str)
    }

    /// Uses an existing cluster (kind, k3d, a real one) through an admin kubeconfig; installs the
    /// daemon identity there and writes `daemon.kubeconfig` into a fresh dir.
    pub fn external(kubeconfig: &Path) -> Result<Cluster> {
        let started = Instant::now();
        let dir = fresh_dir()?;
        let admin = dir.join("admin.kubeconfig");
        std::fs::copy(kubeconfig, &admin).map_err(Error::io("copying", kubeconfig))?;
        let kc = Kubeconfig::read_from(&admin).map_err(|e| Error::Kubeconfig {
            path: admin.clone(),
            reason: e.to_string(),
        })?;
        let server = kc
            .clusters
            .first()
            .and_then(|c| c.cluster.as_ref())
            .and_then(|c| c.server.clone())
            .unwrap_or_default();
        let (ca_data, token) = run_async(async {
            let client = client_from(&admin).await?;
            let token = identities::install_daemon_identity(&client, DAEMON_TOKEN_SECONDS).await?;
            Ok::<_, Error>((ca_from_kubeconfig(&kc), token))
        })?;
        let ca = dir.join("ca.crt");
        if let Some(pem) = ca_data {
            std::fs::write(&ca, pem).map_err(Error::io("writing", &ca))?;
        }
        kubeconfig::write(
            &dir.join("daemon.kubeconfig"),
            &server,
            &ca,
            crate::DAEMON_SERVICE_ACCOUNT,
            Credential::Token(&token),
            Some(crate::DAEMON_NAMESPACE),
        )?;
        Ok(Cluster {
            dir,
            owned_dir: true,
            processes: Mutex::new(vec![]),
            apiserver_url: server,
            release: "external".into(),
            ports: None,
            external: true,
            startup: started.elapsed(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `https://127.0.0.1:<port>` of kube-apiserver.
    pub fn apiserver_url(&self) -> &str {
        &self.apiserver_url
    }

    /// The Kubernetes release running (e.g. `v1.34.4`).
    pub fn release(&self) -> &str {
        &self.release
    }

    pub fn is_external(&self) -> bool {
        self.external
    }

    pub fn ports(&self) -> Option<Ports> {
        self.ports
    }

    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// Kubeconfig of `kubernetes-admin` (group `system:masters`).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// Kubeconfig of ServiceAccount vk-stackpath/vk-stackpath, holding exactly the RBAC of
    /// deploy/base/rbac.yaml; default namespace vk-stackpath.
    pub fn daemon_kubeconfig(&self) -> PathBuf {
        self.dir.join("daemon.kubeconfig")
    }

    /// The cluster CA (verifies the apiserver; signs approved kubelet-serving CSRs).
    pub fn ca_crt(&self) -> PathBuf {
        self.dir.join("pki").join("ca.crt")
    }

    /// The CA of the apiserver's kubelet client certificate: the daemon's `--client-ca-file`.
    /// Not known for an external cluster.
    pub fn kubelet_client_ca_crt(&self) -> Option<PathBuf> {
        (!self.external).then(|| self.dir.join("pki").join("kubelet-client-ca.crt"))
    }

    /// The generated PKI (none for an external cluster).
    pub fn pki(&self) -> Option<PkiFiles> {
        (!self.external).then(|| PkiFiles {
            dir: self.dir.join("pki"),
        })
    }

    pub async fn admin_client(&self) -> Result<Client> {
        client_from(&self.admin_kubeconfig()).await
    }

    pub async fn daemon_client(&self) -> Result<Client> {
        client_from(&self.daemon_kubeconfig()).await
    }

    /// Lets the daemon's identity read and patch `node` and renew its Lease, as the overlay
    /// of a city grants for its own node (`deploy/overlays/*/node-rbac.yaml`).
    pub async fn grant_node(&self, node: &str) -> Result<()> {
        identities::grant_node(&self.admin_client().await?, node).await
    }

    /// A fresh namespace for one test (`t-<random>`), created as admin.
    pub async fn new_namespace(&self) -> Result<String> {
        let client = self.admin_client().await?;
        let api: Api<Namespace> = Api::all(client);
        let ns = Namespace {
            metadata: ObjectMeta {
                generate_name: Some("t-".into()),
                labels: Some([("local-cluster/test".to_string(), "true".to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let created = api
            .create(&PostParams::default(), &ns)
            .await
            .map_err(Error::kube("creating a test namespace"))?;
        created
            .metadata
            .name
            .ok_or_else(|| Error::Other("the created namespace has no name".into()))
    }

    /// Name, pid and log file of each running component.
    pub fn components(&self) -> Vec<(String, u32, PathBuf)> {
        self.processes
            .lock()
            .map(|ps| {
                ps.iter()
                    .map(|p| (p.name().to_string(), p.pid(), p.log_path().to_path_buf()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The last `lines` log lines of every component, for failure reports.
    pub fn log_tails(&self, lines: usize) -> String {
        let Ok(ps) = self.processes.lock() else {
            return String::new();
        };
        ps.iter()
            .map(|p| {
                format!(
                    "----- {} ({}) -----\n{}\n",
                    p.name(),
                    p.log_path().display(),
                    p.log_tail(lines)
                )
            })
            .collect()
    }

    /// Ok while every component runs; the first exit (with its log tail) otherwise.
    pub fn check_running(&self) -> Result<()> {
        let mut ps = self
            .processes
            .lock()
            .map_err(|_| Error::Other("cluster process list poisoned".into()))?;
        ps.iter_mut().try_for_each(Process::check_running)
    }

    /// Prints every component's log tail if the current test panics while the guard lives.
    pub fn dump_logs_on_panic(&self) -> LogDumpGuard<'_> {
        LogDumpGuard { cluster: self }
    }

    /// Stops one component (e.g. `kube-apiserver`, for an outage test); the others run on.
    pub fn stop_component(&self, name: &str) -> Result<()> {
        self.with_component(name, |p| {
            p.stop(Duration::from_secs(3));
            Ok(())
        })
    }

    /// Starts a component stopped by [`Cluster::stop_component`] again, with its arguments;
    /// for kube-apiserver, returns once it is ready.
    pub async fn start_component(&self, name: &str) -> Result<()> {
        self.with_component(name, Process::respawn)?;
        if name == "kube-apiserver" {
            wait_apiserver(self, &self.admin_kubeconfig(), Duration::from_secs(120)).await?;
        }
        Ok(())
    }

    fn with_component(&self, name: &str, f: impl FnOnce(&mut Process) -> Result<()>) -> Result<()> {
        let mut ps = self
            .processes
            .lock()
            .map_err(|_| Error::Other("cluster process list poisoned".into()))?;
        let p = ps
            .iter_mut()
            .find(|p| p.name() == name)
            .ok_or_else(|| Error::Other(format!("no component `{name}` in this cluster")))?;
        f(p)
    }

    /// Stops every component, newest first.
    pub fn stop(&self) {
        if let Ok(mut ps) = self.processes.lock() {
            while let Some(mut p) = ps.pop() {
                p.stop(Duration::from_secs(3));
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        if self.owned_dir && std::env::var_os("VK_KEEP_CLUSTER_DIR").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// See [`Cluster::dump_logs_on_panic`].
pub struct LogDumpGuard<'a> {
    cluster: &'a Cluster,
}

impl Drop for LogDumpGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "local-cluster: test failed; cluster dir {}\n{}",
                self.cluster.dir.display(),
                self.cluster.log_tails(30)
            );
        }
    }
}

/// Runs async work on a private runtime on its own thread, so blocking callers work both
/// inside and outside a tokio runtime.
fn run_async<F, T>(fut: F) -> Result<T>
where
    F: std::future::Future<Output = Result<T>> + Send,
    T: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Other(format!("creating a tokio runtime: {e}")))?
                .block_on(fut)
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Other("the cluster start thread panicked".into())))
    })
}

pub(crate) async fn client_from(path: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(path).map_err(|e| Error::Kubeconfig {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Kubeconfig {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    Client::try_from(config).map_err(Error::kube(format!(
        "building a client from {}",
        path.display()
    )))
}

fn ca_from_kubeconfig(kc: &Kubeconfig) -> Option<Vec<u8>> {
    use base64::Engine;
    let data = kc
        .clusters
        .first()?
        .cluster
        .as_ref()?
        .certificate_authority_data
        .clone()?;
    base64::engine::general_purpose::STANDARD.decode(data).ok()
}

/// `<cache>/clusters/<pid>-<n>`; dirs of test binaries that are gone are removed first.
fn fresh_dir() -> Result<PathBuf> {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let root = paths::cache_dir().join("clusters");
    std::fs::create_dir_all(&root).map_err(Error::io("creating", &root))?;
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let pid = name.split('-').next().and_then(|p| p.parse::<i32>().ok());
            // SAFETY: kill with signal 0 only checks whether the pid exists.
            if let Some(pid) = pid
                && unsafe { libc::kill(pid, 0) } != 0
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = root.join(format!("{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(Error::io("creating", &dir))?;
    Ok(dir)
}

fn start_cluster(
    b: ClusterBuilder,
    _version: K8sVersion,
    bins: Binaries,
    progress: &mut dyn Progress,
) -> Result<Cluster> {
    let started = Instant::now();
    let (dir, owned_dir) = match &b.dir {
        Some(d) => {
            // A named dir is reused: clear the previous cluster's state, keep nothing stale.
            for sub in ["pki", "etcd", "logs"] {
                let _ = std::fs::remove_dir_all(d.join(sub));
            }
            std::fs::create_dir_all(d).map_err(Error::io("creating", d))?;
            (d.canonicalize().map_err(Error::io("resolving", d))?, false)
        }
        None => (fresh_dir()?, true),
    };
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(Error::io("creating", &logs))?;
    let ports = Ports::pick()?;
    let pki = pki::generate(&dir.join("pki"), &[], b.kubeadm_kubelet_client)?;
    let host = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let url = format!("https://{host}:{}", ports.apiserver);

    let admin = dir.join("admin.kubeconfig");
    kubeconfig::write(
        &admin,
        &url,
        &pki.ca_crt(),
        "kubernetes-admin",
        Credential::ClientCert {
            cert: &pki.admin_crt(),
            key: &pki.admin_key(),
        },
        None,
    )?;
    let kcm_kc = dir.join("controller-manager.kubeconfig");
    kubeconfig::write(
        &kcm_kc,
        &url,
        &pki.ca_crt(),
        "system:kube-controller-manager",
        Credential::ClientCert {
            cert: &pki.controller_manager_crt(),
            key: &pki.controller_manager_key(),
        },
        None,
    )?;
    let sched_kc = dir.join("scheduler.kubeconfig");
    kubeconfig::write(
        &sched_kc,
        &url,
        &pki.ca_crt(),
        "system:kube-scheduler",
        Credential::ClientCert {
            cert: &pki.scheduler_crt(),
            key: &pki.scheduler_key(),
        },
        None,
    )?;

    let mut cluster = Cluster {
        dir: dir.clone(),
        owned_dir,
        processes: Mutex::new(vec![]),
        apiserver_url: url.clone(),
        release: bins.release.clone(),
        ports: Some(ports),
        external: false,
        startup: Duration::ZERO,
    };
    // From here on, an error drops `cluster`, which stops whatever already started.
    let spawn =
        |cluster: &Cluster, name: &str, bin: &Path, args: Vec<String>, port: u16| -> Result<()> {
            let p = Process::spawn(
                name,
                bin,
                &args,
                &logs.join(format!("{name}.log")),
                Some(port),
            )?;
            cluster
                .processes
                .lock()
                .map_err(|_| Error::Other("cluster process list poisoned".into()))?
                .push(p);
            Ok(())
        };
    let p = |path: PathBuf| path.to_string_lossy().into_owned();

    progress.step(&format!("starting etcd on 127.0.0.1:{}", ports.etcd_client));
    let etcd_url = format!("http://127.0.0.1:{}", ports.etcd_client);
    let peer_url = format!("http://127.0.0.1:{}", ports.etcd_peer);
    spawn(
        &cluster,
        "etcd",
        &bins.etcd,
        vec![
            "--name=local-cluster".into(),
            format!("--data-dir={}", p(dir.join("etcd"))),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=local-cluster={peer_url}"),
            // Tests do not need durability; fsync dominates etcd's latency on a shared disk.
            "--unsafe-no-fsync".into(),
            "--log-level=warn".into(),
        ],
        ports.etcd_client,
    )?;

    progress.step(&format!(
        "starting kube-apiserver {} on {url}",
        bins.release
    ));
    let mut apiserver_args = vec![
        format!("--etcd-servers={etcd_url}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={}", ports.apiserver),
        // The `kubernetes` Service endpoints cannot be a loopback address.
        "--endpoint-reconciler-type=none".into(),
        format!("--tls-cert-file={}", p(pki.apiserver_crt())),
        format!("--tls-private-key-file={}", p(pki.apiserver_key())),
        format!("--client-ca-file={}", p(pki.ca_crt())),
        "--authorization-mode=Node,RBAC".into(),
        "--allow-privileged=true".into(),
        format!(
            "--service-cluster-ip-range={}",
            pki::SERVICE_CLUSTER_IP_RANGE
        ),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", p(pki.sa_pub())),
        format!("--service-account-signing-key-file={}", p(pki.sa_key())),
        // Toward kubelets (the daemon): present this client certificate and verify theirs.
        format!(
            "--kubelet-client-certificate={}",
            p(pki.apiserver_kubelet_client_crt())
        ),
        format!(
            "--kubelet-client-key={}",
            p(pki.apiserver_kubelet_client_key())
        ),
        format!("--kubelet-certificate-authority={}", p(pki.ca_crt())),
        "--kubelet-preferred-address-types=InternalIP".into(),
        // Aggregation (metrics-server): the front-proxy identity and request headers.
        format!(
            "--requestheader-client-ca-file={}",
            p(pki.front_proxy_ca_crt())
        ),
        "--requestheader-allowed-names=front-proxy-client".into(),
        "--requestheader-username-headers=X-Remote-User".into(),
        "--requestheader-group-headers=X-Remote-Group".into(),
        "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
        format!(
            "--proxy-client-cert-file={}",
            p(pki.front_proxy_client_crt())
        ),
        format!(
            "--proxy-client-key-file={}",
            p(pki.front_proxy_client_key())
        ),
        "--profiling=false".into(),
    ];
    apiserver_args.extend(b.apiserver_args.iter().cloned());
    spawn(
        &cluster,
        "kube-apiserver",
        &bins.kube_apiserver,
        apiserver_args,
        ports.apiserver,
    )?;

    let timeout = b.ready_timeout;
    run_async(wait_apiserver(&cluster, &admin, timeout))?;
    progress.step(&format!(
        "kube-apiserver ready after {:.1?}",
        started.elapsed()
    ));

    let mut kcm_args = vec![
        format!("--kubeconfig={}", p(kcm_kc.clone())),
        format!("--authentication-kubeconfig={}", p(kcm_kc.clone())),
        format!("--authorization-kubeconfig={}", p(kcm_kc)),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={}", ports.controller_manager),
        "--controllers=*".into(),
        "--use-service-account-credentials=true".into(),
        format!("--service-account-private-key-file={}", p(pki.sa_key())),
        format!("--root-ca-file={}", p(pki.ca_crt())),
        // Approved kubernetes.io/kubelet-serving CSRs get signed by the cluster CA.
        format!("--cluster-signing-cert-file={}", p(pki.ca_crt())),
        format!("--cluster-signing-key-file={}", p(pki.ca_key())),
        format!(
            "--node-monitor-period={}ms",
            b.node_monitor_period.as_millis()
        ),
        format!(
            "--node-monitor-grace-period={}ms",
            b.node_monitor_grace_period.as_millis()
        ),
        "--leader-elect=false".into(),
        "--profiling=false".into(),
    ];
    kcm_args.extend(b.controller_manager_args.iter().cloned());
    progress.step("starting kube-controller-manager and kube-scheduler");
    spawn(
        &cluster,
        "kube-controller-manager",
        &bins.kube_controller_manager,
        kcm_args,
        ports.controller_manager,
    )?;
    spawn(
        &cluster,
        "kube-scheduler",
        &bins.kube_scheduler,
        vec![
            format!("--kubeconfig={}", p(sched_kc.clone())),
            format!("--authentication-kubeconfig={}", p(sched_kc.clone())),
            format!("--authorization-kubeconfig={}", p(sched_kc)),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", ports.scheduler),
            "--leader-elect=false".into(),
            "--profiling=false".into(),
        ],
        ports.scheduler,
    )?;

    let token = run_async(async {
        let client = client_from(&admin).await?;
        // The daemon identity does not need the controllers: install it meanwhile.
        let token = identities::install_daemon_identity(&client, DAEMON_TOKEN_SECONDS).await?;
        wait_components(&cluster, &client, &ports, timeout).await?;
        Ok(token)
    })?;
    kubeconfig::write(
        &cluster.daemon_kubeconfig(),
        &url,
        &pki.ca_crt(),
        crate::DAEMON_SERVICE_ACCOUNT,
        Credential::Token(&token),
        Some(crate::DAEMON_NAMESPACE),
    )?;
    // Convenience copies next to the kubeconfigs, for the daemon's flags.
    for f in ["ca.crt", "kubelet-client-ca.crt"] {
        let to = dir.join(f);
        std::fs::copy(pki.dir.join(f), &to).map_err(Error::io("copying", &to))?;
    }
    if let Some(ms) = &bins.metrics_server {
        progress.step(&format!(
            "starting metrics-server on 127.0.0.1:{}",
            ports.metrics_server
        ));
        spawn(
            &cluster,
            "metrics-server",
            ms,
            vec![
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", ports.metrics_server),
                format!("--tls-cert-file={}", p(pki.metrics_server_crt())),
                format!("--tls-private-key-file={}", p(pki.metrics_server_key())),
                // A test harness shortcut: the admin identity instead of metrics-server's RBAC.
                format!("--kubeconfig={}", p(admin.clone())),
                format!("--authentication-kubeconfig={}", p(admin.clone())),
                format!("--authorization-kubeconfig={}", p(admin.clone())),
                "--kubelet-preferred-address-types=InternalIP".into(),
                "--kubelet-use-node-status-port".into(),
                // Nodes (the daemon) serve certificates signed by the cluster CA via CSRs.
                format!("--kubelet-certificate-authority={}", p(pki.ca_crt())),
                "--metric-resolution=15s".into(),
            ],
            ports.metrics_server,
        )?;
        run_async(register_metrics_api(
            &cluster,
            &admin,
            &pki,
            ports.metrics_server,
            timeout,
        ))?;
        progress.step(&format!(
            "metrics.k8s.io available after {:.1?}",
            started.elapsed()
        ));
    }
    cluster.startup = started.elapsed();
    let info = serde_json::json!({
        "release": cluster.release,
        "apiserver": url,
        "ports": ports,
        "pids": cluster.components().iter().map(|(n, pid, _)| (n.clone(), *pid)).collect::<std::collections::BTreeMap<_, _>>(),
    });
    let info_path = dir.join("cluster.json");
    std::fs::write(&info_path, info.to_string()).map_err(Error::io("writing", &info_path))?;
    progress.step(&format!("cluster ready after {:.1?}", cluster.startup));
    Ok(cluster)
}

/// Polls until `check` says ready, failing fast if a component exits.
async fn poll<F, Fut>(
    cluster: &Cluster,
    component: &str,
    timeout: Duration,
    mut check: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        cluster.check_running()?;
        let last = match check().await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            let log = cluster.dir.join("logs").join(format!("{component}.log"));
            return Err(Error::NotReady {
                component: component.to_string(),
                seconds: timeout.as_secs(),
                detail: last,
                tail: crate::logs::tail_file(&log, 25),
                log,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_apiserver(cluster: &Cluster, admin: &Path, timeout: Duration) -> Result<()> {
    let client = client_from(admin).await?;
    poll(cluster, "kube-apiserver", timeout, || async {
        let req = http::Request::get("/readyz")
            .body(vec![])
            .map_err(|e| e.to_string())?;
        client
            .request_text(req)
            .await
            .map(|_| ())
            .map_err(|e| format!("/readyz: {e}"))
    })
    .await
}

async fn wait_components(
    cluster: &Cluster,
    client: &Client,
    ports: &Ports,
    timeout: Duration,
) -> Result<()> {
    // Their serving certificates are self-signed in memory; only liveness is checked here.
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| Error::Other(format!("building an HTTP client: {e}")))?;
    for (name, port) in [
        ("kube-scheduler", ports.scheduler),
        ("kube-controller-manager", ports.controller_manager),
    ] {
        let url = format!("https://127.0.0.1:{port}/healthz");
        poll(cluster, name, timeout, || async {
            let r = http
                .get(&url)
                .send()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            if r.status().is_success() {
                Ok(())
            } else {
                Err(format!("{url}: HTTP {}", r.status()))
            }
        })
        .await?;
    }
    // The serviceaccount controller creating `default` proves the controllers are running.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    poll(cluster, "kube-controller-manager", timeout, || async {
        sas.get("default")
            .await
            .map(|_| ())
            .map_err(|e| format!("ServiceAccount default/default: {e}"))
    })
    .await
}

/// Registers metrics-server as the `v1beta1.metrics.k8s.io` APIService and waits until the
/// aggregator serves it. The Service is an ExternalName `localhost`: the aggregator resolves
/// ExternalName services to that host and the APIService port, so no Endpoints are needed
/// (Kubernetes refuses loopback endpoint addresses, but not this).
async fn register_metrics_api(
    cluster: &Cluster,
    admin: &Path,
    pki: &PkiFiles,
    port: u16,
    timeout: Duration,
) -> Result<()> {
    use base64::Engine;
    let ca = std::fs::read(pki.ca_crt()).map_err(Error::io("reading", pki.ca_crt()))?;
    let manifest = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: metrics-server, namespace: kube-system}}\n\
         spec: {{type: ExternalName, externalName: localhost}}\n---\n\
         apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata: {{name: v1beta1.metrics.k8s.io}}\n\
         spec: {{group: metrics.k8s.io, version: v1beta1, groupPriorityMinimum: 100, versionPriority: 100, \
         caBundle: {}, service: {{name: metrics-server, namespace: kube-system, port: {port}}}}}\n",
        base64::engine::general_purpose::STANDARD.encode(ca)
    );
    let client = client_from(admin).await?;
    identities::apply_text(
        &client,
        &manifest,
        Path::new("<metrics-server registration>"),
    )
    .await?;
    poll(cluster, "metrics-server", timeout, || async {
        let req = http::Request::get("/apis/metrics.k8s.io/v1beta1/nodes")
            .body(vec![])
            .map_err(|e| e.to_string())?;
        client
            .request_text(req)
            .await
            .map(|_| ())
            .map_err(|e| format!("/apis/metrics.k8s.io/v1beta1/nodes: {e}"))
    })
    .await
}
