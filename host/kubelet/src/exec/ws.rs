//! Exec over WebSocket: binary messages whose first byte is the channel
//! (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize; v5: 255 = close a channel).

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use super::Exec;
use super::protocol::{self, Protocol, SUPPORTED};
use crate::console::{ExecIo, TermSize};

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

pub(super) fn serve(ws: WebSocketUpgrade, exec: Exec) -> Response {
    ws.protocols(SUPPORTED.map(Protocol::name))
        .max_message_size(exec.state.limits.max_request_bytes.max(1 << 20))
        .on_upgrade(move |socket| run(socket, exec))
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut b = BytesMut::with_capacity(data.len() + 1);
    b.put_u8(channel);
    b.put_slice(data);
    Message::Binary(b.freeze())
}

async fn run(socket: WebSocket, exec: Exec) {
    let proto = socket
        .protocol()
        .and_then(|p| p.to_str().ok())
        .and_then(Protocol::from_name)
        .unwrap_or(Protocol::V1);
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(16);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });

    let o = &exec.options;
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(8);
    let (resize_tx, resize_rx) = mpsc::channel::<TermSize>(4);
    let reader = tokio::spawn(async move {
        let mut stdin_tx = Some(stdin_tx);
        while let Some(Ok(msg)) = stream.next().await {
            let data = match msg {
                Message::Binary(b) => b,
                Message::Close(_) => break,
                _ => continue,
            };
            let Some((&ch, rest)) = data.split_first() else {
                continue;
            };
            match ch {
                STDIN => {
                    if let Some(tx) = &stdin_tx
                        && tx.send(Bytes::copy_from_slice(rest)).await.is_err()
                    {
                        stdin_tx = None;
                    }
                }
                RESIZE => {
                    if let Ok(size) = serde_json::from_slice::<TermSize>(rest) {
                        let _ = resize_tx.send(size).await;
                    }
                }
                CLOSE if proto >= Protocol::V5 && rest.first() == Some(&STDIN) => {
                    stdin_tx = None; // stdin EOF
                }
                _ => {}
            }
        }
    });

    let mut forwarders = Vec::new();
    let mut out = |wanted: bool, channel: u8| {
        wanted.then(|| {
            let (tx, mut rx) = mpsc::channel::<Bytes>(8);
            let out_tx = out_tx.clone();
            forwarders.push(tokio::spawn(async move {
                while let Some(b) = rx.recv().await {
                    if out_tx.send(frame(channel, &b)).await.is_err() {
                        return;
                    }
                }
            }));
            tx
        })
    };
    let stdout = out(o.stdout, STDOUT);
    let stderr = out(o.stderr, STDERR);
    let io = ExecIo {
        stdin: o.stdin.then_some(stdin_rx),
        stdout,
        stderr,
        resize: (o.tty && proto.supports_resize()).then_some(resize_rx),
    };
    let result = exec.run(io).await;
    for f in forwarders {
        let _ = f.await;
    }
    let msg = match &result {
        Ok(outcome) => protocol::exit_message(proto, &exec.options.command, outcome),
        Err(m) => Some(protocol::failure_message(proto, m)),
    };
    if let Some(m) = msg {
        let _ = out_tx.send(frame(ERROR, &m)).await;
    }
    let _ = out_tx
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
    drop(out_tx);
    let _ = writer.await;
    reader.abort();
}
