//! The accept loop (plain or TLS). Owned here rather than `axum::serve` so that a fault can
//! close a connection without answering (a lost response), which axum cannot express.

use std::sync::Arc;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Request extension: notify it to drop the request's connection without a response.
#[derive(Clone)]
pub(crate) struct ConnKill(pub Arc<Notify>);

pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    cancel: CancellationToken,
) {
    loop {
        let (stream, _peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let kill = Arc::new(Notify::new());
            let svc = TowerToHyperService::new(app);
            let k = kill.clone();
            let svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                req.extensions_mut().insert(ConnKill(k.clone()));
                hyper::service::Service::call(&svc, req)
            });
            let builder = Builder::new(TokioExecutor::new());
            match tls {
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = kill.notified() => {}
                        _ = cancel.cancelled() => {}
                    }
                }
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = kill.notified() => {}
                        _ = cancel.cancelled() => {}
                    }
                }
            }
        });
    }
}
