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
//! - the serving certificate from files or a `kubernetes.io/kubelet-serving` CSR, rotated
//!   without dropping connections ([`bootstrap`]).

mod auth;
pub mod bootstrap;
pub mod config;
pub mod console;
pub mod declared;
mod error;
pub mod exec;
pub mod locator;
pub mod logs;
mod server;
mod state;
pub mod stats;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

pub use auth::{AuthError, UserInfo};
pub use config::{
    AuthMode, ConsoleConfig, CsrBootstrap, DEFAULT_CONSOLE_HOST, DEFAULT_CONSOLE_PORT,
    HostKeyPolicy, KubeletConfig, Limits, TlsSource,
};
pub use declared::{DECLARED_FEATURES, declared_features_patch};
pub use error::KubeletError;
pub use locator::{ContainerLocation, LocateError, PodLocator};
pub use state::ExecTransports;
pub use tls::CertStore;

/// A bound, not yet running kubelet API (so callers learn the port before serving).
pub struct KubeletServer {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    acceptor: TlsAcceptor,
    store: Arc<CertStore>,
    state: Arc<state::AppState>,
    rotation: Option<(kube::Client, CsrBootstrap)>,
    file_reload: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl std::fmt::Debug for KubeletServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl KubeletServer {
    /// Loads or bootstraps the serving certificate and binds the listener.
    pub async fn bind(
        config: KubeletConfig,
        locator: Arc<dyn PodLocator>,
        stackpath: stackpath_client::Client,
        kube: kube::Client,
    ) -> Result<Self, KubeletError> {
        if config.node_name.is_empty() {
            return Err(KubeletError::Config(
                "the node name is empty; pass --nodename".into(),
            ));
        }
        let (key, rotation, file_reload) = match &config.tls {
            TlsSource::Files { cert, key } => (
                tls::certified_key_from_files(cert, key)?,
                None,
                Some((cert.clone(), key.clone())),
            ),
            TlsSource::Bootstrap(b) => (
                bootstrap::request_certificate(&kube, &config.node_name, b).await?,
                Some((kube.clone(), b.clone())),
                None,
            ),
        };
        let store = CertStore::new(key);
        let tls_cfg = tls::server_config(store.clone(), config.client_ca_file.as_deref())?;
        if config.auth == AuthMode::Enabled && config.client_ca_file.is_none() {
            tracing::warn!(
                "no --client-ca-file: only bearer tokens can authenticate to the kubelet API"
            );
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| KubeletError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| KubeletError::Bind {
            addr: config.listen,
            source,
        })?;
        let auth = (config.auth == AuthMode::Enabled)
            .then(|| auth::Auth::new(kube.clone(), config.node_name.clone()));
        let state = Arc::new(state::AppState::new(
            locator,
            stackpath,
            config.console,
            config.limits,
            auth,
            config.node_name,
            CancellationToken::new(),
        ));
        Ok(Self {
            listener,
            addr,
            acceptor: TlsAcceptor::from(Arc::new(tls_cfg)),
            store,
            state,
            rotation,
            file_reload,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The serving certificate holder (to inspect, or to swap in a new certificate).
    pub fn cert_store(&self) -> Arc<CertStore> {
        self.store.clone()
    }

    /// Exec sessions served so far, by transport.
    pub fn exec_transports(&self) -> Arc<state::ExecTransports> {
        self.state.exec_transports.clone()
    }

    /// Serves until `shutdown` completes; then stops accepting, ends open streams, drains.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), KubeletError> {
        let token = self.state.shutdown.clone();
        let mut side = Vec::new();
        if let Some((client, cfg)) = self.rotation {
            side.push(tokio::spawn(bootstrap::rotate(
                client,
                self.state.node_name.clone(),
                cfg,
                self.store.clone(),
                token.clone(),
            )));
        }
        if let Some((cert, key)) = self.file_reload {
            side.push(tokio::spawn(reload_files(
                cert,
                key,
                self.store.clone(),
                token.clone(),
            )));
        }
        let app = server::router(self.state.clone());
        let handshake = self.state.limits.handshake_timeout;
        tracing::info!(addr = %self.addr, "kubelet API listening");
        let serving = server::run(self.listener, self.acceptor, app, handshake, token.clone());
        tokio::pin!(serving);
        tokio::select! {
            _ = &mut serving => {}
            _ = shutdown => {
                token.cancel();
                serving.await;
            }
        }
        token.cancel();
        for t in side {
            let _ = t.await;
        }
        Ok(())
    }
}

/// Re-reads certificate files when they change (checked every 30 s).
async fn reload_files(
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    store: Arc<CertStore>,
    shutdown: CancellationToken,
) {
    let stamp = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last = (stamp(&cert), stamp(&key));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {}
        }
        let now = (stamp(&cert), stamp(&key));
        if now != last {
            match tls::certified_key_from_files(&cert, &key) {
                Ok(k) => {
                    store.swap(k);
                    last = now;
                    tracing::info!(cert = %cert.display(), "serving certificate reloaded");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "serving certificate files changed but do not load; keeping the old one")
                }
            }
        }
    }
}

/// Binds and serves the kubelet API until `shutdown` completes.
pub async fn serve(
    config: KubeletConfig,
    locator: Arc<dyn PodLocator>,
    stackpath: stackpath_client::Client,
    kube: kube::Client,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), KubeletError> {
    KubeletServer::bind(config, locator, stackpath, kube)
        .await?
        .run(shutdown)
        .await
}
