//! The HTTPS listener: TLS (with optional client certificates), authn/authz middleware, routes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{UserInfo, attributes};
use crate::state::{AppState, text};
use crate::{exec, logs, stats};

/// Per-connection facts the middleware needs.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    /// CN and O of a verified client certificate.
    pub cert_identity: Option<(String, Vec<String>)>,
    pub peer: SocketAddr,
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let authed = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(stats::pods))
        .route("/pods/", get(stats::pods))
        .route("/runningpods/", get(stats::running_pods))
        .route("/stats/summary", get(stats::summary))
        .route("/metrics/resource", get(stats::metrics_resource))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(logs::handler),
        )
        .route("/exec/{namespace}/{pod}/{container}", any(exec::handler))
        .route(
            "/exec/{namespace}/{pod}/{uid}/{container}",
            any(exec_with_uid),
        )
        .route("/attach/{namespace}/{pod}/{container}", any(exec::attach))
        .route("/portForward/{*rest}", any(exec::not_supported))
        .fallback(|| async { text(http::StatusCode::NOT_FOUND, "404 page not found") })
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.limits.max_request_bytes,
        ));
    authed.with_state(state)
}

async fn exec_with_uid(
    st: State<Arc<AppState>>,
    axum::extract::Path((namespace, pod, _uid, container)): axum::extract::Path<(
        String,
        String,
        String,
        String,
    )>,
    req: Request,
) -> Response {
    exec::handler(st, axum::extract::Path((namespace, pod, container)), req).await
}

async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(auth) = &state.auth else {
        return next.run(req).await;
    };
    let conn = req.extensions().get::<ConnInfo>().cloned();
    let peer = conn.as_ref().map(|c| c.peer);
    let user = if let Some((name, groups)) = conn.and_then(|c| c.cert_identity) {
        Ok(UserInfo::from_cert(name, groups))
    } else if let Some(token) = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        auth.authenticate_token(token).await
    } else {
        Err(crate::auth::AuthError::Unauthenticated)
    };
    let user = match user {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(?peer, error = %e, "kubelet API request not authenticated");
            return text(e.status(), e.to_string());
        }
    };
    let attrs = attributes(req.method(), req.uri().path());
    if let Err(e) = auth.authorize(&user, &attrs).await {
        tracing::info!(user = %user.name, verb = attrs.verb, subresource = attrs.subresource, "kubelet API request denied");
        return text(e.status(), e.to_string());
    }
    req.extensions_mut().insert(user);
    next.run(req).await
}

/// Accepts connections until `shutdown`, then drains them (bounded).
pub(crate) async fn run(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    handshake_timeout: Duration,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let cert_identity = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| crate::tls::identity_from_cert(c));
            let info = ConnInfo {
                cert_identity,
                peer,
            };
            let svc = TowerToHyperService::new(app.layer(axum::Extension(info)));
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
                }
            }
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(15), tracker.wait()).await;
}
