//! The session's shared state and its reaction to each received frame.
//!
//! One `std::sync::Mutex` guards everything; it is never held across an `.await`. The reader
//! task feeds frames into [`State::on_frame`], streams and the session handle call the other
//! methods, and the writer task drains [`State::queue`]. Frames are queued in the order they
//! must hit the wire (stream ids increase, SYN_REPLY precedes data, FIN comes last), and the
//! writer compresses header blocks in that same order, as the shared zlib stream requires.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use bytes::Bytes;
use tokio::sync::{Notify, oneshot};

use crate::config::{Config, FlowControl};
use crate::error::{SessionError, StreamError};
use crate::frame::{
    DEFAULT_WINDOW, Frame, GoAwayStatus, Headers, MAX_WINDOW, RstStatus, StreamId, SynStream,
    setting_id,
};
use crate::session::WriterSide;

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

/// Approximate queue cost of a control frame.
const CONTROL_COST: usize = 32;

pub(crate) struct Shared {
    pub state: Mutex<State>,
    /// The transport's sending half. Lock order: `writer` before `state`, never the reverse.
    writer: Mutex<WriterSide>,
    /// Wakes the writer task: frames queued, or the session closed.
    pub writer_wake: Notify,
    /// Wakes the reader task: buffers drained, write queue drained, or the session closed.
    pub reader_wake: Notify,
    /// Wakes `Session::closed` waiters.
    pub closed_notify: Notify,
    pub config: Config,
    pub role: Role,
}

impl Shared {
    pub fn new(config: Config, role: Role, writer: WriterSide) -> Arc<Self> {
        let config = config.normalized();
        let state = State::new(&config, role);
        Arc::new(Self {
            state: Mutex::new(state),
            writer: Mutex::new(writer),
            writer_wake: Notify::new(),
            reader_wake: Notify::new(),
            closed_notify: Notify::new(),
            config,
            role,
        })
    }

    /// Locks the state, riding over poisoning: the state stays consistent between statements
    /// that could panic, and a panicking stream task must not take the session down.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn writer(&self) -> MutexGuard<'_, WriterSide> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends queued frames from the calling task when the transport is idle (no task wake-up
    /// in between); otherwise, or when it cannot take everything now, the writer task does.
    /// Call without holding the state lock.
    pub fn write_now(&self) {
        let mut w = match self.writer.try_lock() {
            Ok(w) if w.idle => w,
            // The writer task is at it (or waits on the transport); it drains the queue
            // before it sleeps again.
            _ => {
                self.writer_wake.notify_one();
                return;
            }
        };
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match w.poll_drain(self, &mut cx) {
            std::task::Poll::Ready(Ok(())) => {}
            std::task::Poll::Ready(Err(e)) => {
                drop(w);
                let kick = self.lock().close(e);
                self.kick(kick);
            }
            // The transport registered a waker that does nothing: hand over to the writer task.
            std::task::Poll::Pending => {
                w.idle = false;
                drop(w);
                self.writer_wake.notify_one();
            }
        }
    }

    /// Wakes the tasks that react to `State` changes made under the lock just released.
    pub fn kick(&self, k: Kick) {
        if k.writer {
            self.writer_wake.notify_one();
        }
        if k.reader {
            self.reader_wake.notify_one();
        }
        if k.closed {
            self.closed_notify.notify_waiters();
            self.writer_wake.notify_one();
            self.reader_wake.notify_one();
        }
    }
}

/// Which tasks to wake after releasing the lock.
#[derive(Debug, Default, Clone, Copy)]
#[must_use]
pub(crate) struct Kick {
    pub writer: bool,
    pub reader: bool,
    pub closed: bool,
}

impl Kick {
    pub fn or(self, o: Kick) -> Kick {
        Kick {
            writer: self.writer || o.writer,
            reader: self.reader || o.reader,
            closed: self.closed || o.closed,
        }
    }
}

pub(crate) enum Reply {
    /// A peer-initiated stream: nothing to wait for.
    NotExpected,
    /// We opened it; no SYN_REPLY yet.
    Pending,
    /// The peer's SYN_REPLY headers.
    Received(Headers),
}

pub(crate) struct StreamState {
    pub recv_buf: VecDeque<Bytes>,
    pub recv_buffered: usize,
    /// The peer half-closed (FIN seen).
    pub recv_fin: bool,
    /// Our remaining receive window for this stream.
    pub recv_window: i64,
    /// Bytes the application consumed that we have not yet granted back.
    pub recv_unacked: u32,
    /// The peer's remaining window for our data on this stream.
    pub send_window: i64,
    /// We queued our FIN (or may never send: unidirectional).
    pub local_fin: bool,
    /// Our data bytes queued but not yet written to the socket.
    pub unflushed: usize,
    pub reset: Option<StreamError>,
    pub reply: Reply,
    /// Peer-initiated and not yet accepted (SYN_REPLY not sent).
    pub awaiting_accept: bool,
    /// The application dropped its handle: incoming data is discarded.
    pub handle_dropped: bool,
    pub read_waker: Option<Waker>,
    pub write_waker: Option<Waker>,
    pub reply_waker: Option<Waker>,
}

impl StreamState {
    fn new(recv_window: u32, send_window: u32, reply: Reply) -> Self {
        Self {
            recv_buf: VecDeque::new(),
            recv_buffered: 0,
            recv_fin: false,
            recv_window: i64::from(recv_window),
            recv_unacked: 0,
            send_window: i64::from(send_window),
            local_fin: false,
            unflushed: 0,
            reset: None,
            reply,
            awaiting_accept: false,
            handle_dropped: false,
            read_waker: None,
            write_waker: None,
            reply_waker: None,
        }
    }

    fn wake_all(&mut self) {
        for w in [
            self.read_waker.take(),
            self.write_waker.take(),
            self.reply_waker.take(),
        ]
        .into_iter()
        .flatten()
        {
            w.wake();
        }
    }

    /// Both directions are finished: nothing more will be sent or received.
    fn finished(&self) -> bool {
        self.reset.is_some() || (self.local_fin && self.recv_fin)
    }
}

/// A peer-initiated stream waiting for `Incoming::accept`.
pub(crate) struct PendingIncoming {
    pub syn: SynStream,
}

pub(crate) struct State {
    role: Role,
    flow: FlowControl,
    initial_window: u32,
    session_window_size: u32,
    max_concurrent: u32,
    write_queue_limit: usize,
    pub streams: HashMap<StreamId, StreamState>,
    /// Frames for the writer, in wire order, with their queue cost.
    pub queue: VecDeque<(Frame, usize)>,
    /// Session and flow-control frames (WINDOW_UPDATE, PING, SETTINGS, RST_STREAM, GOAWAY); the
    /// writer sends them ahead of queued data, or a WINDOW_UPDATE stuck behind data that waits
    /// for the peer's WINDOW_UPDATE could deadlock both sides.
    pub urgent: VecDeque<(Frame, usize)>,
    pub queued_cost: usize,
    /// The peer's session window for our data (3.1).
    pub send_window: i64,
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
    pub incoming: VecDeque<PendingIncoming>,
    pub incoming_waker: Option<Waker>,
    incoming_closed: bool,
    goaway_sent: bool,
    goaway_received: Option<(StreamId, GoAwayStatus)>,
    pub closed: Option<SessionError>,
    /// Session handles (Session clones and the Incoming) alive.
    pub handles: usize,
    pings: HashMap<u32, oneshot::Sender<()>>,
    next_ping_id: u32,
}

impl State {
    fn new(config: &Config, role: Role) -> Self {
        let mut s = Self {
            role,
            flow: config.flow_control,
            initial_window: config.initial_window_size,
            session_window_size: config.session_window_size,
            max_concurrent: config.max_concurrent_streams,
            write_queue_limit: config.write_queue_limit,
            streams: HashMap::new(),
            queue: VecDeque::new(),
            urgent: VecDeque::new(),
            queued_cost: 0,
            send_window: i64::from(DEFAULT_WINDOW),
            peer_initial_window: DEFAULT_WINDOW,
            peer_flow_control: None,
            recv_window: i64::from(DEFAULT_WINDOW),
            recv_unacked: 0,
            next_local_id: role.first_local_id(),
            last_peer_id: 0,
            incoming: VecDeque::new(),
            incoming_waker: None,
            incoming_closed: false,
            goaway_sent: false,
            goaway_received: None,
            closed: None,
            handles: 2,
            pings: HashMap::new(),
            next_ping_id: role.first_local_id(),
        };
        // Announce our limits first thing, as SPDY/3.1 endpoints do.
        let mut entries = vec![crate::frame::Setting {
            flags: 0,
            id: setting_id::MAX_CONCURRENT_STREAMS,
            value: config.max_concurrent_streams,
        }];
        if config.initial_window_size != DEFAULT_WINDOW {
            entries.push(crate::frame::Setting {
                flags: 0,
                id: setting_id::INITIAL_WINDOW_SIZE,
                value: config.initial_window_size,
            });
        }
        s.push(Frame::Settings {
            clear: false,
            entries,
        });
        if config.session_window_size > DEFAULT_WINDOW {
            let delta = config.session_window_size - DEFAULT_WINDOW;
            s.recv_window += i64::from(delta);
            s.push(Frame::WindowUpdate {
                stream_id: 0,
                delta,
            });
        }
        s
    }

    /// Queues a frame for the writer.
    pub fn push(&mut self, frame: Frame) {
        let cost = match &frame {
            Frame::Data { data, .. } => data.len().max(1),
            _ => CONTROL_COST,
        };
        self.queued_cost += cost;
        match frame {
            Frame::WindowUpdate { .. }
            | Frame::Ping { .. }
            | Frame::Settings { .. }
            | Frame::RstStream { .. }
            | Frame::GoAway { .. } => self.urgent.push_back((frame, cost)),
            _ => self.queue.push_back((frame, cost)),
        }
    }

    /// Whether SPDY/3.1 windows apply: always in strict mode, and in adaptive mode once the peer
    /// has shown that it does flow control.
    fn flow_controlled(&self) -> bool {
        self.flow == FlowControl::Strict || self.peer_flow_control != Some(false)
    }

    /// The writer is done with `cost` bytes of queue; data frames free their stream's unflushed
    /// count. Wakes writers.
    pub fn written(&mut self, cost: usize, data_of: Option<(StreamId, usize)>) {
        self.queued_cost = self.queued_cost.saturating_sub(cost);
        if let Some((id, len)) = data_of
            && let Some(st) = self.streams.get_mut(&id)
        {
            st.unflushed = st.unflushed.saturating_sub(len);
        }
    }

    pub fn wake_writers(&mut self) {
        for st in self.streams.values_mut() {
            if let Some(w) = st.write_waker.take() {
                w.wake();
            }
        }
    }

    /// The write queue is so full (control frames included) that the reader should stop
    /// producing replies (PING echoes, WINDOW_UPDATEs) until it drains.
    pub fn reader_should_wait_for_queue(&self) -> bool {
        self.closed.is_none() && self.queued_cost > self.write_queue_limit.saturating_mul(2)
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

    /// How many bytes a writer may queue on `id` right now (0: wait), or the error to return.
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
        if self.queued_cost >= self.write_queue_limit {
            return Ok(0);
        }
        let mut n = want.min(max_frame);
        if self.flow_controlled() {
            let window = st.send_window.min(self.send_window).max(0) as usize;
            n = n.min(window);
        }
        Ok(n)
    }

    /// Queues `data` on `id`; the caller checked `write_capacity`.
    pub fn queue_data(&mut self, id: StreamId, data: Bytes) {
        let len = data.len();
        if let Some(st) = self.streams.get_mut(&id) {
            st.send_window -= len as i64;
            st.unflushed += len;
        }
        self.send_window -= len as i64;
        self.push(Frame::Data {
            stream_id: id,
            fin: false,
            data,
        });
    }

    /// Queues our FIN on `id` (idempotent).
    pub fn queue_fin(&mut self, id: StreamId) -> Kick {
        let Some(st) = self.streams.get_mut(&id) else {
            return Kick::default();
        };
        if st.local_fin || st.reset.is_some() || self.closed.is_some() {
            return Kick::default();
        }
        st.local_fin = true;
        st.unflushed += 1;
        self.push(Frame::Data {
            stream_id: id,
            fin: true,
            data: Bytes::new(),
        });
        Kick {
            writer: true,
            ..Kick::default()
        }
        .or(self.maybe_remove(id))
    }

    /// Records that the application consumed `n` bytes of `id` and grants them back.
    pub fn consumed(&mut self, id: StreamId, n: usize) -> Kick {
        let n32 = u32::try_from(n).unwrap_or(u32::MAX);
        let mut kick = Kick {
            reader: true,
            ..Kick::default()
        };
        if let Some(st) = self.streams.get_mut(&id)
            && !st.recv_fin
            && st.reset.is_none()
        {
            st.recv_unacked = st.recv_unacked.saturating_add(n32);
            if st.recv_unacked >= self.initial_window / 2 {
                let delta = std::mem::take(&mut st.recv_unacked).min(MAX_WINDOW);
                st.recv_window += i64::from(delta);
                self.push(Frame::WindowUpdate {
                    stream_id: id,
                    delta,
                });
                kick.writer = true;
            }
        }
        kick.or(self.session_consumed(n32))
    }

    fn session_consumed(&mut self, n: u32) -> Kick {
        self.recv_unacked = self.recv_unacked.saturating_add(n);
        if self.closed.is_none() && self.recv_unacked >= self.session_window_size / 2 {
            let delta = std::mem::take(&mut self.recv_unacked).min(MAX_WINDOW);
            self.recv_window += i64::from(delta);
            self.push(Frame::WindowUpdate {
                stream_id: 0,
                delta,
            });
            return Kick {
                writer: true,
                ..Kick::default()
            };
        }
        Kick::default()
    }

    /// Opens a stream from this side.
    pub fn open(&mut self, headers: Headers, fin: bool) -> Result<StreamId, SessionError> {
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
        self.push(Frame::SynStream(SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin,
            unidirectional: false,
            headers,
        }));
        Ok(id)
    }

    /// Sends SYN_REPLY for an accepted peer stream.
    pub fn accept(&mut self, id: StreamId, headers: Headers, unidirectional: bool) -> Kick {
        let Some(st) = self.streams.get_mut(&id) else {
            return Kick::default();
        };
        st.awaiting_accept = false;
        if st.reset.is_some() || self.closed.is_some() {
            return Kick::default();
        }
        if unidirectional {
            // The peer expects no reply and no data on a unidirectional stream.
            st.local_fin = true;
            return self.maybe_remove(id);
        }
        self.push(Frame::SynReply {
            stream_id: id,
            fin: false,
            headers,
        });
        Kick {
            writer: true,
            ..Kick::default()
        }
    }

    /// Resets `id` from this side (no-op when already reset or gone).
    pub fn reset(&mut self, id: StreamId, status: RstStatus) -> Kick {
        let Some(st) = self.streams.get_mut(&id) else {
            return Kick::default();
        };
        if st.reset.is_some() {
            return Kick::default();
        }
        st.reset = Some(StreamError::ResetLocally {
            stream_id: id,
            status,
        });
        st.wake_all();
        // Data still queued for this stream is pointless now.
        let mut freed = 0;
        self.queue.retain(|(f, cost)| {
            let drop = matches!(f, Frame::Data { stream_id, .. } if *stream_id == id);
            if drop {
                freed += cost;
            }
            !drop
        });
        self.queued_cost -= freed;
        if let Some(st) = self.streams.get_mut(&id) {
            st.unflushed = 0;
        }
        let mut kick = Kick::default();
        if self.closed.is_none() {
            self.push(Frame::RstStream {
                stream_id: id,
                status,
            });
            kick.writer = true;
        }
        kick.or(self.maybe_remove(id))
    }

    /// The application dropped its handle on `id`.
    pub fn handle_dropped(&mut self, id: StreamId) -> Kick {
        let Some(st) = self.streams.get_mut(&id) else {
            return Kick::default();
        };
        st.handle_dropped = true;
        // Unread data is discarded; grant its window back so the session keeps flowing.
        let unread = std::mem::take(&mut st.recv_buffered);
        st.recv_buf.clear();
        let local_done = st.local_fin || st.reset.is_some();
        let remote_done = st.recv_fin || st.reset.is_some();
        let mut kick = Kick {
            reader: true,
            ..Kick::default()
        };
        if !local_done {
            // Abandoned mid-write: RST at once, queued data is dropped.
            kick = kick.or(self.reset(id, RstStatus::Cancel));
        } else if !remote_done && self.closed.is_none() {
            // We sent FIN and nobody will read what the peer may still send: ask it to stop.
            // The RST goes behind our queued data and FIN, so none of it is lost.
            st.reset = Some(StreamError::ResetLocally {
                stream_id: id,
                status: RstStatus::Cancel,
            });
            self.queued_cost += CONTROL_COST;
            self.queue.push_back((
                Frame::RstStream {
                    stream_id: id,
                    status: RstStatus::Cancel,
                },
                CONTROL_COST,
            ));
            kick.writer = true;
        }
        kick.or(self.session_consumed(u32::try_from(unread).unwrap_or(u32::MAX)))
            .or(self.maybe_remove(id))
    }

    /// Forgets `id` once both sides are done and nobody holds it; may end a draining session.
    fn maybe_remove(&mut self, id: StreamId) -> Kick {
        let remove = self
            .streams
            .get(&id)
            .is_some_and(|st| st.handle_dropped && st.finished());
        if remove {
            self.streams.remove(&id);
        }
        self.maybe_finish_session()
    }

    /// Ends the session when it is draining (GOAWAY either way, or no handles) and idle.
    pub fn maybe_finish_session(&mut self) -> Kick {
        if self.closed.is_some() || !self.streams.is_empty() {
            return Kick::default();
        }
        if self.handles == 0 && !self.goaway_sent {
            // Nobody can open or accept streams any more: drain like go_away.
            let kick = self.send_goaway(GoAwayStatus::Ok);
            return kick.or(self.close(SessionError::ShutDown));
        }
        if self.goaway_sent {
            return self.close(SessionError::ShutDown);
        }
        if let Some((last_good_stream_id, status)) = self.goaway_received {
            return self.close(SessionError::GoAwayReceived {
                status,
                last_good_stream_id,
            });
        }
        Kick::default()
    }

    pub fn goaway_sent_or_closed(&self) -> bool {
        self.goaway_sent || self.closed.is_some()
    }

    pub fn send_goaway(&mut self, status: GoAwayStatus) -> Kick {
        if self.goaway_sent || self.closed.is_some() {
            return Kick::default();
        }
        self.goaway_sent = true;
        self.push(Frame::GoAway {
            last_good_stream_id: self.last_peer_id,
            status,
        });
        // Streams the application has not accepted yet will not be.
        let pending: Vec<_> = self.incoming.drain(..).map(|p| p.syn.stream_id).collect();
        let mut kick = Kick {
            writer: true,
            ..Kick::default()
        };
        for id in pending {
            kick = kick.or(self.refuse_pending(id));
        }
        if let Some(w) = self.incoming_waker.take() {
            w.wake();
        }
        kick
    }

    fn refuse_pending(&mut self, id: StreamId) -> Kick {
        if let Some(st) = self.streams.get_mut(&id) {
            st.handle_dropped = true;
        }
        self.reset(id, RstStatus::RefusedStream)
    }

    /// The Incoming handle went away: refuse what is queued and everything later.
    pub fn incoming_dropped(&mut self) -> Kick {
        self.incoming_closed = true;
        let pending: Vec<_> = self.incoming.drain(..).map(|p| p.syn.stream_id).collect();
        let mut kick = Kick::default();
        for id in pending {
            kick = kick.or(self.refuse_pending(id));
        }
        kick
    }

    /// Marks the session dead: wakes everyone. Queued frames are still written (a GOAWAY we just
    /// queued must go out) unless the transport failed.
    pub fn close(&mut self, reason: SessionError) -> Kick {
        if self.closed.is_some() {
            return Kick::default();
        }
        tracing::debug!(%reason, "SPDY session closed");
        if matches!(reason, SessionError::Io(_)) {
            self.queue.clear();
            self.urgent.clear();
            self.queued_cost = 0;
        }
        self.closed = Some(reason);
        for st in self.streams.values_mut() {
            st.wake_all();
        }
        if let Some(w) = self.incoming_waker.take() {
            w.wake();
        }
        self.pings.clear();
        Kick {
            closed: true,
            ..Kick::default()
        }
    }

    /// A protocol violation by the peer: GOAWAY PROTOCOL_ERROR and close.
    pub fn protocol_error(&mut self, why: String) -> Kick {
        tracing::warn!(reason = %why, "SPDY protocol error from peer; sending GOAWAY");
        self.send_goaway(GoAwayStatus::ProtocolError)
            .or(self.close(SessionError::Protocol(why)))
    }

    pub fn new_ping(&mut self) -> Result<oneshot::Receiver<()>, SessionError> {
        if let Some(reason) = &self.closed {
            return Err(reason.clone());
        }
        let id = self.next_ping_id;
        self.next_ping_id = self.next_ping_id.wrapping_add(2);
        if self.next_ping_id == 0 || self.next_ping_id > MAX_WINDOW {
            self.next_ping_id = self.role.first_local_id();
        }
        let (tx, rx) = oneshot::channel();
        self.pings.insert(id, tx);
        self.push(Frame::Ping { id });
        Ok(rx)
    }

    /// Reacts to one frame from the peer.
    pub fn on_frame(&mut self, frame: Frame) -> Kick {
        if self.closed.is_some() {
            return Kick::default();
        }
        if self.peer_flow_control.is_none() {
            self.peer_flow_control = Some(matches!(
                frame,
                Frame::Settings { .. } | Frame::WindowUpdate { .. }
            ));
            // Writers held back while this was unknown may go on.
            self.wake_writers();
        }
        match frame {
            Frame::SynStream(syn) => self.on_syn_stream(syn),
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            } => {
                let Some(st) = self.streams.get_mut(&stream_id) else {
                    return self.rst_unknown(stream_id);
                };
                match st.reply {
                    Reply::Pending => {
                        st.reply = Reply::Received(headers);
                        if let Some(w) = st.reply_waker.take() {
                            w.wake();
                        }
                        if fin {
                            self.on_remote_fin(stream_id)
                        } else {
                            Kick::default()
                        }
                    }
                    _ => self.reset(stream_id, RstStatus::StreamInUse),
                }
            }
            Frame::Headers {
                stream_id,
                fin,
                headers,
            } => {
                if !self.streams.contains_key(&stream_id) {
                    return self.rst_unknown(stream_id);
                }
                // Kubernetes never sends HEADERS; extra headers are logged and dropped.
                tracing::debug!(
                    stream_id,
                    count = headers.len(),
                    "SPDY HEADERS frame ignored"
                );
                if fin {
                    self.on_remote_fin(stream_id)
                } else {
                    Kick::default()
                }
            }
            Frame::RstStream { stream_id, status } => {
                let Some(st) = self.streams.get_mut(&stream_id) else {
                    return Kick::default();
                };
                if st.reset.is_none() {
                    st.reset = Some(StreamError::ResetByPeer { stream_id, status });
                }
                // What a peer sent before its FIN stays readable (it may RST right after FIN,
                // as this crate does when a handle is dropped); otherwise the data is void.
                let freed = if st.recv_fin {
                    0
                } else {
                    st.recv_buf.clear();
                    std::mem::take(&mut st.recv_buffered)
                };
                st.wake_all();
                self.incoming.retain(|p| p.syn.stream_id != stream_id);
                let kick = self.session_consumed(u32::try_from(freed).unwrap_or(u32::MAX));
                kick.or(self.maybe_remove(stream_id)).or(Kick {
                    reader: true,
                    ..Kick::default()
                })
            }
            Frame::Settings { entries, .. } => {
                for e in entries {
                    if e.id == setting_id::INITIAL_WINDOW_SIZE {
                        if e.value > MAX_WINDOW {
                            return self.protocol_error(format!(
                                "SETTINGS_INITIAL_WINDOW_SIZE {} exceeds 2^31-1",
                                e.value
                            ));
                        }
                        let delta = i64::from(e.value) - i64::from(self.peer_initial_window);
                        self.peer_initial_window = e.value;
                        self.peer_flow_control = Some(true);
                        for st in self.streams.values_mut() {
                            st.send_window += delta;
                        }
                        self.wake_writers();
                    }
                }
                Kick::default()
            }
            Frame::Ping { id } => {
                if self.role.is_local(id) {
                    if let Some(tx) = self.pings.remove(&id) {
                        let _ = tx.send(());
                    }
                    Kick::default()
                } else {
                    self.push(Frame::Ping { id });
                    Kick {
                        writer: true,
                        ..Kick::default()
                    }
                }
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                tracing::debug!(last_good_stream_id, ?status, "SPDY GOAWAY received");
                self.goaway_received = Some((last_good_stream_id, status));
                // Our streams after last_good were never processed by the peer.
                let refused: Vec<_> = self
                    .streams
                    .keys()
                    .copied()
                    .filter(|id| self.role.is_local(*id) && *id > last_good_stream_id)
                    .collect();
                for id in refused {
                    if let Some(st) = self.streams.get_mut(&id) {
                        st.reset = Some(StreamError::ResetByPeer {
                            stream_id: id,
                            status: RstStatus::RefusedStream,
                        });
                        st.wake_all();
                    }
                    let _ = self.maybe_remove(id);
                }
                self.maybe_finish_session()
            }
            Frame::WindowUpdate { stream_id, delta } => {
                self.peer_flow_control = Some(true);
                let strict = self.flow == FlowControl::Strict;
                if stream_id == 0 {
                    self.send_window += i64::from(delta);
                    if self.send_window > i64::from(MAX_WINDOW) {
                        if strict {
                            return self.protocol_error("session window grew past 2^31-1".into());
                        }
                        self.send_window = i64::from(MAX_WINDOW);
                    }
                } else if let Some(st) = self.streams.get_mut(&stream_id) {
                    st.send_window += i64::from(delta);
                    if st.send_window > i64::from(MAX_WINDOW) {
                        if strict {
                            return self.reset(stream_id, RstStatus::FlowControlError);
                        }
                        st.send_window = i64::from(MAX_WINDOW);
                    }
                }
                self.wake_writers();
                Kick::default()
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => self.on_data(stream_id, fin, data),
            Frame::Unknown { frame_type, .. } => {
                tracing::debug!(frame_type, "unknown SPDY control frame ignored");
                Kick::default()
            }
        }
    }

    fn on_syn_stream(&mut self, syn: SynStream) -> Kick {
        let id = syn.stream_id;
        if self.role.is_local(id) || id <= self.last_peer_id {
            return self.protocol_error(format!(
                "SYN_STREAM with stream id {id}: wrong parity or not above the last one ({})",
                self.last_peer_id
            ));
        }
        self.last_peer_id = id;
        let mut st = StreamState::new(
            self.initial_window,
            self.peer_initial_window,
            Reply::NotExpected,
        );
        st.recv_fin = syn.fin;
        st.awaiting_accept = true;
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
            return self.reset(id, RstStatus::RefusedStream);
        }
        self.streams.insert(id, st);
        self.incoming.push_back(PendingIncoming { syn });
        if let Some(w) = self.incoming_waker.take() {
            w.wake();
        }
        Kick::default()
    }

    fn rst_unknown(&mut self, id: StreamId) -> Kick {
        // Frames for streams we forgot (fully closed or reset) are stale, not errors; frames
        // for ids never opened are answered with INVALID_STREAM.
        let never_opened = if self.role.is_local(id) {
            id >= self.next_local_id
        } else {
            id > self.last_peer_id
        };
        if never_opened {
            self.push(Frame::RstStream {
                stream_id: id,
                status: RstStatus::InvalidStream,
            });
            return Kick {
                writer: true,
                ..Kick::default()
            };
        }
        Kick::default()
    }

    fn on_remote_fin(&mut self, id: StreamId) -> Kick {
        if let Some(st) = self.streams.get_mut(&id) {
            st.recv_fin = true;
            if let Some(w) = st.read_waker.take() {
                w.wake();
            }
        }
        self.maybe_remove(id)
    }

    fn on_data(&mut self, id: StreamId, fin: bool, data: Bytes) -> Kick {
        let len = data.len();
        let len32 = len as u32; // bounded by the 24-bit length field
        self.recv_window -= i64::from(len32);
        // The session window is only enforced in strict mode: a SPDY/3 (not 3.1) peer that does
        // per-stream flow control knows no session window.
        if self.recv_window < 0 && self.flow == FlowControl::Strict {
            return self.protocol_error("the peer overran the session flow-control window".into());
        }
        let strict = self.flow_controlled();
        let Some(st) = self.streams.get_mut(&id) else {
            return self.session_consumed(len32).or(self.rst_unknown(id));
        };
        if st.reset.is_some() {
            // Data in flight when we reset: drop it, keep the session window flowing.
            return self.session_consumed(len32);
        }
        if st.recv_fin {
            let k = self.session_consumed(len32);
            return k.or(self.reset(id, RstStatus::StreamAlreadyClosed));
        }
        st.recv_window -= i64::from(len32);
        if st.recv_window < 0 && strict {
            let k = self.session_consumed(len32);
            return k.or(self.reset(id, RstStatus::FlowControlError));
        }
        let mut kick = Kick::default();
        if st.handle_dropped {
            kick = kick.or(self.session_consumed(len32));
        } else if len > 0 {
            st.recv_buffered += len;
            st.recv_buf.push_back(data);
            if let Some(w) = st.read_waker.take() {
                w.wake();
            }
        }
        if fin {
            kick = kick.or(self.on_remote_fin(id));
        }
        kick
    }
}
