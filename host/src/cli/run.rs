//! `vk-stackpath run`: flags and environment (compatible with the Go provider), validated all
//! at once, then the daemon.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use vk_stackpath::config::{self, ProcessEnv, StackPathSettings};
use vk_stackpath::daemon::{self, CityNode, DaemonConfig};
use vk_stackpath::leader::Election;
use vk_stackpath::node::NodeSettings;
use vk_stackpath::pods::Timing;
use vk_stackpath::pods::decide::DaemonSetPods;

use super::{PolicyArgs, parse_duration};

#[derive(Args)]
#[command(after_help = "Environment (as the Go provider read it):\n  \
  SP_STACK_ID, SP_CLIENT_ID, SP_CLIENT_SECRET, SP_CITY_CODE   StackPath credentials and city (required;\n                     several cities comma-separated, DFW,LAX: one node each)\n  \
  SP_API_HOST        API host [default: gateway.stackpath.com]\n  \
  SP_CONFIG_LOCATION a YAML file with the same keys in lower case; the variables override it\n  \
  SP_CA_FILE         extra CA certificates (PEM) trusted for the API\n  \
  KUBELET_PORT       port of the kubelet API [default: 10250]; with several cities, the first\n                     city's, the next ones' counting up from it\n  \
  VKUBELET_POD_IP    the node's InternalIP (the daemon pod's IP)\n  \
  KUBECONFIG         when not running in a cluster\n\n\
Examples:\n  \
  SP_STACK_ID=my-stack SP_CLIENT_ID=… SP_CLIENT_SECRET=… SP_CITY_CODE=DFW vk-stackpath run\n  \
  vk-stackpath run --city-code DFW --city-code LAX --nodename 'edge-{city}'\n  \
  vk-stackpath run --kubeconfig ~/.kube/config --policy /etc/vk-stackpath/policy.wasm --leader-elect")]
pub struct RunArgs {
    /// kubeconfig file; in-cluster configuration or $KUBECONFIG when absent.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Node name, one per city: `{city}` is replaced by the lower-case city code; a name
    /// without it gets `-<city>` appended, as the Go provider did (`edge` → `edge-dfw`),
    /// unless it already ends so [default: stackpath-edge-provider-{city}].
    #[arg(long)]
    nodename: Option<String>,
    /// A StackPath city to serve, one node each (repeatable; replaces SP_CITY_CODE, which
    /// takes the same as a comma-separated list). All cities share the token, the rate limit
    /// (taking turns once it is spent), the console settings and the policy.
    #[arg(long = "city-code", value_name = "CITY")]
    city_codes: Vec<String>,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Policy calls that run at once (more wait). Each may use up to --policy-memory-mib, so
    /// keep concurrency × memory within the container's memory limit with room for the daemon
    /// (~150 MiB at 10,000 pods): the default 2 × 128 MiB leaves half of the shipped 512Mi.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    policy_concurrency: u32,
    /// Pods reconciled at once.
    #[arg(long, default_value_t = 32)]
    pod_sync_workers: u16,
    /// Serve /metrics, /healthz and /readyz here; `off` to disable.
    #[arg(long, default_value = "0.0.0.0:9090")]
    metrics_addr: String,
    /// Port of the kubelet API declared in the Node; with several cities, the first city's,
    /// and each next city's one more (one listener and serving certificate per node).
    #[arg(long, env = "KUBELET_PORT", default_value_t = 10250)]
    kubelet_port: u16,
    /// The node's InternalIP.
    #[arg(long, env = "VKUBELET_POD_IP")]
    node_ip: Option<String>,
    /// Do not taint the node (ordinary pods could then be scheduled to StackPath).
    #[arg(long)]
    disable_taint: bool,
    /// Effect of the node's `virtual-kubelet.io/provider=stackpath` taint.
    #[arg(long, default_value = "NoSchedule", value_parser = ["NoSchedule", "PreferNoSchedule", "NoExecute"])]
    taint_effect: String,
    /// Extra node labels, `key=value` (repeatable).
    #[arg(long = "node-label", value_parser = parse_label)]
    node_labels: Vec<(String, String)>,
    /// Node capacity: CPU.
    #[arg(long, default_value = "10000")]
    node_cpu: String,
    /// Node capacity: memory.
    #[arg(long, default_value = "1Ti")]
    node_memory: String,
    /// Node capacity: pods.
    #[arg(long, default_value = "1000")]
    node_pods: String,
    /// Node capacity: ephemeral storage.
    #[arg(long, default_value = "1Ti")]
    node_storage: String,
    /// Poll StackPath this often while a pod is changing.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    status_fast_interval: Duration,
    /// Poll StackPath this often once a pod is settled (Running and ready, or finished): the
    /// longest a change made at StackPath alone (a crash, a restart) takes to show. The
    /// steady-state cost is one call per pod per interval.
    #[arg(long, default_value = "75s", value_parser = parse_duration)]
    status_settled_interval: Duration,
    /// Longest poll interval of a running pod that runs to completion (restartPolicy Never or
    /// OnFailure, e.g. a Job's): how late its end is noticed. StackPath restarts containers
    /// that exit, so a shorter interval makes a second run of a finished container less likely;
    /// each such pod costs one call per interval while it runs.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    status_completion_interval: Duration,
    /// DaemonSet pods: `skip` leaves them Pending with a condition and an Event saying why (a
    /// DaemonSet tolerating every taint would otherwise get one paid workload per virtual
    /// node); `run` runs them like any pod.
    #[arg(long, default_value = "skip", value_parser = ["skip", "run"])]
    daemonset_pods: String,
    /// PersistentVolumeClaims of StorageClasses with provisioner
    /// `virtual-kubelet.storage.compute.edgeengine.io` (deploy/ ships `stackpath-edge`):
    /// `provision` gives a claim the scheduler selected for this node a volume, which the
    /// pod's workload gets as a StackPath volume; `off` leaves such claims unbound (needs no
    /// PersistentVolume RBAC).
    #[arg(long, default_value = "provision", value_parser = ["provision", "off"])]
    volume_claims: String,
    /// How long a workload whose pod is gone is kept before it is deleted.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    orphan_grace: Duration,
    /// StackPath requests per second (client-side rate limit shared by all pods; StackPath's
    /// own 429 answers are honoured on top). A new pod costs about two calls (create, first
    /// status), so 1,000 pods at once need ~70/s to run within 30 s.
    #[arg(long, default_value_t = 100.0)]
    stackpath_qps: f64,
    /// StackPath request burst.
    #[arg(long, default_value_t = 200)]
    stackpath_burst: u32,
    /// Elect a leader on a Lease so that only one replica acts.
    #[arg(long)]
    leader_elect: bool,
    /// Namespace of the leader election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "vk-stackpath")]
    leader_elect_namespace: String,
    /// This replica's identity in the election [default: $POD_NAME or the host name].
    #[arg(long, env = "POD_NAME")]
    leader_elect_identity: Option<String>,
    /// Address the kubelet API listens on (its port is KUBELET_PORT) [default: the node's
    /// InternalIP when VKUBELET_POD_IP/--node-ip is set, the one address the API server dials;
    /// else 0.0.0.0].
    #[arg(long)]
    kubelet_address: Option<std::net::IpAddr>,
    /// Serving certificate of the kubelet API (PEM), e.g. from cert-manager; read again when
    /// its content changes (a bad replacement is logged and the current one kept). Without
    /// it, one is requested through a `kubernetes.io/kubelet-serving` CertificateSigningRequest,
    /// waited for until someone approves it (see --approve-own-serving-csr), and rotated
    /// before expiry.
    #[arg(
        long,
        env = "APISERVER_CERT_LOCATION",
        requires = "tls_private_key_file"
    )]
    tls_cert_file: Option<PathBuf>,
    /// Key of --tls-cert-file (PEM).
    #[arg(long, env = "APISERVER_KEY_LOCATION", requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
    /// Approve this daemon's own kubelet-serving CSR after checking that it is exactly its
    /// own (requester, node name, addresses, usages, key). Needs `update` on
    /// certificatesigningrequests/approval and `approve` on signers
    /// `kubernetes.io/kubelet-serving`.
    #[arg(long, conflicts_with = "tls_cert_file")]
    approve_own_serving_csr: bool,
    /// CA bundle of the API server's kubelet client certificate (client certificate auth).
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
    /// Extra DNS names in the serving certificate request.
    #[arg(long = "node-dns-name")]
    node_dns_names: Vec<String>,
    /// Accept every caller of the kubelet API without authentication or authorization.
    #[arg(long)]
    insecure_kubelet_no_auth: bool,
    /// StackPath container console host (exec).
    #[arg(long, default_value = vk_kubelet::DEFAULT_CONSOLE_HOST)]
    console_host: String,
    /// StackPath container console port.
    #[arg(long, default_value_t = vk_kubelet::DEFAULT_CONSOLE_PORT)]
    console_port: u16,
    /// The console's SSH host key, pinned: an OpenSSH public key line or a SHA256:
    /// fingerprint (repeatable).
    #[arg(long = "console-host-key")]
    console_host_keys: Vec<String>,
    /// A known_hosts file holding the console's host key [default: ~/.ssh/known_hosts when
    /// no key is pinned].
    #[arg(long)]
    console_known_hosts: Option<PathBuf>,
    /// Do not check the console's SSH host key (as the Go provider did). INSECURE: every
    /// kubectl exec then sends the StackPath client secret (SP_CLIENT_SECRET, the console's
    /// SSH password) to whichever server answers at --console-host, and its sessions can be
    /// read and changed by anyone in between.
    #[arg(long)]
    insecure_console_host_key: bool,
    /// Deadline of each step of an exec's console set-up (connect, SSH handshake, login,
    /// starting the command); a running session is closed after three unanswered keepalives
    /// sent this far apart.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    console_timeout: Duration,
    /// Most connections the kubelet API holds open (exec sessions included); more are refused
    /// at once, leaving the open ones alone.
    #[arg(long, default_value_t = vk_kubelet::Limits::default().max_connections)]
    kubelet_max_connections: usize,
    /// Most exec and `logs -f` streams at once on the node.
    #[arg(long, default_value_t = vk_kubelet::Limits::default().max_streams)]
    kubelet_max_streams: usize,
    /// Most exec and `logs -f` streams at once to one pod.
    #[arg(long, default_value_t = vk_kubelet::Limits::default().max_streams_per_pod)]
    kubelet_max_streams_per_pod: usize,
    /// Time a client has from the first byte of a request to the end of its headers.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    kubelet_header_timeout: Duration,
    /// A kubelet API connection with no request for this long is closed.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    kubelet_idle_timeout: Duration,
    /// An exec session with no input or output for this long is closed.
    #[arg(long, default_value = "240m", value_parser = parse_duration)]
    kubelet_stream_idle_timeout: Duration,
    /// A standby takes over when it has seen no renewal of the lease for this long (measured
    /// on its own clock).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    leader_elect_lease_duration: Duration,
    /// The leader stops acting when it could not renew the lease for this long (the API
    /// server unreachable); it resumes when it can renew again. Shorter than the lease
    /// duration, so a standby never acts while the old leader still does.
    #[arg(long, default_value = "7s", value_parser = parse_duration)]
    leader_elect_renew_deadline: Duration,
    /// How often the leader renews and a standby tries to acquire.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    leader_elect_retry_period: Duration,
    #[command(flatten)]
    config_volumes: ConfigVolumeArgs,
}

/// How config volumes reach the containers; shared by `run` and `translate`.
#[derive(Args, Clone)]
pub struct ConfigVolumeArgs {
    /// configMap, secret, downwardAPI, projected and emptyDir volumes (StackPath has none):
    /// `materialize` writes each into a volume claim of its own, from an init container that
    /// runs before the pod's containers; `skip` leaves them and their mounts out, with a
    /// warning.
    #[arg(long, default_value = "materialize", value_parser = ["materialize", "skip"])]
    config_volumes: String,
    /// The image of the init container that writes config volumes; it needs `/bin/sh` and
    /// `base64`.
    #[arg(long, default_value = vk_stackpath::materialize::DEFAULT_IMAGE)]
    config_volume_image: String,
}

impl ConfigVolumeArgs {
    pub fn settings(&self) -> Result<vk_stackpath::materialize::ConfigVolumes, String> {
        config::config_volumes(&self.config_volumes, &self.config_volume_image)
    }
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` is not key=value"))
}

fn identity() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| format!("vk-stackpath-{}", std::process::id()))
}

impl RunArgs {
    fn config(&self) -> Result<DaemonConfig, String> {
        let mut problems = Vec::new();
        let env = config::Overridden {
            base: &ProcessEnv,
            vars: (!self.city_codes.is_empty())
                .then(|| ("SP_CITY_CODE".to_owned(), self.city_codes.join(",")))
                .into_iter()
                .collect(),
        };
        let stackpath = match StackPathSettings::load(&env) {
            Ok(s) => Some(s),
            Err(e) => {
                problems.extend(e.0);
                None
            }
        };
        let node_ip = match config::parse_pod_ip(self.node_ip.as_deref()) {
            Ok(ip) => ip,
            Err(e) => {
                problems.push(e);
                None
            }
        };
        let metrics_addr = match self.metrics_addr.as_str() {
            "off" | "" => None,
            a => match a.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    problems.push(format!(
                        "--metrics-addr `{a}` is not host:port (e.g. 0.0.0.0:9090) or `off`"
                    ));
                    None
                }
            },
        };
        for (flag, v) in [
            ("--kubelet-max-connections", self.kubelet_max_connections),
            ("--kubelet-max-streams", self.kubelet_max_streams),
            (
                "--kubelet-max-streams-per-pod",
                self.kubelet_max_streams_per_pod,
            ),
        ] {
            if v == 0 {
                problems.push(format!("{flag} must be at least 1"));
            }
        }
        for (flag, v) in [
            ("--kubelet-header-timeout", self.kubelet_header_timeout),
            ("--kubelet-idle-timeout", self.kubelet_idle_timeout),
            (
                "--kubelet-stream-idle-timeout",
                self.kubelet_stream_idle_timeout,
            ),
            ("--console-timeout", self.console_timeout),
        ] {
            if v.is_zero() {
                problems.push(format!("{flag} must be above 0"));
            }
        }
        let config_volumes = match self.config_volumes.settings() {
            Ok(c) => Some(c),
            Err(e) => {
                problems.push(e);
                None
            }
        };
        if self.pod_sync_workers == 0 {
            problems.push("--pod-sync-workers must be at least 1".into());
        }
        if self.stackpath_qps.is_nan() || self.stackpath_qps <= 0.0 {
            problems.push("--stackpath-qps must be above 0".into());
        }
        if self.status_fast_interval.is_zero()
            || self.status_settled_interval < self.status_fast_interval
        {
            problems.push(
                "--status-fast-interval must be above 0 and at most --status-settled-interval"
                    .into(),
            );
        }
        let Some(stackpath) = stackpath.filter(|_| problems.is_empty()) else {
            return Err(config::SettingsError(problems).to_string());
        };
        let internal_ip = match node_ip {
            Some(ip) => ip.to_string(),
            None => {
                tracing::warn!(
                    "VKUBELET_POD_IP is not set; declaring 127.0.0.1 as the node's InternalIP (the API server reaches `kubectl logs`/`exec` there)"
                );
                "127.0.0.1".into()
            }
        };
        let cities = self.cities(&stackpath, &internal_ip, node_ip)?;
        // One Lease for the daemon's set of cities, named after the node of the first city
        // in alphabetical order, so replicas given the same cities in any order share it.
        let lease_node = cities
            .iter()
            .min_by(|a, b| a.node.city_code.cmp(&b.node.city_code))
            .map(|c| c.node.name.clone())
            .unwrap_or_default();
        let election = self.leader_elect.then(|| Election {
            namespace: self.leader_elect_namespace.clone(),
            name: format!("vk-stackpath-{lease_node}"),
            identity: self.leader_elect_identity.clone().unwrap_or_else(identity),
            lease_duration: self.leader_elect_lease_duration,
            renew_deadline: self.leader_elect_renew_deadline,
            retry_period: self.leader_elect_retry_period,
        });
        if let Some(Err(e)) = election.as_ref().map(Election::check) {
            return Err(config::SettingsError(vec![e]).to_string());
        }
        let mut limits = self.policy.limits();
        limits.max_concurrent = self.policy_concurrency;
        Ok(DaemonConfig {
            stackpath,
            cities,
            policy_path: self.policy.policy.clone(),
            limits,
            workers: self.pod_sync_workers,
            timing: Timing {
                fast: self.status_fast_interval,
                settled: self.status_settled_interval,
                orphan_grace: self.orphan_grace,
                sweep_interval: self
                    .orphan_grace
                    .clamp(Duration::from_secs(5), Duration::from_secs(60)),
                completion: self.status_completion_interval,
            },
            daemonset_pods: match self.daemonset_pods.as_str() {
                "run" => DaemonSetPods::Run,
                _ => DaemonSetPods::Skip,
            },
            provision_volumes: self.volume_claims == "provision",
            metrics_addr,
            election,
            rate_limit: stackpath_client::RateLimit {
                per_second: self.stackpath_qps,
                burst: self.stackpath_burst.max(1),
            },
            policy_reload: Duration::from_secs(10),
            config_volumes: config_volumes.unwrap_or_default(),
        })
    }
}

impl RunArgs {
    /// Each city's node and kubelet API: the node name from the --nodename template, the
    /// kubelet port counting up from KUBELET_PORT, a serving certificate per node.
    fn cities(
        &self,
        stackpath: &StackPathSettings,
        internal_ip: &str,
        node_ip: Option<std::net::IpAddr>,
    ) -> Result<Vec<CityNode>, String> {
        let mut problems = Vec::new();
        let mut cities: Vec<CityNode> = Vec::new();
        for (i, city) in stackpath.city_codes.iter().enumerate() {
            let name = config::node_name(self.nodename.as_deref(), city);
            if let Err(e) = config::check_node_name(&name) {
                problems.push(format!("city {city}: {e}"));
            }
            if cities.iter().any(|c| c.node.name == name) {
                problems.push(format!(
                    "--nodename `{}` gives cities the same node name `{name}`: put {{city}} in it",
                    self.nodename.as_deref().unwrap_or_default()
                ));
            }
            let Some(port) = u16::try_from(i)
                .ok()
                .and_then(|i| self.kubelet_port.checked_add(i))
            else {
                problems.push(format!(
                    "KUBELET_PORT {} leaves no port for city {city} (one port per city, counting up)",
                    self.kubelet_port
                ));
                continue;
            };
            cities.push(self.city(stackpath, city, name, port, internal_ip, node_ip));
        }
        if problems.is_empty() {
            Ok(cities)
        } else {
            Err(config::SettingsError(problems).to_string())
        }
    }

    fn city(
        &self,
        stackpath: &StackPathSettings,
        city: &str,
        name: String,
        port: u16,
        internal_ip: &str,
        node_ip: Option<std::net::IpAddr>,
    ) -> CityNode {
        let node = NodeSettings {
            name: name.clone(),
            city_code: city.to_owned(),
            // Read from StackPath's location at start.
            region: None,
            internal_ip: internal_ip.to_owned(),
            kubelet_port: port,
            cpu: self.node_cpu.clone(),
            memory: self.node_memory.clone(),
            pods: self.node_pods.clone(),
            storage: self.node_storage.clone(),
            taint: (!self.disable_taint).then(|| NodeSettings::default_taint(&self.taint_effect)),
            kubelet_version: format!("v{}", vk_stackpath::VERSION),
            extra_labels: self.node_labels.iter().cloned().collect::<BTreeMap<_, _>>(),
        };
        let host_key = if self.insecure_console_host_key {
            vk_kubelet::HostKeyPolicy::InsecureAcceptAny
        } else if !self.console_host_keys.is_empty() {
            vk_kubelet::HostKeyPolicy::Pinned(self.console_host_keys.clone())
        } else {
            vk_kubelet::HostKeyPolicy::KnownHosts(self.console_known_hosts.clone().unwrap_or_else(
                || {
                    std::env::var_os("HOME")
                        .map(PathBuf::from)
                        .unwrap_or_default()
                        .join(".ssh/known_hosts")
                },
            ))
        };
        let tls = match (&self.tls_cert_file, &self.tls_private_key_file) {
            (Some(cert), Some(key)) => {
                vk_kubelet::TlsSource::Files(vk_kubelet::CertFiles::new(cert, key))
            }
            _ => vk_kubelet::TlsSource::Bootstrap(vk_kubelet::CsrBootstrap {
                ips: node.internal_ip.parse().into_iter().collect(),
                dns_names: std::iter::once(name.clone())
                    .chain(self.node_dns_names.iter().cloned())
                    .collect(),
                approve_own: self.approve_own_serving_csr,
                ..vk_kubelet::CsrBootstrap::default()
            }),
        };
        let kubelet = vk_kubelet::KubeletConfig {
            listen: SocketAddr::new(
                self.kubelet_address
                    .or(node_ip)
                    .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()),
                port,
            ),
            node_name: name.clone(),
            tls,
            client_ca_file: self.client_ca_file.clone(),
            auth: if self.insecure_kubelet_no_auth {
                vk_kubelet::AuthMode::InsecureNone
            } else {
                vk_kubelet::AuthMode::Enabled
            },
            console: vk_kubelet::ConsoleConfig {
                host: self.console_host.clone(),
                port: self.console_port,
                stack_id: stackpath.stack_id.clone(),
                client_id: stackpath.client_id.clone(),
                client_secret: stackpath.client_secret.clone(),
                host_key,
                connect_timeout: self.console_timeout,
            },
            limits: vk_kubelet::Limits {
                max_connections: self.kubelet_max_connections,
                max_streams: self.kubelet_max_streams,
                max_streams_per_pod: self.kubelet_max_streams_per_pod,
                header_timeout: self.kubelet_header_timeout,
                idle_timeout: self.kubelet_idle_timeout,
                stream_idle_timeout: self.kubelet_stream_idle_timeout,
                ..vk_kubelet::Limits::default()
            },
        };
        CityNode { node, kubelet }
    }
}

pub(super) async fn kube_client(path: Option<&PathBuf>) -> Result<kube::Client, String> {
    let config = match path {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p)
                .map_err(|e| format!("--kubeconfig `{}`: {e}", p.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| format!("--kubeconfig `{}`: {e}", p.display()))?
        }
        None => kube::Config::infer().await.map_err(|e| {
            format!("no Kubernetes configuration: not in a cluster and no usable $KUBECONFIG or ~/.kube/config ({e}); pass --kubeconfig")
        })?,
    };
    kube::Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
}

pub fn run(args: RunArgs) -> Result<ExitCode, String> {
    let config = args.config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let kube = kube_client(args.kubeconfig.as_ref()).await?;
        daemon::run(config, kube, shutdown_signal())
            .await
            .map_err(|e| e.to_string())?;
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};

    fn run_args(flags: &[&str]) -> Result<super::RunArgs, clap::Error> {
        let argv = ["vk-stackpath", "run"].iter().chain(flags);
        match Cli::try_parse_from(argv)?.command {
            Command::Run(args) => Ok(*args),
            _ => unreachable!("parsed `run`"),
        }
    }

    #[test]
    fn policy_concurrency_and_trusted_precompiled_reach_the_limits() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let args = run_args(&[
            "--policy-concurrency",
            "3",
            "--precompiled-policy-sha256",
            &a,
            "--precompiled-policy-sha256",
            &b,
        ])
        .unwrap();
        assert_eq!(args.policy_concurrency, 3);
        // Repeatable even though `run` lets a single-valued flag given twice take the last.
        let trusted: Vec<String> = args
            .policy
            .limits()
            .trusted_precompiled
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(trusted, [a, b]);
        assert_eq!(run_args(&[]).unwrap().policy_concurrency, 2);
        assert!(run_args(&["--policy-concurrency", "0"]).is_err());
    }
}
