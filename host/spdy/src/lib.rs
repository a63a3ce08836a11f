//! SPDY/3.1 for the kubelet's `/exec` endpoint.
//!
//! kube-apiserver reaches a kubelet's exec endpoint with an HTTP/1.1 `Upgrade: SPDY/3.1` and then
//! opens one SPDY stream per channel (stdin, stdout, stderr, error, resize), each SYN_STREAM
//! naming its channel in a `streamtype` header. This crate implements just that protocol layer:
//!
//! - [`frame`]: frames as values;
//! - [`codec`]: incremental parsing and serialisation, with bounded frame sizes;
//! - [`header_block`]: zlib name/value blocks with the SPDY/3 dictionary, one stateful stream per
//!   direction;
//! - [`session`] and [`stream`]: a tokio session over any `AsyncRead + AsyncWrite` (server side,
//!   and a client side for tests), streams as `AsyncRead + AsyncWrite`, flow control, PING,
//!   RST_STREAM and GOAWAY.
//!
//! Inside, the protocol is a state machine apart from the machinery that runs it: `state` takes
//! a received frame or a local event and returns actions (frames to send, data for a stream,
//! streams to wake or forget, the session's end), with no I/O, lock or task inside; `shared`
//! holds it behind the session's lock together with what performs those actions (stream
//! buffers and wakers, PING channels, the `outbox` of frames for the writer, the transport's
//! sending half). Module dependencies inside the crate run one way, without cycles:
//!
//! ```text
//! session      → stream, shared, state, codec, config, error, frame
//! stream       → shared, state, error, frame
//! shared       → state, outbox, codec, config, error, frame
//! state        → config, error, frame
//! outbox       → frame
//! codec        → header_block, error, frame
//! header_block → dictionary, error, frame
//! config       → frame
//! error        → frame
//! ```
//!
//! The HTTP upgrade itself (the 101 answer and `X-Stream-Protocol-Version` negotiation) belongs to
//! the HTTP server; hand the upgraded connection to [`Session::server`].
//!
//! # Serving a kubelet exec request
//!
//! ```no_run
//! use spdy3::{Config, Headers, Session};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # async fn serve<T>(upgraded: T) -> std::io::Result<()>
//! # where T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static {
//! // `upgraded`: the connection after answering `101 Switching Protocols`
//! // (e.g. `hyper_util::rt::TokioIo::new(hyper::upgrade::on(req).await?)`).
//! let (session, mut incoming) = Session::server(upgraded, Config::default());
//! let (mut stdin, mut stdout, mut error) = (None, None, None);
//! while stdin.is_none() || stdout.is_none() || error.is_none() {
//!     let Some(stream) = incoming.accept().await else { break };
//!     let kind = stream.headers().get("streamtype").unwrap_or_default().to_owned();
//!     let stream = stream.accept(Headers::new()); // SYN_REPLY
//!     match kind.as_str() {
//!         "stdin" => stdin = Some(stream),
//!         "stdout" => stdout = Some(stream),
//!         "error" => error = Some(stream),
//!         _ => stream.reset(spdy3::RstStatus::RefusedStream),
//!     }
//! }
//! if let (Some(mut i), Some(mut o)) = (stdin, stdout) {
//!     tokio::io::copy(&mut i, &mut o).await?; // EOF at the client's FIN
//!     o.shutdown().await?; // our FIN
//! }
//! if let Some(mut e) = error {
//!     e.write_all(br#"{"metadata":{},"status":"Success"}"#).await?;
//!     e.shutdown().await?;
//! }
//! session.go_away(); // GOAWAY; the transport closes once the streams are done
//! session.closed().await;
//! # Ok(()) }
//! ```
//!
//! Reference: the SPDY Protocol Draft 3.1 (Chromium project). Deviations are documented where
//! they are made; the important one is [`FlowControl::Adaptive`]: Kubernetes' SPDY peer
//! (`github.com/moby/spdystream`) never sends WINDOW_UPDATE, so a sender that waits for one would
//! stall after 64 KiB.

pub mod codec;
mod config;
mod dictionary;
pub mod error;
pub mod frame;
pub mod header_block;
mod outbox;
pub mod session;
mod shared;
mod state;
pub mod stream;

pub use config::{Config, FlowControl};
pub use error::{CodecError, HeaderBlockError, SessionError, StreamError};
pub use frame::{Frame, GoAwayStatus, Headers, RstStatus, StreamId};
pub use session::{Incoming, Role, Session};
pub use stream::{IncomingStream, SpdyStream};
