//! The SPDY/3.1 session as a state machine: a received frame or a local event in, actions out.
//!
//! [`State`] knows what the protocol needs: streams and their windows, FIN and reset states,
//! stream ids, GOAWAY, which peer streams await the application. It does no I/O, takes no lock
//! and wakes no task. Every event method appends [`Action`]s to `out`; the session
//! (`crate::shared`) performs them in order: queues frames for the writer, hands data to stream
//! readers, wakes whoever waits. Frames come out in the order they must hit the wire (stream ids
//! increase, SYN_REPLY precedes data, FIN comes last), and the writer compresses header blocks
//! in that same order, as the shared zlib stream requires.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use crate::config::{Config, FlowControl};
use crate::error::{SessionError, StreamError};
use crate::frame::{
    DEFAULT_WINDOW, Frame, GoAwayStatus, Headers, MAX_WINDOW, RstStatus, Setting, StreamId,
    SynStream, setting_id,
};

#[cfg(test)]
mod tests;

/// Which end of the connection this session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepts odd (client-initiated) streams, opens even ones.
    Server,
    /// Opens odd streams.
    Client,
}

impl Role {
    fn first_local_id(self) -> StreamId {
        match self {
            Role::Server => 2,
            Role::Client => 1,
        }
    }

    fn is_local(self, id: StreamId) -> bool {
        (id % 2 == 1) == (self == Role::Client)
    }
}

/// What the session must do after an event, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Queue a frame for the wire. Session and flow-control frames go ahead of queued data.
    Send(Frame),
    /// Queue a frame behind everything already queued, data included (the RST_STREAM that
    /// follows our FIN when a stream is dropped before the peer finished).
    SendBehindData(Frame),
    /// We reset the stream: its data frames still queued are void.
    CancelQueued(StreamId),
    /// Data for the stream's reader.
    Deliver(StreamId, Bytes),
    /// The stream's unread data is void (the peer reset it before its FIN, or nobody reads).
    Discard(StreamId),
    /// The peer half-closed the stream: its reader gets EOF after the data delivered.
    PeerFinished(StreamId),
    /// The peer's SYN_REPLY arrived (see [`StreamState::reply`]).
    Replied(StreamId),
    /// The stream was reset, by either side: whoever waits on it has an answer.
    StreamReset(StreamId),
    /// Send windows grew, or whether they apply became known: blocked writers may go on.
    WindowsChanged,
    /// The stream is gone from [`State`]: both sides are done and nobody holds it.
    Forget(StreamId),
    /// A peer stream awaits [`State::take_incoming`], or none will any more.
    IncomingChanged,
    /// The peer echoed our PING with this id.
    PingAnswered(u32),
    /// Received data was read or discarded: a reader paused for back-pressure may go on.
    ResumeReading,
    /// The session ended; [`State::closed`] says why. `discard_queued`: the transport failed,
    /// so queued frames can never be written.
    Closed {
        /// Drop the frames still queued.
        discard_queued: bool,
    },
}

/// Whether a SYN_REPLY is expected on a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// A peer-initiated stream: nothing to wait for.
    NotExpected,
    /// We opened it; no SYN_REPLY yet.
    Pending,
    /// The peer's SYN_REPLY headers.
    Received(Headers),
}

/// One stream as the protocol sees it.
#[derive(Debug)]
pub(crate) struct StreamState {
    /// Data delivered ([`Action::Deliver`]) and not yet consumed or discarded.
    pub recv_buffered: usize,
    /// The peer half-closed (FIN seen).
    pub recv_fin: bool,
    /// Our remaining receive window for this stream.
    recv_window: i64,
    /// Bytes the application consumed that we have not yet granted back.
    recv_unacked: u32,
    /// The peer's remaining window for our data on this stream.
    send_window: i64,
    /// We queued our FIN (or may never send: unidirectional).
    pub local_fin: bool,
    pub reset: Option<StreamError>,
    pub reply: Reply,
    /// The application dropped (or never got) its handle: incoming data is discarded.
    handle_dropped: bool,
}

impl StreamState {
    fn new(recv_window: u32, send_window: u32, reply: Reply) -> Self {
        Self {
            recv_buffered: 0,
            recv_fin: false,
            recv_window: i64::from(recv_window),
            recv_unacked: 0,
            send_window: i64::from(send_window),
            local_fin: false,
            reset: None,
            reply,
            handle_dropped: false,
        }
    }

    /// Both directions are finished: nothing more will be sent or received.
    fn finished(&self) -> bool {
        self.reset.is_some() || (self.local_fin && self.recv_fin)
    }
}

pub(crate) struct State {
    role: Role,
    flow: FlowControl,
    initial_window: u32,
    session_window_size: u32,
    max_concurrent: u32,
    streams: HashMap<StreamId, StreamState>,
    /// The peer's session window for our data (3.1).
    send_window: i64,
    /// The peer's per-stream initial window (SETTINGS_INITIAL_WINDOW_SIZE).
    peer_initial_window: u32,
    /// Whether the peer does flow control (see `FlowControl::Adaptive`): unknown until its first
    /// frame, which is SETTINGS or WINDOW_UPDATE for SPDY/3.1 implementations (this crate and
    /// browsers open with SETTINGS) and SYN_STREAM or PING for spdystream.
    peer_flow_control: Option<bool>,
    /// Our remaining session receive window.
    recv_window: i64,
    recv_unacked: u32,
    next_local_id: StreamId,
    last_peer_id: StreamId,
    /// Peer-initiated streams awaiting the application, in order.
    incoming: VecDeque<SynStream>,
    incoming_closed: bool,
    goaway_sent: bool,
    goaway_received: Option<(StreamId, GoAwayStatus)>,
    closed: Option<SessionError>,
    /// Session handles (Session clones and the Incoming) alive.
    handles: usize,
    next_ping_id: u32,
}

impl State {
    /// A session as `config` (normalised) describes it; `out` gets its opening frames.
    pub fn new(config: &Config, role: Role, out: &mut Vec<Action>) -> Self {
        let mut s = Self {
            role,
            flow: config.flow_control,
            initial_window: config.initial_window_size,
            session_window_size: config.session_window_size,
            max_concurrent: config.max_concurrent_streams,
            streams: HashMap::new(),
            send_window: i64::from(DEFAULT_WINDOW),
            peer_initial_window: DEFAULT_WINDOW,
            peer_flow_control: None,
            recv_window: i64::from(DEFAULT_WINDOW),
            recv_unacked: 0,
            next_local_id: role.first_local_id(),
            last_peer_id: 0,
            incoming: VecDeque::new(),
            incoming_closed: false,
            goaway_sent: false,
            goaway_received: None,
            closed: None,
            handles: 2,
            next_ping_id: role.first_local_id(),
        };
        // Announce our limits first thing, as SPDY/3.1 endpoints do.
        let mut entries = vec![Setting {
            flags: 0,
            id: setting_id::MAX_CONCURRENT_STREAMS,
            value: config.max_concurrent_streams,
        }];
        if config.initial_window_size != DEFAULT_WINDOW {
            entries.push(Setting {
                flags: 0,
                id: setting_id::INITIAL_WINDOW_SIZE,
                value: config.initial_window_size,
            });
        }
        out.push(Action::Send(Frame::Settings {
            clear: false,
            entries,
        }));
        if config.session_window_size > DEFAULT_WINDOW {
            let delta = config.session_window_size - DEFAULT_WINDOW;
            s.recv_window += i64::from(delta);
            out.push(Action::Send(Frame::WindowUpdate {
                stream_id: 0,
                delta,
            }));
        }
        s
    }

    // --- queries -------------------------------------------------------------------------------

    /// Why the session ended, once it has.
    pub fn closed(&self) -> Option<&SessionError> {
        self.closed.as_ref()
    }

    /// A stream still tracked (open, half-closed, reset but held, or awaiting accept).
    pub fn stream(&self, id: StreamId) -> Option<&StreamState> {
        self.streams.get(&id)
    }

    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// No peer stream will be handed out any more (GOAWAY sent, or the session ended).
    pub fn incoming_ended(&self) -> bool {
        self.goaway_sent || self.closed.is_some()
    }

    /// The next peer stream for the application, oldest first.
    pub fn take_incoming(&mut self) -> Option<SynStream> {
        self.incoming.pop_front()
    }

    /// Whether SPDY/3.1 windows apply: always in strict mode, and in adaptive mode once the peer
    /// has shown that it does flow control.
    fn flow_controlled(&self) -> bool {
        self.flow == FlowControl::Strict || self.peer_flow_control != Some(false)
    }

    /// In adaptive mode, with a peer that ignores windows, a stream holding a window's worth of
    /// unread data pauses the reader (TCP back-pressure). A flow-controlled peer cannot overrun
    /// the window, so the reader never waits for it: waiting could deadlock both sides.
    pub fn reader_should_wait_for(&self, id: StreamId) -> bool {
        self.closed.is_none()
            && !self.flow_controlled()
            && self.streams.get(&id).is_some_and(|st| {
                !st.handle_dropped
                    && st.reset.is_none()
                    && st.recv_buffered >= self.initial_window as usize
            })
    }

    /// How many bytes the windows let a writer send on `id` now (0: wait for WINDOW_UPDATE),
    /// at most `want` and `max_frame`; or the error a write gets. The write queue's own bound
    /// is the session's business.
    pub fn write_capacity(
        &self,
        id: StreamId,
        want: usize,
        max_frame: usize,
    ) -> Result<usize, StreamError> {
        let st = self.streams.get(&id);
        if let Some(e) = st.and_then(|s| s.reset.clone()) {
            return Err(e);
        }
        if let Some(reason) = &self.closed {
            return Err(StreamError::SessionClosed {
                stream_id: id,
                reason: reason.clone(),
            });
        }
        let Some(st) = st else {
            return Err(StreamError::ResetLocally {
                stream_id: id,
                status: RstStatus::Cancel,
            });
        };
        if st.local_fin {
            return Err(StreamError::WriteAfterFin { stream_id: id });
        }
        let mut n = want.min(max_frame);
        if self.flow_controlled() {
            let window = st.send_window.min(self.send_window).max(0) as usize;
            n = n.min(window);
        }
        Ok(n)
    }

    // --- local events --------------------------------------------------------------------------

    /// Another `Session` handle exists.
    pub fn handle_added(&mut self) {
        self.handles += 1;
    }

    /// A `Session` handle went away; the last one of all handles drains the session.
    pub fn session_handle_dropped(&mut self, out: &mut Vec<Action>) {
        self.handles = self.handles.saturating_sub(1);
        self.maybe_finish_session(out);
    }

    /// The `Incoming` handle went away: refuse what is queued and everything later.
    pub fn incoming_dropped(&mut self, out: &mut Vec<Action>) {
        self.handles = self.handles.saturating_sub(1);
        self.incoming_closed = true;
        let pending: Vec<_> = self.incoming.drain(..).map(|s| s.stream_id).collect();
        for id in pending {
            self.refuse(id, RstStatus::RefusedStream, out);
        }
        self.maybe_finish_session(out);
    }

    /// Opens a stream from this side (SYN_STREAM; `fin`: we will send nothing).
    pub fn open(
        &mut self,
        headers: Headers,
        fin: bool,
        out: &mut Vec<Action>,
    ) -> Result<StreamId, SessionError> {
        if let Some(reason) = &self.closed {
            return Err(reason.clone());
        }
        if let Some((last_good_stream_id, status)) = self.goaway_received {
            return Err(SessionError::GoAwayReceived {
                status,
                last_good_stream_id,
            });
        }
        if self.goaway_sent {
            return Err(SessionError::ShutDown);
        }
        let id = self.next_local_id;
        if id > MAX_WINDOW {
            return Err(SessionError::StreamIdsExhausted);
        }
        self.next_local_id += 2;
        let mut st = StreamState::new(
            self.initial_window,
            self.peer_initial_window,
            Reply::Pending,
        );
        st.local_fin = fin;
        self.streams.insert(id, st);
        out.push(Action::Send(Frame::SynStream(SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin,
            unidirectional: false,
            headers,
        })));
        Ok(id)
    }

    /// The application accepted a peer stream: SYN_REPLY (none for a unidirectional stream).
    pub fn accept(
        &mut self,
        id: StreamId,
        headers: Headers,
        unidirectional: bool,
        out: &mut Vec<Action>,
    ) {
        let Some(st) = self.streams.get_mut(&id) else {
            return;
        };
        if st.reset.is_some() || self.closed.is_some() {
            return;
        }
        if unidirectional {
            // The peer expects no reply and no data on a unidirectional stream.
            st.local_fin = true;
            self.maybe_remove(id, out);
            return;
        }
        out.push(Action::Send(Frame::SynReply {
            stream_id: id,
            fin: false,
            headers,
        }));
    }

    /// The application refused a peer stream (or dropped it unanswered).
    pub fn refuse(&mut self, id: StreamId, status: RstStatus, out: &mut Vec<Action>) {
        if let Some(st) = self.streams.get_mut(&id) {
            st.handle_dropped = true;
        }
        self.reset(id, status, out);
    }

    /// Queues `data` on `id`; the caller checked [`State::write_capacity`].
    pub fn send_data(&mut self, id: StreamId, data: Bytes, out: &mut Vec<Action>) {
        let len = data.len() as i64;
        if let Some(st) = self.streams.get_mut(&id) {
            st.send_window -= len;
        }
        self.send_window -= len;
        out.push(Action::Send(Frame::Data {
            stream_id: id,
            fin: false,
            data,
        }));
    }

    /// Our FIN on `id` (idempotent; nothing once reset or closed).
    pub fn send_fin(&mut self, id: StreamId, out: &mut Vec<Action>) {
        let Some(st) = self.streams.get_mut(&id) else {
            return;
        };
        if st.local_fin || st.reset.is_some() || self.closed.is_some() {
            return;
        }
        st.local_fin = true;
        out.push(Action::Send(Frame::Data {
            stream_id: id,
            fin: true,
            data: Bytes::new(),
        }));
        self.maybe_remove(id, out);
    }

    /// The application consumed `n` delivered bytes of `id`: grant them back to the peer once
    /// half a window has accumulated.
    pub fn consumed(&mut self, id: StreamId, n: usize, out: &mut Vec<Action>) {
        let n32 = u32::try_from(n).unwrap_or(u32::MAX);
        out.push(Action::ResumeReading);
        if let Some(st) = self.streams.get_mut(&id) {
            st.recv_buffered = st.recv_buffered.saturating_sub(n);
            if !st.recv_fin && st.reset.is_none() {
                st.recv_unacked = st.recv_unacked.saturating_add(n32);
                if st.recv_unacked >= self.initial_window / 2 {
                    let delta = std::mem::take(&mut st.recv_unacked).min(MAX_WINDOW);
                    st.recv_window += i64::from(delta);
                    out.push(Action::Send(Frame::WindowUpdate {
                        stream_id: id,
                        delta,
                    }));
                }
            }
        }
        self.session_consumed(n32, out);
    }

    fn session_consumed(&mut self, n: u32, out: &mut Vec<Action>) {
        self.recv_unacked = self.recv_unacked.saturating_add(n);
        if self.closed.is_none() && self.recv_unacked >= self.session_window_size / 2 {
            let delta = std::mem::take(&mut self.recv_unacked).min(MAX_WINDOW);
            self.recv_window += i64::from(delta);
            out.push(Action::Send(Frame::WindowUpdate {
                stream_id: 0,
                delta,
            }));
        }
    }

    /// Resets `id` from this side (nothing when already reset or gone).
    pub fn reset(&mut self, id: StreamId, status: RstStatus, out: &mut Vec<Action>) {
        let Some(st) = self.streams.get_mut(&id) else {
            return;
        };
        if st.reset.is_some() {
            return;
        }
        st.reset = Some(StreamError::ResetLocally {
            stream_id: id,
            status,
        });
        out.push(Action::StreamReset(id));
        // Data still queued for this stream is pointless now.
        out.push(Action::CancelQueued(id));
        if self.closed.is_none() {
            out.push(Action::Send(Frame::RstStream {
                stream_id: id,
                status,
            }));
        }
        self.maybe_remove(id, out);
    }

    /// The application dropped its handle on `id`.
    pub fn handle_dropped(&mut self, id: StreamId, out: &mut Vec<Action>) {
        let Some(st) = self.streams.get_mut(&id) else {
            return;
        };
        st.handle_dropped = true;
        // Unread data is discarded; grant its window back so the session keeps flowing.
        let unread = std::mem::take(&mut st.recv_buffered);
        out.push(Action::Discard(id));
        let local_done = st.local_fin || st.reset.is_some();
        let remote_done = st.recv_fin || st.reset.is_some();
        out.push(Action::ResumeReading);
        if !local_done {
            // Abandoned mid-write: RST at once, queued data is dropped.
            self.reset(id, RstStatus::Cancel, out);
        } else if !remote_done && self.closed.is_none() {
            // We sent FIN and nobody will read what the peer may still send: ask it to stop.
            // The RST goes behind our queued data and FIN, so none of it is lost.
            st.reset = Some(StreamError::ResetLocally {
                stream_id: id,
                status: RstStatus::Cancel,
            });
            out.push(Action::SendBehindData(Frame::RstStream {
                stream_id: id,
                status: RstStatus::Cancel,
            }));
        }
        self.session_consumed(u32::try_from(unread).unwrap_or(u32::MAX), out);
        self.maybe_remove(id, out);
    }

    /// Sends PING; returns its id, which [`Action::PingAnswered`] will carry.
    pub fn ping(&mut self, out: &mut Vec<Action>) -> Result<u32, SessionError> {
        if let Some(reason) = &self.closed {
            return Err(reason.clone());
        }
        let id = self.next_ping_id;
        self.next_ping_id = self.next_ping_id.wrapping_add(2);
        if self.next_ping_id == 0 || self.next_ping_id > MAX_WINDOW {
            self.next_ping_id = self.role.first_local_id();
        }
        out.push(Action::Send(Frame::Ping { id }));
        Ok(id)
    }

    /// GOAWAY with `status`: no new streams either way; peer streams not yet accepted are
    /// refused.
    pub fn send_goaway(&mut self, status: GoAwayStatus, out: &mut Vec<Action>) {
        if self.goaway_sent || self.closed.is_some() {
            return;
        }
        self.goaway_sent = true;
        out.push(Action::Send(Frame::GoAway {
            last_good_stream_id: self.last_peer_id,
            status,
        }));
        // Streams the application has not accepted yet will not be.
        let pending: Vec<_> = self.incoming.drain(..).map(|s| s.stream_id).collect();
        for id in pending {
            self.refuse(id, RstStatus::RefusedStream, out);
        }
        out.push(Action::IncomingChanged);
    }

    /// Ends the session when it is draining (GOAWAY either way, or no handles) and idle.
    pub fn maybe_finish_session(&mut self, out: &mut Vec<Action>) {
        if self.closed.is_some() || !self.streams.is_empty() {
            return;
        }
        if self.handles == 0 && !self.goaway_sent {
            // Nobody can open or accept streams any more: drain like go_away.
            self.send_goaway(GoAwayStatus::Ok, out);
            self.close(SessionError::ShutDown, out);
        } else if self.goaway_sent {
            self.close(SessionError::ShutDown, out);
        } else if let Some((last_good_stream_id, status)) = self.goaway_received {
            self.close(
                SessionError::GoAwayReceived {
                    status,
                    last_good_stream_id,
                },
                out,
            );
        }
    }

    /// Marks the session dead. Queued frames are still written (a GOAWAY just queued must go
    /// out) unless the transport failed.
    pub fn close(&mut self, reason: SessionError, out: &mut Vec<Action>) {
        if self.closed.is_some() {
            return;
        }
        tracing::debug!(%reason, "SPDY session closed");
        let discard_queued = matches!(reason, SessionError::Io(_));
        self.closed = Some(reason);
        out.push(Action::Closed { discard_queued });
    }

    /// A protocol violation by the peer: GOAWAY PROTOCOL_ERROR and close.
    pub fn protocol_error(&mut self, why: String, out: &mut Vec<Action>) {
        tracing::warn!(reason = %why, "SPDY protocol error from peer; sending GOAWAY");
        self.send_goaway(GoAwayStatus::ProtocolError, out);
        self.close(SessionError::Protocol(why), out);
    }

    /// Forgets `id` once both sides are done and nobody holds it; may end a draining session.
    fn maybe_remove(&mut self, id: StreamId, out: &mut Vec<Action>) {
        let remove = self
            .streams
            .get(&id)
            .is_some_and(|st| st.handle_dropped && st.finished());
        if remove {
            self.streams.remove(&id);
            out.push(Action::Forget(id));
        }
        self.maybe_finish_session(out);
    }

    // --- frames from the peer ------------------------------------------------------------------

    /// Reacts to one frame from the peer.
    pub fn on_frame(&mut self, frame: Frame, out: &mut Vec<Action>) {
        if self.closed.is_some() {
            return;
        }
        if self.peer_flow_control.is_none() {
            self.peer_flow_control = Some(matches!(
                frame,
                Frame::Settings { .. } | Frame::WindowUpdate { .. }
            ));
            // Writers held back while this was unknown may go on.
            out.push(Action::WindowsChanged);
        }
        match frame {
            Frame::SynStream(syn) => self.on_syn_stream(syn, out),
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            } => self.on_syn_reply(stream_id, fin, headers, out),
            Frame::Headers {
                stream_id,
                fin,
                headers,
            } => {
                if !self.streams.contains_key(&stream_id) {
                    return self.rst_unknown(stream_id, out);
                }
                // Kubernetes never sends HEADERS; extra headers are logged and dropped.
                tracing::debug!(
                    stream_id,
                    count = headers.len(),
                    "SPDY HEADERS frame ignored"
                );
                if fin {
                    self.on_remote_fin(stream_id, out);
                }
            }
            Frame::RstStream { stream_id, status } => self.on_rst_stream(stream_id, status, out),
            Frame::Settings { entries, .. } => {
                for e in entries {
                    if e.id == setting_id::INITIAL_WINDOW_SIZE {
                        if e.value > MAX_WINDOW {
                            return self.protocol_error(
                                format!("SETTINGS_INITIAL_WINDOW_SIZE {} exceeds 2^31-1", e.value),
                                out,
                            );
                        }
                        let delta = i64::from(e.value) - i64::from(self.peer_initial_window);
                        self.peer_initial_window = e.value;
                        self.peer_flow_control = Some(true);
                        for st in self.streams.values_mut() {
                            st.send_window += delta;
                        }
                        out.push(Action::WindowsChanged);
                    }
                }
            }
            Frame::Ping { id } => {
                if self.role.is_local(id) {
                    out.push(Action::PingAnswered(id));
                } else {
                    out.push(Action::Send(Frame::Ping { id }));
                }
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => self.on_goaway(last_good_stream_id, status, out),
            Frame::WindowUpdate { stream_id, delta } => {
                self.on_window_update(stream_id, delta, out)
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => self.on_data(stream_id, fin, data, out),
            Frame::Unknown { frame_type, .. } => {
                tracing::debug!(frame_type, "unknown SPDY control frame ignored");
            }
        }
    }

    fn on_syn_stream(&mut self, syn: SynStream, out: &mut Vec<Action>) {
        let id = syn.stream_id;
        if self.role.is_local(id) || id <= self.last_peer_id {
            return self.protocol_error(
                format!(
                    "SYN_STREAM with stream id {id}: wrong parity or not above the last one ({})",
                    self.last_peer_id
                ),
                out,
            );
        }
        self.last_peer_id = id;
        let mut st = StreamState::new(
            self.initial_window,
            self.peer_initial_window,
            Reply::NotExpected,
        );
        st.recv_fin = syn.fin;
        let peer_streams = self
            .streams
            .keys()
            .filter(|k| !self.role.is_local(**k))
            .count();
        let refuse = self.goaway_sent
            || self.incoming_closed
            || peer_streams >= self.max_concurrent as usize;
        if refuse {
            st.handle_dropped = true;
            self.streams.insert(id, st);
            return self.reset(id, RstStatus::RefusedStream, out);
        }
        self.streams.insert(id, st);
        self.incoming.push_back(syn);
        out.push(Action::IncomingChanged);
    }

    fn on_syn_reply(&mut self, id: StreamId, fin: bool, headers: Headers, out: &mut Vec<Action>) {
        let Some(st) = self.streams.get_mut(&id) else {
            return self.rst_unknown(id, out);
        };
        if st.reply != Reply::Pending {
            return self.reset(id, RstStatus::StreamInUse, out);
        }
        st.reply = Reply::Received(headers);
        out.push(Action::Replied(id));
        if fin {
            self.on_remote_fin(id, out);
        }
    }

    fn on_rst_stream(&mut self, id: StreamId, status: RstStatus, out: &mut Vec<Action>) {
        let Some(st) = self.streams.get_mut(&id) else {
            return;
        };
        if st.reset.is_none() {
            st.reset = Some(StreamError::ResetByPeer {
                stream_id: id,
                status,
            });
        }
        // What a peer sent before its FIN stays readable (it may RST right after FIN, as this
        // crate does when a handle is dropped); otherwise the data is void.
        let freed = if st.recv_fin {
            0
        } else {
            out.push(Action::Discard(id));
            std::mem::take(&mut st.recv_buffered)
        };
        out.push(Action::StreamReset(id));
        self.incoming.retain(|s| s.stream_id != id);
        self.session_consumed(u32::try_from(freed).unwrap_or(u32::MAX), out);
        self.maybe_remove(id, out);
        out.push(Action::ResumeReading);
    }

    fn on_goaway(&mut self, last_good: StreamId, status: GoAwayStatus, out: &mut Vec<Action>) {
        tracing::debug!(
            last_good_stream_id = last_good,
            ?status,
            "SPDY GOAWAY received"
        );
        self.goaway_received = Some((last_good, status));
        // Our streams after last_good were never processed by the peer.
        let refused: Vec<_> = self
            .streams
            .keys()
            .copied()
            .filter(|id| self.role.is_local(*id) && *id > last_good)
            .collect();
        for id in refused {
            if let Some(st) = self.streams.get_mut(&id) {
                st.reset = Some(StreamError::ResetByPeer {
                    stream_id: id,
                    status: RstStatus::RefusedStream,
                });
                out.push(Action::StreamReset(id));
            }
            self.maybe_remove(id, out);
        }
        self.maybe_finish_session(out);
    }

    fn on_window_update(&mut self, id: StreamId, delta: u32, out: &mut Vec<Action>) {
        self.peer_flow_control = Some(true);
        let strict = self.flow == FlowControl::Strict;
        if id == 0 {
            self.send_window += i64::from(delta);
            if self.send_window > i64::from(MAX_WINDOW) {
                if strict {
                    return self.protocol_error("session window grew past 2^31-1".into(), out);
                }
                self.send_window = i64::from(MAX_WINDOW);
            }
        } else if let Some(st) = self.streams.get_mut(&id) {
            st.send_window += i64::from(delta);
            if st.send_window > i64::from(MAX_WINDOW) {
                if strict {
                    return self.reset(id, RstStatus::FlowControlError, out);
                }
                st.send_window = i64::from(MAX_WINDOW);
            }
        }
        out.push(Action::WindowsChanged);
    }

    fn rst_unknown(&mut self, id: StreamId, out: &mut Vec<Action>) {
        // Frames for streams we forgot (fully closed or reset) are stale, not errors; frames
        // for ids never opened are answered with INVALID_STREAM.
        let never_opened = if self.role.is_local(id) {
            id >= self.next_local_id
        } else {
            id > self.last_peer_id
        };
        if never_opened {
            out.push(Action::Send(Frame::RstStream {
                stream_id: id,
                status: RstStatus::InvalidStream,
            }));
        }
    }

    fn on_remote_fin(&mut self, id: StreamId, out: &mut Vec<Action>) {
        if let Some(st) = self.streams.get_mut(&id) {
            st.recv_fin = true;
            out.push(Action::PeerFinished(id));
        }
        self.maybe_remove(id, out);
    }

    fn on_data(&mut self, id: StreamId, fin: bool, data: Bytes, out: &mut Vec<Action>) {
        let len = data.len();
        let len32 = len as u32; // bounded by the 24-bit length field
        self.recv_window -= i64::from(len32);
        // The session window is only enforced in strict mode: a SPDY/3 (not 3.1) peer that does
        // per-stream flow control knows no session window.
        if self.recv_window < 0 && self.flow == FlowControl::Strict {
            return self.protocol_error(
                "the peer overran the session flow-control window".into(),
                out,
            );
        }
        let strict = self.flow_controlled();
        let Some(st) = self.streams.get_mut(&id) else {
            self.session_consumed(len32, out);
            return self.rst_unknown(id, out);
        };
        if st.reset.is_some() {
            // Data in flight when we reset: drop it, keep the session window flowing.
            return self.session_consumed(len32, out);
        }
        if st.recv_fin {
            self.session_consumed(len32, out);
            return self.reset(id, RstStatus::StreamAlreadyClosed, out);
        }
        st.recv_window -= i64::from(len32);
        if st.recv_window < 0 && strict {
            self.session_consumed(len32, out);
            return self.reset(id, RstStatus::FlowControlError, out);
        }
        if st.handle_dropped {
            self.session_consumed(len32, out);
        } else if len > 0 {
            st.recv_buffered += len;
            out.push(Action::Deliver(id, data));
        }
        if fin {
            self.on_remote_fin(id, out);
        }
    }
}
