//! Session settings.

use crate::frame::DEFAULT_WINDOW;

/// How a session treats SPDY/3.1 flow control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlowControl {
    /// As the SPDY/3.1 draft says: writers wait for the peer's WINDOW_UPDATE once its window is
    /// spent, and a peer that overruns our window gets RST_STREAM FLOW_CONTROL_ERROR (or, for
    /// the session window, GOAWAY).
    Strict,
    /// For Kubernetes. Its SPDY library (`moby/spdystream`, used by kube-apiserver, kubectl and
    /// the Go kubelet) implements no flow control: it never sends WINDOW_UPDATE and ignores ours.
    /// A strict sender would stall after 64 KiB. In this mode:
    ///
    /// - we still announce and grant windows (SETTINGS, WINDOW_UPDATE) as the spec says;
    /// - the peer's first frame tells: SPDY/3.1 implementations (this crate, browsers) open with
    ///   SETTINGS or WINDOW_UPDATE, spdystream with SYN_STREAM or PING. A peer of the first kind
    ///   gets strict SPDY/3.1 flow control both ways (stream windows; the session window is
    ///   granted but not enforced on receipt, for SPDY/3 peers that know none);
    /// - with a peer of the second kind, its windows are tracked but do not limit our writes (the
    ///   bounded write queue and TCP are the back-pressure), and once a stream has buffered a
    ///   window's worth of unread data the session stops reading the connection until the
    ///   application reads (TCP back-pressure, as spdystream does it). Should such a peer send a
    ///   WINDOW_UPDATE or SETTINGS_INITIAL_WINDOW_SIZE later, its windows apply from then on;
    /// - before the peer's first frame, windows apply.
    #[default]
    Adaptive,
}

/// Limits and windows of a session. `Config::default()` suits the kubelet.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our receive window per stream, announced with SETTINGS_INITIAL_WINDOW_SIZE when it is not
    /// the protocol default of 64 KiB. Also the unread-data bound per stream in
    /// [`FlowControl::Adaptive`].
    pub initial_window_size: u32,
    /// Our session-level receive window (SPDY/3.1); starts at 64 KiB on the wire and is raised to
    /// this with a WINDOW_UPDATE on stream 0 when the session starts.
    pub session_window_size: u32,
    /// The largest frame payload accepted from the peer; larger frames end the session.
    pub max_frame_len: usize,
    /// The largest inflated header block accepted from the peer.
    pub max_header_block_len: usize,
    /// Peer-initiated streams open at once; more are refused with RST_STREAM REFUSED_STREAM.
    pub max_concurrent_streams: u32,
    /// Our data frames carry at most this many bytes.
    pub max_data_frame_len: usize,
    /// Bytes queued for the socket before writers wait.
    pub write_queue_limit: usize,
    /// See [`FlowControl`].
    pub flow_control: FlowControl,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            initial_window_size: DEFAULT_WINDOW,
            session_window_size: 1 << 20,
            max_frame_len: 1 << 20,
            max_header_block_len: 64 << 10,
            max_concurrent_streams: 100,
            max_data_frame_len: 16 << 10,
            write_queue_limit: 256 << 10,
            flow_control: FlowControl::Adaptive,
        }
    }
}

impl Config {
    /// The defaults, with [`FlowControl::Strict`].
    pub fn strict() -> Self {
        Self {
            flow_control: FlowControl::Strict,
            ..Self::default()
        }
    }

    /// Clamps values into the ranges the protocol and the implementation need.
    pub(crate) fn normalized(mut self) -> Self {
        use crate::frame::{MAX_PAYLOAD_LEN, MAX_WINDOW};
        self.initial_window_size = self.initial_window_size.clamp(1024, MAX_WINDOW);
        self.session_window_size = self.session_window_size.clamp(DEFAULT_WINDOW, MAX_WINDOW);
        self.max_frame_len = self.max_frame_len.clamp(1024, MAX_PAYLOAD_LEN);
        self.max_header_block_len = self.max_header_block_len.max(1024);
        self.max_concurrent_streams = self.max_concurrent_streams.max(1);
        self.max_data_frame_len = self.max_data_frame_len.clamp(1, MAX_PAYLOAD_LEN);
        self.write_queue_limit = self.write_queue_limit.max(self.max_data_frame_len);
        self
    }
}
