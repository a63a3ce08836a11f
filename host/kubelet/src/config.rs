//! What the kubelet API is told. The daemon's CLI fills these (flag names in the docs).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use stackpath_client::Secret;

/// Default console endpoint of StackPath's container console.
pub const DEFAULT_CONSOLE_HOST: &str = "container-console.edgeengine.io";
pub const DEFAULT_CONSOLE_PORT: u16 = 9600;

/// Everything [`crate::serve`] needs.
///
/// Flags the daemon maps onto it:
/// - `listen`: `--kubelet-address` and `KUBELET_PORT` (default `0.0.0.0:10250`)
/// - `node_name`: `--nodename`
/// - `tls`: `--tls-cert-file` + `--tls-private-key-file` ([`TlsSource::Files`]), otherwise
///   [`TlsSource::Bootstrap`] with `--node-ip` / `--node-dns-name` as the CSR's SANs and
///   `--approve-own-serving-csr`
/// - `client_ca_file`: `--client-ca-file`
/// - `auth`: `--insecure-kubelet-no-auth` ([`AuthMode::InsecureNone`])
/// - `console`: see [`ConsoleConfig`]
/// - `limits`: see [`Limits`]
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub listen: SocketAddr,
    /// This node's name (the `name` of every SubjectAccessReview, the CSR's CN).
    pub node_name: String,
    pub tls: TlsSource,
    /// CA bundle that signs the API server's kubelet client certificate. Without it, only
    /// bearer tokens authenticate.
    pub client_ca_file: Option<PathBuf>,
    pub auth: AuthMode,
    pub console: ConsoleConfig,
    pub limits: Limits,
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// PEM files (cert-manager, a Secret); re-read when their content changes.
    Files(CertFiles),
    /// A `kubernetes.io/kubelet-serving` CSR, rotated before expiry.
    Bootstrap(CsrBootstrap),
}

/// Serving certificate files (`--tls-cert-file`, `--tls-private-key-file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// How often the files are read again. Their content is compared, not their times: a
    /// mounted Secret changes by a symlink swap that leaves the paths' own times alone.
    pub check_every: Duration,
}

impl CertFiles {
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            check_every: Duration::from_secs(10),
        }
    }
}

/// Settings of the CSR bootstrap.
#[derive(Debug, Clone)]
pub struct CsrBootstrap {
    /// The node's addresses (IP SANs); the API server dials the InternalIP.
    pub ips: Vec<IpAddr>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// Requested lifetime (`spec.expirationSeconds`); `None` = the signer's default.
    pub expiration: Option<Duration>,
    /// Renew when this fraction of the lifetime has passed (the kubelet uses 70–90 %).
    pub renew_at: f64,
    /// Renew when this much validity is left, if that comes before `renew_at` (like
    /// cert-manager's `renewBefore`): short-lived certificates are replaced well ahead of expiry.
    pub renew_before: Option<Duration>,
    /// Approve this daemon's own CSR (`--approve-own-serving-csr`) after checking it is ours.
    pub approve_own: bool,
    /// First wait before filing a new CSR after a denied, failed or vanished one (or an API
    /// error); doubles up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// How often "still waiting for approval" is logged.
    pub remind_every: Duration,
}

impl Default for CsrBootstrap {
    fn default() -> Self {
        Self {
            ips: Vec::new(),
            dns_names: Vec::new(),
            expiration: None,
            renew_at: 0.8,
            renew_before: None,
            approve_own: false,
            retry_initial: Duration::from_secs(10),
            retry_max: Duration::from_secs(5 * 60),
            remind_every: Duration::from_secs(60),
        }
    }
}

/// Authentication and authorization of callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// As the kubelet: client certificates or TokenReview, then SubjectAccessReview.
    #[default]
    Enabled,
    /// Everyone may do everything. Only for local experiments (`--insecure-kubelet-no-auth`).
    InsecureNone,
}

/// How the console's SSH host key is checked.
#[derive(Debug, Clone)]
pub enum HostKeyPolicy {
    /// OpenSSH public key lines (`ssh-ed25519 AAAA…`) or `SHA256:…` fingerprints
    /// (`--console-host-key`, repeatable).
    Pinned(Vec<String>),
    /// A known_hosts file (`--console-known-hosts`), looked up by console host and port.
    KnownHosts(PathBuf),
    /// Accept any key (`--insecure-console-host-key`), as the old provider did: the StackPath
    /// client secret, which is the console's SSH password, then goes to whichever server
    /// answers.
    InsecureAcceptAny,
}

/// The StackPath container console (SSH).
///
/// Flags: `--console-host`, `--console-port`, `--console-host-key`, `--console-known-hosts`,
/// `--insecure-console-host-key`; stack id, client id and secret are the API credentials.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    pub host: String,
    pub port: u16,
    pub stack_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub host_key: HostKeyPolicy,
    /// Deadline of each step of a session's set-up (TCP connect, SSH handshake, login, starting
    /// the command); also the keepalive interval of a running session, which is closed after
    /// three unanswered keepalives (`--console-timeout`).
    pub connect_timeout: Duration,
}

impl ConsoleConfig {
    /// The console user name for a container.
    pub fn user(&self, instance: &str, container: &str) -> String {
        format!(
            "{}.{}.{}.{}",
            self.stack_id, instance, container, self.client_id
        )
    }
}

/// Resource limits of the kubelet API.
///
/// The defaults are for a node of a few thousand pods, where the callers are the API server
/// (one connection per `exec` or `logs -f`, plus a pool of idle keep-alive connections for
/// everything else), metrics-server and Prometheus.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections at once, upgraded exec sessions included (`--kubelet-max-connections`,
    /// 4096). One over the cap is closed at once, before its TLS handshake: established
    /// connections keep working. The cap leaves room for `max_streams` streams plus the API
    /// server's keep-alive pool; 4096 connections and as many upstream StackPath connections
    /// stay well below the usual open-file limit.
    pub max_connections: usize,
    /// Streaming requests (exec, `logs -f`) at once on the whole node (`--kubelet-max-streams`,
    /// 2048: two per pod at the default `--node-pods` 1000, for a log shipper following every
    /// pod plus people's sessions). An idle stream costs about 100 KiB (TLS and HTTP buffers,
    /// the StackPath connection), a busy one up to 300 KiB: 2048 of them fit in about 600 MiB.
    pub max_streams: usize,
    /// Streaming requests at once to one pod (`--kubelet-max-streams-per-pod`, 16): enough for
    /// several people following every container, while one runaway client can hold at most
    /// 1/128 of the node's streams. Every proxied request arrives as the API server's own
    /// identity, so a limit per caller would be one limit for everyone.
    pub max_streams_per_pod: usize,
    /// Exec sessions with no traffic either way for this long are closed
    /// (`--kubelet-stream-idle-timeout`, 4 h as the kubelet's).
    pub stream_idle_timeout: Duration,
    /// Time from the first byte of a request to the end of its headers
    /// (`--kubelet-header-timeout`, 10 s): a client that trickles its headers (slowloris) is
    /// cut off.
    pub header_timeout: Duration,
    /// A connection with no request in flight and no bytes for this long is closed
    /// (`--kubelet-idle-timeout`, 120 s: longer than the 90 s after which the API server's
    /// client drops idle connections itself, so it never reuses one closed under it).
    pub idle_timeout: Duration,
    /// Largest request body or header block accepted.
    pub max_request_bytes: usize,
    /// TLS handshake deadline.
    pub handshake_timeout: Duration,
    /// How long StackPath log follow streams are resumed after StackPath closes them while the
    /// instance is not running before giving up.
    pub log_resume_backoff: Duration,
    /// StackPath's metrics are fetched at most once per this window (one stack-wide call),
    /// shared by `/stats/summary` and `/metrics/resource`. StackPath's samples are a minute
    /// apart; metrics-server scrapes every 15 s.
    pub metrics_window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_streams: 2048,
            max_streams_per_pod: 16,
            stream_idle_timeout: Duration::from_secs(4 * 3600),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_request_bytes: 64 << 10,
            handshake_timeout: Duration::from_secs(10),
            log_resume_backoff: Duration::from_millis(250),
            metrics_window: Duration::from_secs(10),
        }
    }
}
