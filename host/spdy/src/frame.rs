//! SPDY/3.1 frames as values.
//!
//! Every frame starts with an 8-byte header (SPDY/3 draft, section 2.2). The top bit tells control
//! frames from data frames:
//!
//! ```text
//! control: |1| version (15) | type (16) |  flags (8) | length (24) | payload …
//! data:    |0| stream id (31)           |  flags (8) | length (24) | payload …
//! ```
//!
//! The header-carrying control frames (SYN_STREAM, SYN_REPLY, HEADERS) hold their headers here
//! already decompressed; [`crate::codec`] does the zlib step.

use bytes::Bytes;

/// The only protocol version this crate speaks. SPDY/3.1 still writes `3` in control frames: 3.1
/// differs from 3 only in session-level flow control, which is negotiated out of band (here by the
/// `Upgrade: SPDY/3.1` header).
pub const VERSION: u16 = 3;

/// The default stream and session flow-control window (64 KiB, section 2.6.8).
pub const DEFAULT_WINDOW: u32 = 65_536;

/// The largest window or window delta the protocol allows (2^31 - 1).
pub const MAX_WINDOW: u32 = 0x7fff_ffff;

/// The largest payload the 24-bit length field can describe.
pub const MAX_PAYLOAD_LEN: usize = 0x00ff_ffff;

/// A stream identifier (31 bits; 0 means "the session" where a frame allows it).
pub type StreamId = u32;

/// Control frame type codes.
pub(crate) mod kind {
    pub const SYN_STREAM: u16 = 1;
    pub const SYN_REPLY: u16 = 2;
    pub const RST_STREAM: u16 = 3;
    pub const SETTINGS: u16 = 4;
    pub const PING: u16 = 6;
    pub const GOAWAY: u16 = 7;
    pub const HEADERS: u16 = 8;
    pub const WINDOW_UPDATE: u16 = 9;
}

/// FLAG_FIN on data frames, SYN_STREAM, SYN_REPLY and HEADERS: the sender's half of the stream
/// ends with this frame.
pub(crate) const FLAG_FIN: u8 = 0x01;
/// FLAG_UNIDIRECTIONAL on SYN_STREAM: the recipient may not send on this stream.
pub(crate) const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// FLAG_SETTINGS_CLEAR_SETTINGS on SETTINGS.
pub(crate) const FLAG_CLEAR_SETTINGS: u8 = 0x01;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// SYN_STREAM: opens a stream.
    SynStream(SynStream),
    /// SYN_REPLY: the recipient's answer to a SYN_STREAM.
    SynReply {
        /// The stream being answered.
        stream_id: StreamId,
        /// Half-closes the replying side.
        fin: bool,
        /// Reply headers.
        headers: Headers,
    },
    /// RST_STREAM: aborts a stream.
    RstStream {
        /// The stream being reset.
        stream_id: StreamId,
        /// Why.
        status: RstStatus,
    },
    /// SETTINGS: session parameters.
    Settings {
        /// FLAG_SETTINGS_CLEAR_SETTINGS (only meaningful for persisted settings, which we ignore).
        clear: bool,
        /// The entries in frame order.
        entries: Vec<Setting>,
    },
    /// PING: echoed by the side that did not send it.
    Ping {
        /// Odd when sent by the client, even when sent by the server.
        id: u32,
    },
    /// GOAWAY: the sender accepts no new streams.
    GoAway {
        /// The last peer-initiated stream the sender has acted upon.
        last_good_stream_id: StreamId,
        /// Why.
        status: GoAwayStatus,
    },
    /// HEADERS: extra headers for an open stream.
    Headers {
        /// The stream.
        stream_id: StreamId,
        /// Half-closes the sending side.
        fin: bool,
        /// The headers.
        headers: Headers,
    },
    /// WINDOW_UPDATE: grants the recipient more send window (stream 0: the whole session, 3.1).
    WindowUpdate {
        /// The stream, or 0 for the session.
        stream_id: StreamId,
        /// 1 ..= 2^31 - 1.
        delta: u32,
    },
    /// A data frame.
    Data {
        /// The stream (never 0).
        stream_id: StreamId,
        /// Half-closes the sending side.
        fin: bool,
        /// The payload.
        data: Bytes,
    },
    /// A control frame of a type this version does not define (e.g. CREDENTIAL, or NOOP from
    /// SPDY/2). The spec says to ignore these; its payload has been skipped.
    Unknown {
        /// Its type code.
        frame_type: u16,
        /// Its flags.
        flags: u8,
        /// How many payload bytes were skipped.
        len: usize,
    },
}

impl Frame {
    /// The stream this frame is about, or `None` for session frames (SETTINGS, PING, GOAWAY,
    /// unknown types; WINDOW_UPDATE on stream 0).
    pub fn stream_id(&self) -> Option<StreamId> {
        match self {
            Frame::SynStream(s) => Some(s.stream_id),
            Frame::SynReply { stream_id, .. }
            | Frame::RstStream { stream_id, .. }
            | Frame::Headers { stream_id, .. }
            | Frame::Data { stream_id, .. } => Some(*stream_id),
            Frame::WindowUpdate { stream_id, .. } if *stream_id != 0 => Some(*stream_id),
            _ => None,
        }
    }
}

/// The SYN_STREAM frame's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynStream {
    /// The new stream: odd when the client opens it, even when the server does.
    pub stream_id: StreamId,
    /// For server push; 0 otherwise.
    pub associated_to: StreamId,
    /// 0 (highest) ..= 7 (lowest).
    pub priority: u8,
    /// The CREDENTIAL slot (unused here, carried for completeness).
    pub slot: u8,
    /// The opener sends nothing more.
    pub fin: bool,
    /// The recipient may not send.
    pub unidirectional: bool,
    /// The request headers (`streamtype` and friends for Kubernetes).
    pub headers: Headers,
}

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Per-entry flags (PERSIST_VALUE 0x1, PERSISTED 0x2).
    pub flags: u8,
    /// The 24-bit setting id.
    pub id: u32,
    /// Its value.
    pub value: u32,
}

/// SETTINGS ids used by this crate.
pub mod setting_id {
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub const MAX_CONCURRENT_STREAMS: u32 = 4;
    /// SETTINGS_INITIAL_WINDOW_SIZE: the sender's receive window for new (and, in 3.1, existing)
    /// streams.
    pub const INITIAL_WINDOW_SIZE: u32 = 7;
}

/// RST_STREAM status codes (section 2.6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RstStatus {
    /// 1: a generic protocol error.
    ProtocolError,
    /// 2: a frame for a stream that is not active.
    InvalidStream,
    /// 3: the stream was refused before any processing.
    RefusedStream,
    /// 4: an unsupported SPDY version.
    UnsupportedVersion,
    /// 5: the stream is no longer needed.
    Cancel,
    /// 6: an internal error.
    InternalError,
    /// 7: the peer violated flow control.
    FlowControlError,
    /// 8: a SYN_STREAM for a stream already open.
    StreamInUse,
    /// 9: data or a SYN_REPLY for a half-closed stream.
    StreamAlreadyClosed,
    /// 11: a frame larger than the recipient accepts.
    FrameTooLarge,
    /// Any other code, kept as received.
    Other(u32),
}

impl RstStatus {
    /// The wire code.
    pub fn code(self) -> u32 {
        match self {
            RstStatus::ProtocolError => 1,
            RstStatus::InvalidStream => 2,
            RstStatus::RefusedStream => 3,
            RstStatus::UnsupportedVersion => 4,
            RstStatus::Cancel => 5,
            RstStatus::InternalError => 6,
            RstStatus::FlowControlError => 7,
            RstStatus::StreamInUse => 8,
            RstStatus::StreamAlreadyClosed => 9,
            RstStatus::FrameTooLarge => 11,
            RstStatus::Other(c) => c,
        }
    }

    /// From a wire code.
    pub fn from_code(code: u32) -> Self {
        match code {
            1 => RstStatus::ProtocolError,
            2 => RstStatus::InvalidStream,
            3 => RstStatus::RefusedStream,
            4 => RstStatus::UnsupportedVersion,
            5 => RstStatus::Cancel,
            6 => RstStatus::InternalError,
            7 => RstStatus::FlowControlError,
            8 => RstStatus::StreamInUse,
            9 => RstStatus::StreamAlreadyClosed,
            11 => RstStatus::FrameTooLarge,
            c => RstStatus::Other(c),
        }
    }
}

/// GOAWAY status codes (section 2.6.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GoAwayStatus {
    /// 0: a normal shutdown.
    Ok,
    /// 1: the peer broke the protocol.
    ProtocolError,
    /// 2: an internal error.
    InternalError,
    /// Any other code, kept as received.
    Other(u32),
}

impl GoAwayStatus {
    /// The wire code.
    pub fn code(self) -> u32 {
        match self {
            GoAwayStatus::Ok => 0,
            GoAwayStatus::ProtocolError => 1,
            GoAwayStatus::InternalError => 2,
            GoAwayStatus::Other(c) => c,
        }
    }

    /// From a wire code.
    pub fn from_code(code: u32) -> Self {
        match code {
            0 => GoAwayStatus::Ok,
            1 => GoAwayStatus::ProtocolError,
            2 => GoAwayStatus::InternalError,
            c => GoAwayStatus::Other(c),
        }
    }
}

/// A header block: ordered name/value pairs.
///
/// SPDY/3 requires lower-case names and carries repeated values of one name as a single value
/// joined with NUL bytes; [`Headers::get_all`] splits them again. Names and values are kept as
/// UTF-8 strings: Kubernetes only sends ASCII, and anything else is rejected by the decoder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    pairs: Vec<(String, String)>,
}

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a pair; the name is lower-cased as SPDY/3 requires. Adding a name that is already
    /// present joins the values with NUL, as the spec requires (names must be unique per block).
    pub fn insert(&mut self, name: impl AsRef<str>, value: impl Into<String>) {
        let name = name.as_ref().to_ascii_lowercase();
        let value = value.into();
        if let Some((_, existing)) = self.pairs.iter_mut().find(|(n, _)| *n == name) {
            existing.push('\0');
            existing.push_str(&value);
        } else {
            self.pairs.push((name, value));
        }
    }

    /// Builder form of [`Headers::insert`].
    pub fn with(mut self, name: impl AsRef<str>, value: impl Into<String>) -> Self {
        self.insert(name, value);
        self
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).next()
    }

    /// Every value of `name` (case-insensitive), split at NUL.
    pub fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let name = name.to_ascii_lowercase();
        self.pairs
            .iter()
            .filter(move |(n, _)| *n == name)
            .flat_map(|(_, v)| v.split('\0'))
    }

    /// The raw pairs (values still NUL-joined) in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// How many distinct names.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// No pairs at all.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Pushes a decoded pair as it came off the wire (the decoder has checked it).
    pub(crate) fn push_raw(&mut self, name: String, value: String) {
        self.pairs.push((name, value));
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.pairs.iter().any(|(n, _)| n == name)
    }
}

impl<N: AsRef<str>, V: Into<String>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut h = Headers::new();
        for (n, v) in iter {
            h.insert(n, v);
        }
        h
    }
}
