//! Exec over SPDY/3.1: the 101 answer, then one SPDY stream per channel.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use hyper_util::rt::TokioIo;
use spdy3::{Headers, RstStatus, Session, SpdyStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::Exec;
use super::protocol::{self, Protocol};
use crate::console::{ExecIo, Input, Output, SharedWriter, TermSize};
use crate::state::text;

/// How long the client has to open its streams (the kubelet's streamCreationTimeout).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn serve(mut req: Request, exec: Exec) -> Response {
    let offered: Vec<String> = req
        .headers()
        .get_all("X-Stream-Protocol-Version")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    let proto = match protocol::negotiate(offered.iter().map(String::as_str)) {
        Ok(p) => p,
        Err(m) => return text(StatusCode::FORBIDDEN, m),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => run(TokioIo::new(upgraded), proto, exec).await,
            Err(e) => tracing::debug!(error = %e, "SPDY upgrade failed"),
        }
    });
    let mut resp = Response::new(axum::body::Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    if !offered.is_empty() {
        h.insert(
            "X-Stream-Protocol-Version",
            HeaderValue::from_static(proto.name()),
        );
    }
    resp
}

#[derive(Default)]
struct Streams {
    error: Option<SpdyStream>,
    stdin: Option<SpdyStream>,
    stdout: Option<SpdyStream>,
    stderr: Option<SpdyStream>,
    resize: Option<SpdyStream>,
}

async fn run<T>(io: T, proto: Protocol, exec: Exec)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (session, mut incoming) = Session::server(io, spdy3::Config::default());
    let o = &exec.options;
    let expected = 1
        + usize::from(o.stdin)
        + usize::from(o.stdout)
        + usize::from(o.stderr)
        + usize::from(o.tty && proto.supports_resize());
    let mut s = Streams::default();
    let mut got = 0;
    let deadline = tokio::time::sleep(STREAM_CREATION_TIMEOUT);
    tokio::pin!(deadline);
    while got < expected {
        let next = tokio::select! {
            n = incoming.accept() => n,
            _ = &mut deadline => None,
        };
        let Some(stream) = next else { break };
        let kind = stream
            .headers()
            .get("streamtype")
            .unwrap_or_default()
            .to_owned();
        let slot = match kind.as_str() {
            "error" => &mut s.error,
            "stdin" => &mut s.stdin,
            "stdout" => &mut s.stdout,
            "stderr" => &mut s.stderr,
            "resize" => &mut s.resize,
            _ => {
                stream.reject(RstStatus::RefusedStream);
                continue;
            }
        };
        if slot.is_some() {
            stream.reject(RstStatus::ProtocolError);
            continue;
        }
        *slot = Some(stream.accept(Headers::new()));
        got += 1;
    }
    if got < expected {
        tracing::debug!(got, expected, "exec client did not open all its streams");
        if let Some(mut e) = s.error.take() {
            let m = protocol::failure_message(
                proto,
                "timed out waiting for the client to create streams",
            );
            let _ = e.write_all(&m).await;
            let _ = e.shutdown().await;
        }
        session.go_away();
        return;
    }
    drop(incoming);

    let mut tasks = Vec::new();
    // The console reads stdin from its SPDY stream itself: no task in between.
    let stdin = s
        .stdin
        .take()
        .map(|st| Input(Box::new(st) as Box<dyn tokio::io::AsyncRead + Send + Unpin>));
    let resize = s.resize.take().map(|mut st| {
        let (tx, rx) = mpsc::channel::<TermSize>(4);
        tasks.push(tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 1024];
            loop {
                match st.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<TermSize>();
                let mut used = 0;
                while let Some(Ok(size)) = it.next() {
                    used = it.byte_offset();
                    if tx.send(size).await.is_err() {
                        return;
                    }
                }
                buf.drain(..used);
                if buf.len() > 4096 {
                    break; // not a size message stream
                }
            }
        }));
        rx
    });
    // The console writes into the SPDY streams itself (they only queue frames for the
    // session's writer); they are closed here once the command is over.
    let shared = |st: Option<SpdyStream>| st.map(|st| Arc::new(tokio::sync::Mutex::new(st)));
    let stdout = shared(s.stdout.take());
    let stderr = shared(s.stderr.take());
    let as_output = |w: &Option<Arc<tokio::sync::Mutex<SpdyStream>>>| {
        w.clone().map(|w| Output::direct(w as SharedWriter))
    };
    let io = ExecIo {
        stdin,
        stdout: as_output(&stdout),
        stderr: as_output(&stderr),
        resize,
    };
    let result = exec.run(io).await;
    for w in [stdout, stderr].into_iter().flatten() {
        let _ = w.lock().await.shutdown().await;
    }
    for t in tasks {
        t.abort();
    }
    let msg = match &result {
        Ok(outcome) => protocol::exit_message(proto, &exec.options.command, outcome),
        Err(m) => Some(protocol::failure_message(proto, m)),
    };
    if let Some(mut e) = s.error.take() {
        if let Some(m) = msg {
            let _ = e.write_all(&m).await;
        }
        let _ = e.shutdown().await;
    }
    session.go_away();
    let _ = tokio::time::timeout(Duration::from_secs(5), session.closed()).await;
}
