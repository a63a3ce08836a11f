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
use crate::state::{Reply, Shared};

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
        let kick = self
            .shared
            .lock()
            .accept(syn.stream_id, reply, syn.unidirectional);
        self.shared.kick(kick);
        SpdyStream::new(self.shared.clone(), syn.stream_id, syn.headers)
    }

    /// Refuses the stream with RST_STREAM `status`.
    pub fn reject(mut self, status: RstStatus) {
        if let Some(syn) = self.syn.take() {
            refuse(&self.shared, syn.stream_id, status);
        }
    }
}

fn refuse(shared: &Shared, id: StreamId, status: RstStatus) {
    let kick = {
        let mut st = shared.lock();
        if let Some(s) = st.streams.get_mut(&id) {
            s.awaiting_accept = false;
            s.handle_dropped = true;
        }
        st.reset(id, status)
    };
    shared.kick(kick);
}

impl Drop for IncomingStream {
    fn drop(&mut self) {
        if let Some(syn) = self.syn.take() {
            refuse(&self.shared, syn.stream_id, RstStatus::RefusedStream);
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
            let mut st = self.shared.lock();
            let closed = st.closed.clone();
            let Some(s) = st.streams.get_mut(&self.id) else {
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
            if let Some(reason) = closed {
                return Poll::Ready(Err(StreamError::SessionClosed {
                    stream_id: self.id,
                    reason,
                }));
            }
            s.reply_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Aborts the stream with RST_STREAM `status`. Pending reads and writes fail.
    pub fn reset(&self, status: RstStatus) {
        let kick = self.shared.lock().reset(self.id, status);
        self.shared.kick(kick);
    }

    /// Queues FIN without waiting for it to be written (the non-async form of `shutdown`).
    pub fn finish(&self) {
        let kick = self.shared.lock().queue_fin(self.id);
        self.shared.kick(kick);
    }

    /// Whether the peer has half-closed (FIN seen) and all its data has been read.
    pub fn is_peer_finished(&self) -> bool {
        let st = self.shared.lock();
        st.streams
            .get(&self.id)
            .is_none_or(|s| s.recv_fin && s.recv_buf.is_empty())
    }

    fn poll_flushed(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.shared.lock();
        let closed = st.closed.clone();
        let Some(s) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(Ok(()));
        };
        if s.unflushed == 0 {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = &s.reset {
            return Poll::Ready(Err(e.clone().into()));
        }
        if let Some(reason) = closed {
            return Poll::Ready(Err(StreamError::SessionClosed {
                stream_id: self.id,
                reason,
            }
            .into()));
        }
        s.write_waker = Some(cx.waker().clone());
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
        let mut st = this.shared.lock();
        let closed = st.closed.clone();
        let Some(s) = st.streams.get_mut(&this.id) else {
            return Poll::Ready(Ok(()));
        };
        let complete_before_reset =
            s.recv_fin && matches!(s.reset, Some(StreamError::ResetByPeer { .. }));
        if let Some(e) = &s.reset
            && !complete_before_reset
        {
            return Poll::Ready(Err(e.clone().into()));
        }
        if !s.recv_buf.is_empty() {
            let mut n = 0;
            while buf.remaining() > 0 {
                let Some(chunk) = s.recv_buf.front_mut() else {
                    break;
                };
                let take = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk.split_to(take));
                n += take;
                if chunk.is_empty() {
                    s.recv_buf.pop_front();
                }
            }
            s.recv_buffered -= n;
            let kick = st.consumed(this.id, n);
            drop(st);
            this.shared.kick(kick);
            return Poll::Ready(Ok(()));
        }
        if s.recv_fin {
            return Poll::Ready(Ok(()));
        }
        if let Some(reason) = closed {
            return Poll::Ready(Err(StreamError::SessionClosed {
                stream_id: this.id,
                reason,
            }
            .into()));
        }
        s.read_waker = Some(cx.waker().clone());
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
        let mut st = this.shared.lock();
        match st.write_capacity(this.id, buf.len(), max) {
            Err(e) => Poll::Ready(Err(e.into())),
            Ok(0) => {
                if let Some(s) = st.streams.get_mut(&this.id) {
                    s.write_waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Ok(n) => {
                st.queue_data(this.id, Bytes::copy_from_slice(&buf[..n]));
                drop(st);
                this.shared.write_now();
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
            let mut st = this.shared.lock();
            let unidirectional_or_done = st
                .streams
                .get(&this.id)
                .is_none_or(|s| s.local_fin || s.reset.is_some());
            if !unidirectional_or_done {
                let kick = st.queue_fin(this.id);
                drop(st);
                this.shared.kick(kick);
            }
        }
        this.poll_flushed(cx)
    }
}

impl Drop for SpdyStream {
    fn drop(&mut self) {
        let kick = self.shared.lock().handle_dropped(self.id);
        self.shared.kick(kick);
    }
}
