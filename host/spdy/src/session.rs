//! A SPDY/3.1 session over a tokio byte stream.
//!
//! [`Session::server`] (or [`Session::client`]) splits the transport and spawns two tasks: a
//! reader that decodes frames and applies them to the shared state, and a writer that encodes
//! queued frames in order. The returned [`Session`] opens streams, pings and shuts down;
//! [`Incoming`] yields the streams the peer opens.
//!
//! Ending: [`Session::go_away`] sends GOAWAY, refuses new streams and closes the transport once
//! the open streams are done; [`Session::abort`] closes at once. A session whose handles
//! (`Session` clones and `Incoming`) are all dropped drains the same way as `go_away`. A peer
//! that closes the transport, breaks the protocol, or sends GOAWAY ends it too; see
//! [`Session::closed`].

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::codec::{Decoded, Decoder, Encoder};
use crate::config::Config;
use crate::error::SessionError;
use crate::frame::{Frame, GoAwayStatus, Headers};
pub use crate::state::Role;
use crate::state::Shared;
use crate::stream::{IncomingStream, SpdyStream};

/// A handle on a running session. Cheap to clone.
pub struct Session {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("Session")
            .field("role", &self.shared.role)
            .field("streams", &st.streams.len())
            .field("closed", &st.closed)
            .finish()
    }
}

impl Clone for Session {
    fn clone(&self) -> Self {
        self.shared.lock().handles += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let kick = {
            let mut st = self.shared.lock();
            st.handles = st.handles.saturating_sub(1);
            st.maybe_finish_session()
        };
        self.shared.kick(kick);
    }
}

impl Session {
    /// Runs the server side of a session on `io` (an upgraded HTTP connection). Must be called
    /// inside a tokio runtime.
    pub fn server<T>(io: T, config: Config) -> (Session, Incoming)
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        Self::start(io, config, Role::Server)
    }

    /// Runs the client side of a session on `io`.
    pub fn client<T>(io: T, config: Config) -> (Session, Incoming)
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        Self::start(io, config, Role::Client)
    }

    fn start<T>(io: T, config: Config, role: Role) -> (Session, Incoming)
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(io);
        let shared = Shared::new(config, role, WriterSide::new(wr));
        tokio::spawn(read_loop(rd, shared.clone()));
        tokio::spawn(write_loop(shared.clone()));
        shared.kick(crate::state::Kick {
            writer: true,
            ..Default::default()
        });
        (
            Session {
                shared: shared.clone(),
            },
            Incoming { shared },
        )
    }

    /// Which side this is.
    pub fn role(&self) -> Role {
        self.shared.role
    }

    /// Opens a stream (SYN_STREAM with `headers`; `fin` for a stream we will not write to).
    /// Returns at once; [`SpdyStream::reply`] waits for the peer's SYN_REPLY.
    pub fn open_stream(&self, headers: Headers, fin: bool) -> Result<SpdyStream, SessionError> {
        let id = {
            let mut st = self.shared.lock();
            st.open(headers.clone(), fin)?
        };
        self.shared.kick(crate::state::Kick {
            writer: true,
            ..Default::default()
        });
        Ok(SpdyStream::new(self.shared.clone(), id, headers))
    }

    /// Sends PING and waits for the echo; returns the round-trip time.
    pub async fn ping(&self) -> Result<Duration, SessionError> {
        let start = Instant::now();
        let rx = self.shared.lock().new_ping()?;
        self.shared.kick(crate::state::Kick {
            writer: true,
            ..Default::default()
        });
        match rx.await {
            Ok(()) => Ok(start.elapsed()),
            Err(_) => Err(self.close_reason()),
        }
    }

    /// Graceful shutdown: GOAWAY (status OK), refuse new streams, close the transport when the
    /// open streams are done.
    pub fn go_away(&self) {
        let kick = {
            let mut st = self.shared.lock();
            st.send_goaway(GoAwayStatus::Ok)
                .or(st.maybe_finish_session())
        };
        self.shared.kick(kick);
    }

    /// Immediate shutdown: GOAWAY, then close; open streams fail.
    pub fn abort(&self) {
        let kick = {
            let mut st = self.shared.lock();
            st.send_goaway(GoAwayStatus::Ok)
                .or(st.close(SessionError::ShutDown))
        };
        self.shared.kick(kick);
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// Streams currently tracked (open, half-closed, or awaiting accept).
    pub fn stream_count(&self) -> usize {
        self.shared.lock().streams.len()
    }

    /// Waits until the session ends and says why.
    pub async fn closed(&self) -> SessionError {
        loop {
            let notified = self.shared.closed_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(reason) = self.shared.lock().closed.clone() {
                return reason;
            }
            notified.await;
        }
    }

    fn close_reason(&self) -> SessionError {
        self.shared
            .lock()
            .closed
            .clone()
            .unwrap_or(SessionError::ShutDown)
    }
}

/// The streams the peer opens, in order. Dropping it refuses all further streams.
pub struct Incoming {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming").finish_non_exhaustive()
    }
}

impl Incoming {
    /// The next peer-opened stream, or `None` once the session has ended (or sent GOAWAY).
    pub async fn accept(&mut self) -> Option<IncomingStream> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Poll form of [`Incoming::accept`] (wrap it with `futures::stream::poll_fn` for a `Stream`).
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Option<IncomingStream>> {
        let mut st = self.shared.lock();
        if let Some(p) = st.incoming.pop_front() {
            drop(st);
            return Poll::Ready(Some(IncomingStream::new(self.shared.clone(), p.syn)));
        }
        if st.closed.is_some() || st.goaway_sent_or_closed() {
            return Poll::Ready(None);
        }
        st.incoming_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        let kick = {
            let mut st = self.shared.lock();
            st.handles = st.handles.saturating_sub(1);
            st.incoming_dropped().or(st.maybe_finish_session())
        };
        self.shared.kick(kick);
    }
}

async fn read_loop<R: AsyncRead>(rd: R, shared: Arc<Shared>) {
    tokio::pin!(rd);
    let cfg = &shared.config;
    let mut decoder = Decoder::new(cfg.max_frame_len, cfg.max_header_block_len);
    let mut buf = BytesMut::with_capacity(16 << 10);
    loop {
        // Take every complete frame off the buffer.
        loop {
            if shared.lock().closed.is_some() {
                return;
            }
            let frame = match decoder.decode(&mut buf) {
                Ok(Decoded::Frame(f)) => f,
                Ok(Decoded::NeedMore(n)) => {
                    buf.reserve(n.max(4096));
                    break;
                }
                Err(e) => {
                    let kick = shared.lock().protocol_error(e.to_string());
                    shared.kick(kick);
                    return;
                }
            };
            tracing::trace!(?frame, "SPDY frame received");
            let data_stream = match &frame {
                Frame::Data { stream_id, .. } => Some(*stream_id),
                _ => None,
            };
            let kick = shared.lock().on_frame(frame);
            shared.kick(kick);
            // Back-pressure: stop reading while a stream sits on a window of unread data, or
            // while our replies pile up unwritten.
            loop {
                let wait = {
                    let st = shared.lock();
                    st.reader_should_wait_for_queue()
                        || data_stream.is_some_and(|id| st.reader_should_wait_for(id))
                };
                if !wait {
                    break;
                }
                shared.reader_wake.notified().await;
            }
        }
        let n = tokio::select! {
            r = rd.read_buf(&mut buf) => r,
            _ = shared.reader_wake.notified() => continue,
        };
        let reason = match n {
            Ok(0) => SessionError::PeerClosed,
            Ok(_) => continue,
            Err(e) => SessionError::Io(e.to_string()),
        };
        let kick = shared.lock().close(reason);
        shared.kick(kick);
        return;
    }
}

/// The sending half of the transport and what is on its way through it. Shared by the writer
/// task and by streams writing data: a stream that finds it idle writes its frame itself,
/// saving a wake-up of the writer task on the keystroke → echo path.
pub(crate) struct WriterSide {
    wr: Pin<Box<dyn AsyncWrite + Send>>,
    /// Created on first use (zlib initialisation can fail; that closes the session).
    encoder: Option<Encoder>,
    /// Encoded frames not yet accepted by the transport.
    out: BytesMut,
    /// The frames in `out`, accounted as written once `out` is written and flushed.
    batch: Vec<(Frame, usize)>,
    /// `out` is written; the transport's flush is pending.
    flushing: bool,
    /// Nothing waits on the transport. Otherwise the writer task does (its waker is
    /// registered with the transport) and streams leave the writing to it: polling the
    /// transport with another waker would replace that one.
    pub(crate) idle: bool,
}

impl WriterSide {
    pub(crate) fn new<W: AsyncWrite + Send + 'static>(wr: W) -> Self {
        WriterSide {
            wr: Box::pin(wr),
            encoder: None,
            out: BytesMut::with_capacity(64 << 10),
            batch: Vec::new(),
            flushing: false,
            idle: true,
        }
    }

    /// Writes every queued frame: `Ready(Ok)` once the queue is empty and all of it is
    /// flushed, `Pending` while the transport is not ready (it wakes `cx`).
    pub(crate) fn poll_drain(
        &mut self,
        shared: &Shared,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), SessionError>> {
        loop {
            if self.out.is_empty() && !self.flushing {
                {
                    let mut st = shared.lock();
                    // Batch up to ~64 KiB so one syscall carries many small frames.
                    let mut cost = 0;
                    while cost < (64 << 10) {
                        let Some(item) = st.urgent.pop_front().or_else(|| st.queue.pop_front())
                        else {
                            break;
                        };
                        cost += item.1;
                        self.batch.push(item);
                    }
                }
                if self.batch.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                let encoder =
                    match &mut self.encoder {
                        Some(e) => e,
                        None => self.encoder.insert(Encoder::new().map_err(|e| {
                            SessionError::Io(format!("cannot encode a frame: {e}"))
                        })?),
                    };
                for (frame, _) in &self.batch {
                    tracing::trace!(?frame, "SPDY frame sent");
                    encoder
                        .encode(frame, &mut self.out)
                        .map_err(|e| SessionError::Io(format!("cannot encode a frame: {e}")))?;
                }
            }
            while !self.out.is_empty() {
                let n = ready!(self.wr.as_mut().poll_write(cx, &self.out))
                    .map_err(|e| SessionError::Io(e.to_string()))?;
                if n == 0 {
                    return Poll::Ready(Err(SessionError::Io(
                        "the transport accepts no more data".into(),
                    )));
                }
                let _ = self.out.split_to(n);
                self.flushing = true;
            }
            ready!(self.wr.as_mut().poll_flush(cx)).map_err(|e| SessionError::Io(e.to_string()))?;
            self.flushing = false;
            let kick = {
                let mut st = shared.lock();
                for (frame, cost) in self.batch.drain(..) {
                    let data_of = match &frame {
                        Frame::Data {
                            stream_id,
                            data,
                            fin,
                        } => Some((*stream_id, data.len() + usize::from(*fin))),
                        _ => None,
                    };
                    st.written(cost, data_of);
                }
                st.wake_writers();
                crate::state::Kick {
                    reader: true,
                    ..Default::default()
                }
            };
            shared.kick(kick);
        }
    }
}

async fn write_loop(shared: Arc<Shared>) {
    loop {
        let drained = poll_fn(|cx| {
            let mut w = shared.writer();
            let r = w.poll_drain(&shared, cx);
            w.idle = r.is_ready();
            r
        })
        .await;
        if let Err(e) = drained {
            let kick = shared.lock().close(e);
            shared.kick(kick);
            break;
        }
        // The queue was empty when the drain ended: a closed session is done.
        if shared.lock().closed.is_some() {
            break;
        }
        shared.writer_wake.notified().await;
    }
    let _ = poll_fn(|cx| shared.writer().wr.as_mut().poll_shutdown(cx)).await;
}
