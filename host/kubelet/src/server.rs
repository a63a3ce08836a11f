//! The HTTPS listener: TLS (with optional client certificates), authn/authz middleware, routes.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
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
    pub activity: Arc<Activity>,
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    // The stats routes take their own sub-state (`Stats`, via `FromRef`).
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
        ))
        .layer(middleware::from_fn(track));
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

/// What the listener enforces (from [`crate::Limits`]).
#[derive(Debug, Clone)]
pub(crate) struct ConnLimits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// hyper's read buffer, which bounds a request's header block.
    pub max_header_bytes: usize,
}

impl ConnLimits {
    pub fn from(l: &crate::config::Limits) -> Self {
        Self {
            max_connections: l.max_connections.max(1),
            handshake_timeout: l.handshake_timeout,
            header_timeout: l.header_timeout,
            idle_timeout: l.idle_timeout,
            max_header_bytes: l.max_request_bytes.max(8192),
        }
    }
}

/// Accepts connections until `shutdown`, then drains them (bounded).
pub(crate) async fn run(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    limits: ConnLimits,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut refused = RefusalLog::default();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: wait for connections to close.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Over the cap: closed before any TLS work, so a flood costs little and the
        // connections already open keep their slots.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused.note(peer, limits.max_connections);
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let shutdown = shutdown.clone();
        let limits = limits.clone();
        tracker.spawn(async move {
            let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp))
                .await
            {
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
            let activity = Arc::new(Activity::new());
            let info = ConnInfo {
                cert_identity,
                peer,
                activity: activity.clone(),
            };
            // The slot goes with the stream: an upgraded exec session keeps it until it ends.
            let io = Tracked {
                inner: tls,
                activity: activity.clone(),
                _slot: slot,
            };
            let svc = TowerToHyperService::new(app.layer(axum::Extension(info)));
            let mut builder = http1::Builder::new();
            // Header and idle deadlines are kept below (hyper's own header timeout also runs
            // while a keep-alive connection is idle, so it cannot tell the two apart).
            builder
                .header_read_timeout(None)
                .max_buf_size(limits.max_header_bytes);
            let conn = builder
                .serve_connection(TokioIo::new(io), svc)
                .with_upgrades();
            tokio::pin!(conn);
            loop {
                let wake = activity.next_check(&limits);
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                        return;
                    }
                    _ = shutdown.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
                        return;
                    }
                    // A request began or ended: the deadline moved.
                    _ = activity.changed.notified() => {}
                    _ = tokio::time::sleep_until(wake) => match activity.verdict(&limits) {
                        Verdict::Keep => {}
                        Verdict::HeaderTimeout => {
                            tracing::debug!(%peer, timeout = ?limits.header_timeout, "request headers not complete in time; closing the connection");
                            return;
                        }
                        Verdict::Idle => {
                            tracing::debug!(%peer, timeout = ?limits.idle_timeout, "idle connection closed");
                            return;
                        }
                    },
                }
            }
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(15), tracker.wait()).await;
}

/// Logs refused connections at most every 10 s.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    count: u64,
}

impl RefusalLog {
    fn note(&mut self, peer: SocketAddr, cap: usize) {
        self.count += 1;
        if self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            tracing::warn!(
                %peer,
                refused = self.count,
                "the kubelet API has {cap} connections open and refuses new ones; raise --kubelet-max-connections if this is normal load"
            );
            self.last = Some(Instant::now());
            self.count = 0;
        }
    }
}

/// What one connection is doing, for its header and idle deadlines.
#[derive(Debug)]
pub(crate) struct Activity {
    epoch: Instant,
    /// Requests whose response body is not finished.
    in_flight: AtomicUsize,
    /// Milliseconds since `epoch` of the last moment a request was in flight.
    idle_since: AtomicU64,
    /// Milliseconds since `epoch` (plus one) of the first byte of a request head not yet
    /// complete; 0 when none.
    head_started: AtomicU64,
    /// Wakes the connection's watchdog when its deadline moves.
    changed: Notify,
}

enum Verdict {
    Keep,
    HeaderTimeout,
    Idle,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    /// Bytes arrived.
    fn read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started.load(Ordering::Acquire) == 0
        {
            self.head_started
                .store(self.now_ms() + 1, Ordering::Release);
            self.changed.notify_one();
        }
    }

    /// A request's head is complete and it is being served.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(0, Ordering::Release);
        InFlight(self.clone())
    }

    fn next_check(&self, l: &ConnLimits) -> Instant {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Instant::now() + l.idle_timeout;
        }
        match self.head_started.load(Ordering::Acquire) {
            0 => self.at(self.idle_since.load(Ordering::Acquire)) + l.idle_timeout,
            t => self.at(t - 1) + l.header_timeout,
        }
    }

    fn verdict(&self, l: &ConnLimits) -> Verdict {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Verdict::Keep;
        }
        let now = Instant::now();
        match self.head_started.load(Ordering::Acquire) {
            0 if now >= self.at(self.idle_since.load(Ordering::Acquire)) + l.idle_timeout => {
                Verdict::Idle
            }
            0 => Verdict::Keep,
            t if now >= self.at(t - 1) + l.header_timeout => Verdict::HeaderTimeout,
            _ => Verdict::Keep,
        }
    }
}

/// A request in flight; dropped with its response body.
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.idle_since.store(self.0.now_ms(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_one();
    }
}

/// Counts the request in flight until its response body is done (or dropped).
async fn track(req: Request, next: Next) -> Response {
    let Some(guard) = req
        .extensions()
        .get::<ConnInfo>()
        .map(|c| c.activity.begin())
    else {
        return next.run(req).await;
    };
    next.run(req).await.map(|body| {
        axum::body::Body::new(TrackedBody {
            inner: body,
            _guard: guard,
        })
    })
}

struct TrackedBody {
    inner: axum::body::Body,
    _guard: InFlight,
}

impl axum::body::HttpBody for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The TLS stream of a connection, noting when bytes arrive, and holding the connection's
/// slot under the cap.
struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
    _slot: OwnedSemaphorePermit,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
