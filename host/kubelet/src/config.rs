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
/// Flags the daemon is expected to map onto it:
/// - `listen`: `--kubelet-listen` / `KUBELET_PORT` (default `0.0.0.0:10250`)
/// - `node_name`: `--nodename`
/// - `tls`: `--tls-cert-file` + `--tls-private-key-file` ([`TlsSource::Files`]), otherwise
///   [`TlsSource::Bootstrap`] with `--node-ip` / `--node-dns-name` as the CSR's SANs
/// - `client_ca_file`: `--client-ca-file`
/// - `auth`: `--insecure-kubelet-no-auth` ([`AuthMode::InsecureNone`])
/// - `console`: see [`ConsoleConfig`]
/// - `limits`: `--kubelet-max-streams-per-client`, `--kubelet-stream-idle-timeout`
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
    /// PEM files; re-read when they change on disk.
    Files { cert: PathBuf, key: PathBuf },
    /// A `kubernetes.io/kubelet-serving` CSR, approved by someone else, rotated before expiry.
    Bootstrap(CsrBootstrap),
}

/// Settings of the CSR bootstrap.
#[derive(Debug, Clone)]
pub struct CsrBootstrap {
    /// The node's addresses (IP SANs); the API server dials the InternalIP.
    pub ips: Vec<IpAddr>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// How long to wait for approval and issuance before giving up.
    pub approval_timeout: Duration,
    /// Requested lifetime (`spec.expirationSeconds`); `None` = the signer's default.
    pub expiration: Option<Duration>,
    /// Renew when this fraction of the lifetime has passed (the kubelet uses 70–90 %).
    pub renew_at: f64,
    /// Renew when this much validity is left, if that comes before `renew_at` (like
    /// cert-manager's `renewBefore`): short-lived certificates are replaced well ahead of expiry.
    pub renew_before: Option<Duration>,
}

impl Default for CsrBootstrap {
    fn default() -> Self {
        Self {
            ips: Vec::new(),
            dns_names: Vec::new(),
            approval_timeout: Duration::from_secs(15 * 60),
            expiration: None,
            renew_at: 0.8,
            renew_before: None,
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
    /// Accept any key (`--insecure-console-host-key`), as the old provider did.
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
#[derive(Debug, Clone)]
pub struct Limits {
    /// Concurrent streaming requests (exec, follow) per authenticated identity.
    pub max_streams_per_client: usize,
    /// Exec sessions with no traffic either way for this long are closed.
    pub stream_idle_timeout: Duration,
    /// Largest request body or header block accepted.
    pub max_request_bytes: usize,
    /// TLS handshake deadline.
    pub handshake_timeout: Duration,
    /// How long StackPath log follow streams are resumed after StackPath closes them while the
    /// instance is not running before giving up.
    pub log_resume_backoff: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_streams_per_client: 32,
            stream_idle_timeout: Duration::from_secs(4 * 3600),
            max_request_bytes: 64 << 10,
            handshake_timeout: Duration::from_secs(10),
            log_resume_backoff: Duration::from_millis(250),
        }
    }
}
