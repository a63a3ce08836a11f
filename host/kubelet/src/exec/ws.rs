//! Exec over WebSocket: binary messages whose first byte is the channel
//! (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize; v5: 255 = close a channel).

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

use super::Exec;
use super::protocol::{self, Protocol, SUPPORTED};
use crate::console::{ExecIo, Input, Output, TermSize};

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
    let (sink, mut stream) = socket.split();
    let o = &exec.options;
    // The console's output channels are read by the writer itself (no forwarding task in
    // between: every task hop is a wake-up on the keystroke → echo path).
    let (stdout_tx, stdout_rx) = out_channel(o.stdout);
    let (stderr_tx, stderr_rx) = out_channel(o.stderr);
    let (end_tx, end_rx) = oneshot::channel::<Option<Vec<u8>>>();
    let writer = tokio::spawn(write_loop(sink, stdout_rx, stderr_rx, end_rx));

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
                        && tx.send(data.slice(1..)).await.is_err()
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

    let io = ExecIo {
        stdin: o.stdin.then_some(Input::Channel(stdin_rx)),
        stdout: stdout_tx.map(Output::Channel),
        stderr: stderr_tx.map(Output::Channel),
        resize: (o.tty && proto.supports_resize()).then_some(resize_rx),
    };
    let result = exec.run(io).await;
    let msg = match &result {
        Ok(outcome) => protocol::exit_message(proto, &exec.options.command, outcome),
        Err(m) => Some(protocol::failure_message(proto, m)),
    };
    // The writer drains stdout and stderr first, then sends the status and the close.
    let _ = end_tx.send(msg);
    let _ = writer.await;
    reader.abort();
}

fn out_channel(wanted: bool) -> (Option<mpsc::Sender<Bytes>>, Option<mpsc::Receiver<Bytes>>) {
    if wanted {
        let (tx, rx) = mpsc::channel::<Bytes>(8);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    }
}

/// Writes stdout and stderr as they come; once both are closed (the session is over), the
/// error-channel message from `end` and a normal close.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut stdout: Option<mpsc::Receiver<Bytes>>,
    mut stderr: Option<mpsc::Receiver<Bytes>>,
    end: oneshot::Receiver<Option<Vec<u8>>>,
) {
    while stdout.is_some() || stderr.is_some() {
        let (channel, next) = tokio::select! {
            b = recv_opt(&mut stdout) => (STDOUT, b),
            b = recv_opt(&mut stderr) => (STDERR, b),
        };
        match next {
            Some(b) => {
                if sink.send(frame(channel, &b)).await.is_err() {
                    return;
                }
            }
            None if channel == STDOUT => stdout = None,
            None => stderr = None,
        }
    }
    if let Ok(Some(m)) = end.await
        && sink.send(frame(ERROR, &m)).await.is_err()
    {
        return;
    }
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
    let _ = sink.close().await;
}

async fn recv_opt<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
