//! Raw exec clients: SPDY/3.1 (built on `spdy3`'s client side) and WebSocket
//! (tokio-tungstenite), both speaking the remote-command channel protocol.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use spdy3::{Headers, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::tls_connect;

#[derive(Debug, Default)]
pub struct ExecResult {
    pub status_code: u16,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub error: Vec<u8>,
    pub protocol: String,
}

impl ExecResult {
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_slice(&self.error).unwrap_or(serde_json::Value::Null)
    }
}

/// What the client sends.
#[derive(Debug, Clone, Default)]
pub struct Input {
    pub stdin: Option<Vec<u8>>,
    /// Close stdin after sending (SPDY: FIN; WebSocket v5: close signal).
    pub close_stdin: bool,
    pub resize: Option<(u16, u16)>,
}

pub async fn spdy_exec(
    tls: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    path_query: &str,
    protocols: &[&str],
    input: Input,
) -> ExecResult {
    let mut conn = tls_connect(tls, addr).await;
    let mut req = format!(
        "POST {path_query} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n",
        addr.port()
    );
    for p in protocols {
        req.push_str(&format!("X-Stream-Protocol-Version: {p}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    // Read the head byte by byte: SPDY frames may follow it at once.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if conn.read(&mut b).await.unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if code != 101 {
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            conn.read_to_end(&mut rest),
        )
        .await;
        return ExecResult {
            status_code: code,
            error: rest,
            ..Default::default()
        };
    }
    let protocol = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-stream-protocol-version")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let (session, _incoming) = Session::client(conn, spdy3::Config::default());
    let q = path_query.split_once('?').map(|x| x.1).unwrap_or("");
    let has = |k: &str| {
        q.split('&')
            .any(|p| p == format!("{k}=true") || p == format!("{k}=1"))
    };
    let open = |kind: &str, fin: bool| {
        session
            .open_stream(Headers::new().with("streamtype", kind), fin)
            .unwrap()
    };
    let mut error = open("error", true);
    let stdin = has("stdin").then(|| open("stdin", false));
    let stdout = has("stdout").then(|| open("stdout", true));
    let stderr = has("stderr").then(|| open("stderr", true));
    let resize = has("tty").then(|| open("resize", false));
    if let Some(mut r) = resize {
        if let Some((w, h)) = input.resize {
            let m = format!("{{\"Width\":{w},\"Height\":{h}}}\n");
            r.write_all(m.as_bytes()).await.unwrap();
        }
        // Keep it open for the session, as kubectl does.
        std::mem::forget(r);
    }
    // Kept until the end: dropping a stream resets it (RST_STREAM CANCEL), which kubectl never
    // does to a stdin it has half-closed.
    let mut stdin_keep = stdin;
    if let Some(i) = stdin_keep.as_mut() {
        if let Some(data) = &input.stdin {
            i.write_all(data).await.unwrap();
        }
        if input.close_stdin {
            i.shutdown().await.unwrap();
        }
    }
    let out_task = tokio::spawn(async move {
        let mut v = Vec::new();
        if let Some(mut s) = stdout {
            let _ = s.read_to_end(&mut v).await;
        }
        v
    });
    let err_task = tokio::spawn(async move {
        let mut v = Vec::new();
        if let Some(mut s) = stderr {
            let _ = s.read_to_end(&mut v).await;
        }
        v
    });
    let mut err_buf = Vec::new();
    let _ = error.read_to_end(&mut err_buf).await;
    let stdout = out_task.await.unwrap();
    let stderr = err_task.await.unwrap();
    drop(stdin_keep);
    session.abort();
    ExecResult {
        status_code: 101,
        stdout,
        stderr,
        error: err_buf,
        protocol,
    }
}

pub async fn ws_exec(
    tls: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    path_query: &str,
    protocol: &str,
    input: Input,
) -> ExecResult {
    let conn = tls_connect(tls, addr).await;
    let mut req = format!("wss://127.0.0.1:{}{path_query}", addr.port())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let (mut ws, resp) = match tokio_tungstenite::client_async(req, conn).await {
        Ok(x) => x,
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            return ExecResult {
                status_code: r.status().as_u16(),
                error: r.body().clone().unwrap_or_default(),
                ..Default::default()
            };
        }
        Err(e) => panic!("websocket handshake: {e}"),
    };
    let protocol = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if let Some((w, h)) = input.resize {
        let mut m = vec![4u8];
        m.extend_from_slice(format!("{{\"Width\":{w},\"Height\":{h}}}").as_bytes());
        ws.send(Message::Binary(m.into())).await.unwrap();
    }
    if let Some(data) = &input.stdin {
        let mut m = vec![0u8];
        m.extend_from_slice(data);
        ws.send(Message::Binary(m.into())).await.unwrap();
    }
    if input.close_stdin {
        ws.send(Message::Binary(vec![255u8, 0].into()))
            .await
            .unwrap();
    }
    let mut r = ExecResult {
        status_code: 101,
        protocol,
        ..Default::default()
    };
    while let Some(Ok(m)) = ws.next().await {
        match m {
            Message::Binary(b) if !b.is_empty() => match b[0] {
                1 => r.stdout.extend_from_slice(&b[1..]),
                2 => r.stderr.extend_from_slice(&b[1..]),
                3 => r.error.extend_from_slice(&b[1..]),
                _ => {}
            },
            Message::Close(_) => break,
            _ => {}
        }
    }
    r
}
