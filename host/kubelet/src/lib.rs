//! The kubelet HTTPS API of vk-stackpath.
//!
//! kube-apiserver reaches a node's kubelet for `kubectl logs`, `exec`, `top` and friends; this
//! crate is that endpoint for the StackPath virtual node:
//!
//! - [`server`](crate::serve): axum over rustls (ring), client certificates checked against
//!   `--client-ca-file`, bearer tokens through TokenReview, SubjectAccessReview per request on
//!   `nodes/{proxy,log,stats,metrics}` (kubelet semantics and cache lifetimes);
//! - `/containerLogs`: StackPath's instance logs, resumed across StackPath-side cuts;
//! - `/exec`: SPDY/3.1 ([`spdy3`]) and WebSocket, `v5`…`v2.channel.k8s.io`, bridged to the
//!   StackPath container console over SSH ([`console`]);
//! - `/attach`, `/portForward`: a clear "not supported" answer;
//! - `/pods`, `/runningpods/`, `/stats/summary`, `/metrics/resource`: from the daemon's pods
//!   ([`PodLocator`]) and StackPath's metrics;
//! - the serving certificate from files (reloaded when their content changes) or a
//!   `kubernetes.io/kubelet-serving` CSR that is waited for as long as it takes, optionally
//!   approved by the daemon itself ([`approve`]), rotated without dropping connections
//!   ([`bootstrap`]);
//! - limits: connections, streams per node and per pod, header and idle deadlines
//!   ([`Limits`]).
//!
//! [`serve`] runs until shutdown and never gives up on a recoverable problem (a certificate
//! not approved yet, a port taken, a crashed server task): it retries with back-off and says
//! where it stands through [`Health`], which the daemon turns into `/readyz`, gauges and logs.

pub mod approve;
mod auth;
pub mod bootstrap;
mod cert_files;
pub mod config;
pub mod console;
pub mod declared;
mod error;
pub mod exec;
mod health;
pub mod locator;
pub mod logs;
mod node_events;
mod server;
mod state;
pub mod stats;
mod streams;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

pub use auth::{AuthError, UserInfo};
pub use config::{
    AuthMode, CertFiles, ConsoleConfig, CsrBootstrap, DEFAULT_CONSOLE_HOST, DEFAULT_CONSOLE_PORT,
    HostKeyPolicy, KubeletConfig, Limits, TlsSource,
};
pub use console::{CONSOLE_HOST_KEY_CONFIGMAP, ConsoleError, ProbeOutcome};
pub use declared::{DECLARED_FEATURES, declared_features_patch};
pub use error::KubeletError;
pub use health::{Health, HealthState};
pub use locator::{ContainerLocation, LocateError, PodLocator};
pub use node_events::reason as event_reasons;
pub use state::ExecTransports;
pub use tls::CertStore;

use health::Status;

/// What keeps the serving certificate current.
enum Renewal {
    Files { files: CertFiles, digest: [u8; 32] },
    Csr(Arc<bootstrap::Requester>),
}

/// Everything set up once: the certificate, TLS, the handlers' state.
struct Core {
    listen: SocketAddr,
    acceptor: TlsAcceptor,
    store: Arc<CertStore>,
    state: Arc<state::AppState>,
    renewal: Renewal,
    status: Arc<Status>,
    health: Health,
}

impl Core {
    /// Checks the configuration and gets the first certificate (waiting for a CSR as long as
    /// it takes). `Ok(None)` when `shutdown` came first.
    async fn start(
        config: KubeletConfig,
        locator: Arc<dyn PodLocator>,
        stackpath: stackpath_client::Client,
        kube: kube::Client,
        health: Health,
        shutdown: &CancellationToken,
    ) -> Result<Option<Self>, KubeletError> {
        if config.node_name.is_empty() {
            return Err(KubeletError::Config(
                "the node name is empty; pass --nodename".into(),
            ));
        }
        let status = Status::new(health.clone());
        if config.auth == AuthMode::Enabled && config.client_ca_file.is_none() {
            tracing::warn!(
                "no --client-ca-file: only bearer tokens can authenticate to the kubelet API"
            );
        }
        if matches!(config.console.host_key, HostKeyPolicy::InsecureAcceptAny) {
            tracing::warn!(
                console = %format!("{}:{}", config.console.host, config.console.port),
                "--insecure-console-host-key: the container console's SSH host key is not checked, so every kubectl exec sends the StackPath client secret (SP_CLIENT_SECRET) as the SSH password to whichever server answers at this address; pin the key with --console-host-key or --console-known-hosts"
            );
        }
        // Problems of the configuration come out before any waiting.
        let (first, renewal) = match &config.tls {
            TlsSource::Files(files) => {
                let loaded = cert_files::load(files, chrono::Utc::now())?;
                status.cert_valid(loaded.not_after, &cert_files::renew_hint(files));
                (
                    Some(loaded.key),
                    Renewal::Files {
                        files: files.clone(),
                        digest: loaded.digest,
                    },
                )
            }
            TlsSource::Bootstrap(b) => (
                None,
                Renewal::Csr(Arc::new(bootstrap::Requester::new(
                    kube.clone(),
                    &config.node_name,
                    b.clone(),
                    status.clone(),
                )?)),
            ),
        };
        let client_ca = config.client_ca_file.as_deref();
        // The client CA is checked before the wait too: a dummy store stands in until then.
        let key = match (first, &renewal) {
            (Some(k), _) => k,
            (None, Renewal::Csr(r)) => {
                tls::server_config(Arc::new(tls::NoCertYet), client_ca)?;
                let Some(issued) = r.obtain(shutdown).await else {
                    status.stopped();
                    return Ok(None);
                };
                status.cert_valid(issued.not_after, &r.renew_hint());
                issued.key
            }
            (None, Renewal::Files { .. }) => unreachable!("files are loaded above"),
        };
        let store = CertStore::new(key);
        let tls_cfg = tls::server_config(store.clone(), client_ca)?;
        let auth = (config.auth == AuthMode::Enabled)
            .then(|| auth::Auth::new(kube.clone(), config.node_name.clone()));
        let state = Arc::new(state::AppState::new(
            locator,
            stackpath,
            config.console,
            config.limits,
            auth,
            config.node_name,
            shutdown.clone(),
        ));
        Ok(Some(Self {
            listen: config.listen,
            acceptor: TlsAcceptor::from(Arc::new(tls_cfg)),
            store,
            state,
            renewal,
            status,
            health,
        }))
    }

    /// Keeps the certificate current until `shutdown`.
    fn spawn_renewal(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let status = self.status.clone();
        match &self.renewal {
            Renewal::Files { files, digest } => tokio::spawn(cert_files::watch(
                files.clone(),
                *digest,
                store,
                status,
                shutdown,
            )),
            Renewal::Csr(r) => tokio::spawn(bootstrap::rotate(r.clone(), store, status, shutdown)),
        }
    }

    async fn bind(&self) -> Result<(tokio::net::TcpListener, SocketAddr), KubeletError> {
        let bind_err = |source| KubeletError::Bind {
            addr: self.listen,
            source,
        };
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        Ok((listener, addr))
    }

    /// The accept loop, as a task (so that a crash of it is seen, not fatal).
    fn spawn_server(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let app = server::router(self.state.clone());
        let limits = server::ConnLimits::from(&self.state.limits);
        tokio::spawn(server::run(
            listener,
            self.acceptor.clone(),
            app,
            limits,
            shutdown,
        ))
    }
}

/// A bound, not yet running kubelet API (so callers learn the port before serving). Unlike
/// [`serve`], it does not restart a failed listener: for tests and tools.
pub struct KubeletServer {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    core: Core,
}

impl std::fmt::Debug for KubeletServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl KubeletServer {
    /// Loads or bootstraps the serving certificate (waiting for the CSR as long as it takes)
    /// and binds the listener.
    pub async fn bind(
        config: KubeletConfig,
        locator: Arc<dyn PodLocator>,
        stackpath: stackpath_client::Client,
        kube: kube::Client,
    ) -> Result<Self, KubeletError> {
        let shutdown = CancellationToken::new();
        let core = Core::start(config, locator, stackpath, kube, Health::new(), &shutdown)
            .await?
            .ok_or_else(|| KubeletError::Config("shut down during start".into()))?;
        let (listener, addr) = core.bind().await?;
        Ok(Self {
            listener,
            addr,
            core,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The serving certificate holder (to inspect, or to swap in a new certificate).
    pub fn cert_store(&self) -> Arc<CertStore> {
        self.core.store.clone()
    }

    /// Exec sessions served so far, by transport.
    pub fn exec_transports(&self) -> Arc<state::ExecTransports> {
        self.core.state.exec_transports.clone()
    }

    /// Where the server stands.
    pub fn health(&self) -> Health {
        self.core.health.clone()
    }

    /// Serves until `shutdown` completes; then stops accepting, ends open streams, drains.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), KubeletError> {
        let token = self.core.state.shutdown.clone();
        let side = self.core.spawn_renewal(token.clone());
        self.core.status.listening(self.addr);
        tracing::info!(addr = %self.addr, "kubelet API listening");
        let serving = self.core.spawn_server(self.listener, token.clone());
        tokio::pin!(serving);
        tokio::select! {
            _ = &mut serving => {}
            _ = shutdown => {
                token.cancel();
                let _ = serving.await;
            }
        }
        token.cancel();
        let _ = side.await;
        self.core.status.stopped();
        Ok(())
    }
}

/// First wait before the listener is tried again; doubles up to [`RESTART_MAX`].
const RESTART_INITIAL: Duration = Duration::from_secs(1);
const RESTART_MAX: Duration = Duration::from_secs(60);

/// Serves the kubelet API until `shutdown` completes, keeping `health` up to date.
///
/// Returns an error only for a configuration that cannot work (an empty node name, serving
/// certificate files that are missing, unreadable, expired or not matching their key, a bad
/// client CA bundle, a CSR setting that cannot make a request), before serving. Everything
/// else is retried with back-off for as long as it takes: a CSR not approved yet or denied,
/// a port that cannot be bound, a crash of the server task.
pub async fn serve(
    config: KubeletConfig,
    locator: Arc<dyn PodLocator>,
    stackpath: stackpath_client::Client,
    kube: kube::Client,
    health: Health,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), KubeletError> {
    let token = CancellationToken::new();
    let work = supervise(
        config,
        locator,
        stackpath,
        kube,
        health.clone(),
        token.clone(),
    );
    tokio::pin!(work);
    let r = tokio::select! {
        r = &mut work => r,
        _ = shutdown => {
            token.cancel();
            work.await
        }
    };
    if let Err(e) = &r {
        health.set(HealthState::Misconfigured {
            error: e.to_string(),
        });
    }
    r
}

async fn supervise(
    config: KubeletConfig,
    locator: Arc<dyn PodLocator>,
    stackpath: stackpath_client::Client,
    kube: kube::Client,
    health: Health,
    shutdown: CancellationToken,
) -> Result<(), KubeletError> {
    let Some(core) = Core::start(config, locator, stackpath, kube, health, &shutdown).await? else {
        return Ok(());
    };
    let side = core.spawn_renewal(shutdown.clone());
    let mut backoff = RESTART_INITIAL;
    while !shutdown.is_cancelled() {
        let problem = match core.bind().await {
            Err(e) => e.to_string(),
            Ok((listener, addr)) => {
                core.status.listening(addr);
                tracing::info!(%addr, "kubelet API listening");
                let started = tokio::time::Instant::now();
                let ended = core.spawn_server(listener, shutdown.clone()).await;
                if shutdown.is_cancelled() {
                    break;
                }
                if started.elapsed() > RESTART_MAX {
                    backoff = RESTART_INITIAL;
                }
                match ended {
                    Err(e) if e.is_panic() => format!("the kubelet API server task crashed: {e}"),
                    _ => "the kubelet API server task stopped unexpectedly".to_owned(),
                }
            }
        };
        let retry_at = chrono::Utc::now() + chrono::Duration::from_std(backoff).unwrap_or_default();
        tracing::error!(error = %problem, retry_in = ?backoff, "the kubelet API is not serving (kubectl logs, exec and top fail); trying again");
        core.status.listen_failed(problem, retry_at);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(RESTART_MAX);
    }
    let _ = side.await;
    core.status.stopped();
    Ok(())
}
