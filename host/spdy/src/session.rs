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
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::codec::{Decoded, Decoder};
use crate::config::Config;
use crate::error::SessionError;
use crate::frame::{Frame, GoAwayStatus, Headers};
use crate::shared::{Kick, Shared, WriterSide};
pub use crate::state::Role;
use crate::stream::{IncomingStream, SpdyStream};

/// A handle on a running session. Cheap to clone.
pub struct Session {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.shared.lock();
        f.debug_struct("Session")
            .field("role", &self.shared.role)
            .field("streams", &inner.state.stream_count())
            .field("closed", &inner.state.closed())
            .finish()
    }
}

impl Clone for Session {
    fn clone(&self) -> Self {
        self.shared.lock().state.handle_added();
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.apply(|s, out| s.session_handle_dropped(out));
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
        shared.kick(Kick {
            writer: true,
            ..Kick::default()
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
        let (id, kick) = self
            .shared
            .lock()
            .apply_with(|s, out| s.open(headers.clone(), fin, out));
        self.shared.kick(kick);
        Ok(SpdyStream::new(self.shared.clone(), id?, headers))
    }

    /// Sends PING and waits for the echo; returns the round-trip time.
    pub async fn ping(&self) -> Result<Duration, SessionError> {
        let start = Instant::now();
        let (rx, kick) = {
            let mut inner = self.shared.lock();
            let (id, kick) = inner.apply_with(|s, out| s.ping(out));
            (id.map(|id| inner.await_ping(id)), kick)
        };
        self.shared.kick(kick);
        let rx = rx?;
        match rx.await {
            Ok(()) => Ok(start.elapsed()),
            Err(_) => Err(self.close_reason()),
        }
    }

    /// Graceful shutdown: GOAWAY (status OK), refuse new streams, close the transport when the
    /// open streams are done.
    pub fn go_away(&self) {
        self.shared.apply(|s, out| {
            s.send_goaway(GoAwayStatus::Ok, out);
            s.maybe_finish_session(out);
        });
    }

    /// Immediate shutdown: GOAWAY, then close; open streams fail.
    pub fn abort(&self) {
        self.shared.apply(|s, out| {
            s.send_goaway(GoAwayStatus::Ok, out);
            s.close(SessionError::ShutDown, out);
        });
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().state.closed().is_some()
    }

    /// Streams currently tracked (open, half-closed, or awaiting accept).
    pub fn stream_count(&self) -> usize {
        self.shared.lock().state.stream_count()
    }

    /// Waits until the session ends and says why.
    pub async fn closed(&self) -> SessionError {
        loop {
            let notified = self.shared.closed_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(reason) = self.shared.lock().state.closed().cloned() {
                return reason;
            }
            notified.await;
        }
    }

    fn close_reason(&self) -> SessionError {
        self.shared
            .lock()
            .state
            .closed()
            .cloned()
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
        let mut inner = self.shared.lock();
        if let Some(syn) = inner.state.take_incoming() {
            drop(inner);
            return Poll::Ready(Some(IncomingStream::new(self.shared.clone(), syn)));
        }
        if inner.state.incoming_ended() {
            return Poll::Ready(None);
        }
        inner.incoming_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.shared.apply(|s, out| s.incoming_dropped(out));
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
            if shared.lock().state.closed().is_some() {
                return;
            }
            let frame = match decoder.decode(&mut buf) {
                Ok(Decoded::Frame(f)) => f,
                Ok(Decoded::NeedMore(n)) => {
                    buf.reserve(n.max(4096));
                    break;
                }
                Err(e) => {
                    shared.apply(|s, out| s.protocol_error(e.to_string(), out));
                    return;
                }
            };
            tracing::trace!(?frame, "SPDY frame received");
            let data_stream = match &frame {
                Frame::Data { stream_id, .. } => Some(*stream_id),
                _ => None,
            };
            shared.apply(|s, out| s.on_frame(frame, out));
            // Back-pressure: stop reading while a stream sits on a window of unread data, or
            // while our replies pile up unwritten.
            loop {
                let wait = {
                    let inner = shared.lock();
                    inner.reader_should_wait_for_queue()
                        || data_stream.is_some_and(|id| inner.state.reader_should_wait_for(id))
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
        shared.apply(|s, out| s.close(reason, out));
        return;
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
            shared.apply(|s, out| s.close(e, out));
            break;
        }
        // The queue was empty when the drain ended: a closed session is done.
        if shared.lock().state.closed().is_some() {
            break;
        }
        shared.writer_wake.notified().await;
    }
    let _ = poll_fn(|cx| shared.writer().poll_shutdown(cx)).await;
}
