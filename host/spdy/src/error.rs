//! Error types at this crate's boundaries.

use crate::frame::{GoAwayStatus, RstStatus, StreamId};

/// A frame that could not be decoded or encoded. Every decoding error is fatal to the session:
/// the header decompressor is shared by all streams, so after a bad frame its state cannot be
/// trusted; the session answers with GOAWAY (PROTOCOL_ERROR) and closes.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The length field exceeds the configured bound.
    #[error(
        "SPDY {kind} frame announces {len} payload bytes, more than the limit of {max}; the peer is \
         misbehaving, or Config::max_frame_len must be raised"
    )]
    FrameTooLarge {
        /// "data" or "control".
        kind: &'static str,
        /// Announced payload length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A control frame of another protocol version.
    #[error(
        "SPDY control frame has version {0}; only version 3 (SPDY/3 and SPDY/3.1) is supported"
    )]
    UnsupportedVersion(u16),
    /// A frame whose fixed fields are wrong.
    #[error("malformed SPDY {frame} frame: {reason}")]
    Malformed {
        /// The frame type.
        frame: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A header block that could not be (de)compressed or parsed.
    #[error("SPDY header block in a {frame} frame: {source}")]
    HeaderBlock {
        /// The frame type that carried it.
        frame: &'static str,
        /// The cause.
        #[source]
        source: HeaderBlockError,
    },
}

/// A problem with a zlib-compressed name/value block.
#[derive(Debug, thiserror::Error)]
pub enum HeaderBlockError {
    /// zlib refused the compressed bytes (wrong dictionary, corrupt or truncated stream).
    #[error(
        "zlib could not inflate it ({0}); the peer's compression context is out of step or corrupt"
    )]
    Inflate(String),
    /// zlib could not compress (should not happen with valid input).
    #[error("zlib could not deflate it ({0})")]
    Deflate(String),
    /// The decompressed block is bigger than allowed.
    #[error(
        "it inflates to more than {max} bytes, the configured limit (Config::max_header_block_len)"
    )]
    TooLarge {
        /// The limit in force.
        max: usize,
    },
    /// The zlib stream ended; SPDY header compression never ends a stream.
    #[error("the zlib stream ended (SPDY never finishes the header compression stream)")]
    StreamEnded,
    /// The name/value layout is wrong.
    #[error("bad name/value layout: {0}")]
    Layout(&'static str),
    /// A name or value is not UTF-8.
    #[error("a header name or value is not valid UTF-8")]
    NotUtf8,
}

/// Why a stream operation failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StreamError {
    /// The peer reset the stream.
    #[error("SPDY stream {stream_id} was reset by the peer ({status:?})")]
    ResetByPeer {
        /// The stream.
        stream_id: StreamId,
        /// The peer's status code.
        status: RstStatus,
    },
    /// This side reset the stream.
    #[error("SPDY stream {stream_id} was reset locally ({status:?})")]
    ResetLocally {
        /// The stream.
        stream_id: StreamId,
        /// The status we sent.
        status: RstStatus,
    },
    /// Writing after `shutdown` / FIN.
    #[error("SPDY stream {stream_id}: write after this side was closed with FIN")]
    WriteAfterFin {
        /// The stream.
        stream_id: StreamId,
    },
    /// The peer made the stream unidirectional (we may not send).
    #[error("SPDY stream {stream_id} is unidirectional: the peer accepts no data on it")]
    Unidirectional {
        /// The stream.
        stream_id: StreamId,
    },
    /// The session ended.
    #[error("SPDY stream {stream_id}: the session ended ({reason})")]
    SessionClosed {
        /// The stream.
        stream_id: StreamId,
        /// The session's end reason.
        reason: SessionError,
    },
}

impl From<StreamError> for std::io::Error {
    fn from(e: StreamError) -> Self {
        let kind = match &e {
            StreamError::ResetByPeer { .. } | StreamError::ResetLocally { .. } => {
                std::io::ErrorKind::ConnectionReset
            }
            StreamError::WriteAfterFin { .. } | StreamError::Unidirectional { .. } => {
                std::io::ErrorKind::BrokenPipe
            }
            StreamError::SessionClosed { .. } => std::io::ErrorKind::ConnectionAborted,
        };
        std::io::Error::new(kind, e)
    }
}

/// Why a session ended or refused an operation.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    /// The transport failed (message of the I/O error).
    #[error("SPDY transport I/O error: {0}")]
    Io(String),
    /// The peer closed the transport.
    #[error("the peer closed the SPDY connection")]
    PeerClosed,
    /// The peer broke the protocol; we sent GOAWAY.
    #[error("the peer broke the SPDY protocol: {0}")]
    Protocol(String),
    /// The peer sent GOAWAY.
    #[error("the peer sent GOAWAY ({status:?}, last good stream {last_good_stream_id})")]
    GoAwayReceived {
        /// The peer's status.
        status: GoAwayStatus,
        /// The last of our streams the peer processed.
        last_good_stream_id: StreamId,
    },
    /// This side shut the session down.
    #[error("the SPDY session was shut down locally")]
    ShutDown,
    /// Stream ids are exhausted (2^31 streams opened).
    #[error("no SPDY stream ids left on this session; open a new connection")]
    StreamIdsExhausted,
}
