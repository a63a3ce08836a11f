//! Exec over WebSocket: binary messages whose first byte is the channel
//! (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize; v5: 255 = close a channel).

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{BufMut, Bytes, BytesMut};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use super::Exec;
use super::protocol::{self, Protocol, SUPPORTED};
use crate::console::{ExecIo, Input, Output, SharedWriter, TermSize};

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// Largest WebSocket message, and frame: kubectl sends stdin in pieces of at most 32 KiB. A
/// frame may not be larger than the message (tungstenite's default frame limit is 16 MiB,
/// which a client could make the kubelet API buffer).
pub(crate) const MAX_MESSAGE: usize = 1 << 20;

pub(super) fn serve(ws: WebSocketUpgrade, exec: Exec) -> Response {
    ws.protocols(SUPPORTED.map(Protocol::name))
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
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
    let (sink, stream) = socket.split();
    let o = &exec.options;
    // The console reads stdin from the socket and writes its output into it itself, with no
    // task in between: every hop between tasks is a wake-up on the keystroke → echo path.
    let sink = Arc::new(Mutex::new(sink));
    let (resize_tx, resize_rx) = mpsc::channel::<TermSize>(4);
    let input = WsInput {
        stream,
        pending: Bytes::new(),
        resize: Some(resize_tx),
        proto,
        eof: false,
    };
    // Without stdin the console never reads, so resizes and the close are read here.
    let mut reader = None;
    let stdin = if o.stdin {
        Some(Input(Box::new(input)))
    } else {
        let mut input = input;
        reader = Some(tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while matches!(input.read(&mut buf).await, Ok(n) if n > 0) {}
        }));
        None
    };
    let output = |wanted: bool, channel: u8| {
        wanted.then(|| {
            let w: SharedWriter = Arc::new(tokio::sync::Mutex::new(WsOutput {
                sink: sink.clone(),
                channel,
            }));
            Output::flushed(w)
        })
    };
    let io = ExecIo {
        stdin,
        stdout: output(o.stdout, STDOUT),
        stderr: output(o.stderr, STDERR),
        resize: (o.tty && proto.supports_resize()).then_some(resize_rx),
    };
    let result = exec.run(io).await;
    if let Some(r) = reader {
        r.abort();
    }
    let msg = match &result {
        Ok(outcome) => protocol::exit_message(proto, &exec.options.command, outcome),
        Err(m) => Some(protocol::failure_message(proto, m)),
    };
    // The console's writers are gone with `io`: the sink is ours again, for the status and
    // a normal close.
    let Ok(sink) = Arc::try_unwrap(sink) else {
        return;
    };
    let mut sink = sink.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(m) = msg
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

/// Stdin as a byte stream: the payloads of stdin messages. Resize messages go to the
/// console's resize channel on the way; a close of stdin (v5), a close message or the end of
/// the socket is end of file.
struct WsInput {
    stream: SplitStream<WebSocket>,
    pending: Bytes,
    resize: Option<mpsc::Sender<TermSize>>,
    proto: Protocol,
    eof: bool,
}

impl AsyncRead for WsInput {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if self.eof {
                return Poll::Ready(Ok(()));
            }
            let data = match ready!(self.stream.poll_next_unpin(cx)) {
                Some(Ok(Message::Binary(b))) => b,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    self.eof = true;
                    continue;
                }
                Some(Ok(_)) => continue,
            };
            let Some((&ch, rest)) = data.split_first() else {
                continue;
            };
            match ch {
                STDIN => self.pending = data.slice(1..),
                RESIZE => {
                    if let Ok(size) = serde_json::from_slice::<TermSize>(rest)
                        && let Some(tx) = &self.resize
                        // Only the latest size matters: one that finds the queue full is
                        // dropped rather than holding up stdin.
                        && let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(size)
                    {
                        self.resize = None;
                    }
                }
                CLOSE if self.proto >= Protocol::V5 && rest.first() == Some(&STDIN) => {
                    self.eof = true;
                }
                _ => {}
            }
        }
    }
}

/// One output channel (stdout or stderr) written into the socket as binary messages; both
/// share the sink.
struct WsOutput {
    sink: Arc<Mutex<SplitSink<WebSocket, Message>>>,
    channel: u8,
}

impl WsOutput {
    fn sink(&self) -> std::sync::MutexGuard<'_, SplitSink<WebSocket, Message>> {
        self.sink.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AsyncWrite for WsOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut sink = self.sink();
        ready!(sink.poll_ready_unpin(cx)).map_err(std::io::Error::other)?;
        sink.start_send_unpin(frame(self.channel, data))
            .map_err(std::io::Error::other)?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.sink()
            .poll_flush_unpin(cx)
            .map_err(std::io::Error::other)
    }

    /// The socket stays open for the status message; `run` closes it.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}
