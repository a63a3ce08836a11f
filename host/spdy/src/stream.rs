//! Streams: [`IncomingStream`] (a peer's SYN_STREAM awaiting our answer) and [`SpdyStream`]
//! (an open stream as `AsyncRead + AsyncWrite`).
//!
//! Reading yields the peer's data frames in order and EOF at the peer's FIN; consumed bytes are
//! granted back to the peer with WINDOW_UPDATE. Writing splits into data frames no larger than
//! `Config::max_data_frame_len` and waits for window (see `FlowControl`) and for room in the write
//! queue. `shutdown` sends FIN (an empty data frame with FLAG_FIN) and waits until it is written;
//! `flush` waits until this stream's data is written to the transport.
//!
//! Dropping a stream that has not sent FIN resets it with CANCEL at once (queued data is
//! dropped). Dropping one that has sent FIN while the peer has not resets it with CANCEL too,
//! but only after the queued data and FIN are written, so that the peer stops sending.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::StreamError;
use crate::frame::{Headers, RstStatus, StreamId, SynStream};
use crate::shared::{Kick, Shared};
use crate::state::Reply;

/// A stream the peer opened, not yet answered. Dropping it refuses the stream
/// (RST_STREAM REFUSED_STREAM).
pub struct IncomingStream {
    shared: Arc<Shared>,
    syn: Option<SynStream>,
}

impl std::fmt::Debug for IncomingStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingStream")
            .field("syn", &self.syn)
            .finish()
    }
}

impl IncomingStream {
    pub(crate) fn new(shared: Arc<Shared>, syn: SynStream) -> Self {
        Self {
            shared,
            syn: Some(syn),
        }
    }

    fn syn(&self) -> &SynStream {
        // Only `accept`/`reject` take it, and they consume self.
        self.syn
            .as_ref()
            .expect("IncomingStream used after accept or reject")
    }

    /// The stream id (odd for client-opened streams).
    pub fn id(&self) -> StreamId {
        self.syn().stream_id
    }

    /// The SYN_STREAM headers (Kubernetes: `streamtype`, and `port`/`requestid` for port-forward).
    pub fn headers(&self) -> &Headers {
        &self.syn().headers
    }

    /// SYN_STREAM priority, 0 (highest) to 7.
    pub fn priority(&self) -> u8 {
        self.syn().priority
    }

    /// The peer opened the stream with FIN: it will send no data.
    pub fn is_peer_finished(&self) -> bool {
        self.syn().fin
    }

    /// Answers with SYN_REPLY carrying `reply` and returns the open stream. Data the peer sent
    /// before this is kept.
    pub fn accept(mut self, reply: Headers) -> SpdyStream {
        let syn = self
            .syn
            .take()
            .expect("IncomingStream used after accept or reject");
        self.shared
            .apply(|s, out| s.accept(syn.stream_id, reply, syn.unidirectional, out));
        SpdyStream::new(self.shared.clone(), syn.stream_id, syn.headers)
    }

    /// Refuses the stream with RST_STREAM `status`.
    pub fn reject(mut self, status: RstStatus) {
        if let Some(syn) = self.syn.take() {
            self.shared
                .apply(|s, out| s.refuse(syn.stream_id, status, out));
        }
    }
}

impl Drop for IncomingStream {
    fn drop(&mut self) {
        if let Some(syn) = self.syn.take() {
            self.shared
                .apply(|s, out| s.refuse(syn.stream_id, RstStatus::RefusedStream, out));
        }
    }
}

/// An open stream.
pub struct SpdyStream {
    shared: Arc<Shared>,
    id: StreamId,
    headers: Headers,
}

impl std::fmt::Debug for SpdyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpdyStream")
            .field("id", &self.id)
            .field("headers", &self.headers)
            .finish()
    }
}

impl SpdyStream {
    pub(crate) fn new(shared: Arc<Shared>, id: StreamId, headers: Headers) -> Self {
        Self {
            shared,
            id,
            headers,
        }
    }

    /// The stream id.
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// The SYN_STREAM headers (received for peer-opened streams, sent for our own).
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// For streams we opened: waits for the peer's SYN_REPLY and returns its headers.
    /// For peer-opened streams: returns empty headers at once.
    pub async fn reply(&self) -> Result<Headers, StreamError> {
        poll_fn(|cx| {
            let mut inner = self.shared.lock();
            let Some(s) = inner.state.stream(self.id) else {
                return Poll::Ready(Err(StreamError::ResetLocally {
                    stream_id: self.id,
                    status: RstStatus::Cancel,
                }));
            };
            match &s.reply {
                Reply::NotExpected => return Poll::Ready(Ok(Headers::new())),
                Reply::Received(h) => return Poll::Ready(Ok(h.clone())),
                Reply::Pending => {}
            }
            if let Some(e) = &s.reset {
                return Poll::Ready(Err(e.clone()));
            }
            if let Some(reason) = inner.state.closed() {
                return Poll::Ready(Err(StreamError::SessionClosed {
                    stream_id: self.id,
                    reason: reason.clone(),
                }));
            }
            inner.stream_io(self.id).reply_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Aborts the stream with RST_STREAM `status`. Pending reads and writes fail.
    pub fn reset(&self, status: RstStatus) {
        self.shared.apply(|s, out| s.reset(self.id, status, out));
    }

    /// Queues FIN without waiting for it to be written (the non-async form of `shutdown`).
    pub fn finish(&self) {
        self.shared.apply(|s, out| s.send_fin(self.id, out));
    }

    /// Whether the peer has half-closed (FIN seen) and all its data has been read.
    pub fn is_peer_finished(&self) -> bool {
        let inner = self.shared.lock();
        inner.state.stream(self.id).is_none_or(|s| {
            s.recv_fin
                && inner
                    .stream_io_ref(self.id)
                    .is_none_or(|io| io.recv_buf.is_empty())
        })
    }

    fn poll_flushed(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.shared.lock();
        let Some(s) = inner.state.stream(self.id) else {
            return Poll::Ready(Ok(()));
        };
        if inner
            .stream_io_ref(self.id)
            .is_none_or(|io| io.unflushed == 0)
        {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = &s.reset {
            return Poll::Ready(Err(e.clone().into()));
        }
        if let Some(reason) = inner.state.closed() {
            return Poll::Ready(Err(StreamError::SessionClosed {
                stream_id: self.id,
                reason: reason.clone(),
            }
            .into()));
        }
        inner.stream_io(self.id).write_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncRead for SpdyStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let mut inner = this.shared.lock();
        let Some(s) = inner.state.stream(this.id) else {
            return Poll::Ready(Ok(()));
        };
        let complete_before_reset =
            s.recv_fin && matches!(s.reset, Some(StreamError::ResetByPeer { .. }));
        if let Some(e) = &s.reset
            && !complete_before_reset
        {
            return Poll::Ready(Err(e.clone().into()));
        }
        let recv_fin = s.recv_fin;
        let io = inner.stream_io(this.id);
        if !io.recv_buf.is_empty() {
            let mut n = 0;
            while buf.remaining() > 0 {
                let Some(chunk) = io.recv_buf.front_mut() else {
                    break;
                };
                let take = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk.split_to(take));
                n += take;
                if chunk.is_empty() {
                    io.recv_buf.pop_front();
                }
            }
            let kick = inner.apply(|s, out| s.consumed(this.id, n, out));
            drop(inner);
            this.shared.kick(kick);
            return Poll::Ready(Ok(()));
        }
        if recv_fin {
            return Poll::Ready(Ok(()));
        }
        if let Some(reason) = inner.state.closed() {
            return Poll::Ready(Err(StreamError::SessionClosed {
                stream_id: this.id,
                reason: reason.clone(),
            }
            .into()));
        }
        inner.stream_io(this.id).read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for SpdyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let max = this.shared.config.max_data_frame_len;
        let mut inner = this.shared.lock();
        match inner.write_capacity(this.id, buf.len(), max) {
            Err(e) => Poll::Ready(Err(e.into())),
            Ok(0) => {
                // Ok means the stream is tracked.
                inner.stream_io(this.id).write_waker = Some(cx.waker().clone());
                Poll::Pending
            }
            Ok(n) => {
                let data = Bytes::copy_from_slice(&buf[..n]);
                let kick = inner.apply(|s, out| s.send_data(this.id, data, out));
                drop(inner);
                // Written here if the transport is idle, else by the writer task: no wake-up of
                // the writer task for the frame just queued.
                this.shared.write_now();
                this.shared.kick(Kick {
                    writer: false,
                    ..kick
                });
                Poll::Ready(Ok(n))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flushed(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        {
            let mut inner = this.shared.lock();
            let unidirectional_or_done = inner
                .state
                .stream(this.id)
                .is_none_or(|s| s.local_fin || s.reset.is_some());
            if !unidirectional_or_done {
                let kick = inner.apply(|s, out| s.send_fin(this.id, out));
                drop(inner);
                this.shared.kick(kick);
            }
        }
        this.poll_flushed(cx)
    }
}

impl Drop for SpdyStream {
    fn drop(&mut self) {
        self.shared.apply(|s, out| s.handle_dropped(self.id, out));
    }
}
