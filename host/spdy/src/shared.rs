//! What a session's tasks and handles share: the protocol state behind one lock, with the
//! buffers, wakers and channels that carry its actions out, and the transport's sending half.
//!
//! One `std::sync::Mutex` guards [`Inner`]; it is never held across an `.await`. The reader task
//! feeds frames into [`State::on_frame`], streams and the session handle feed local events, and
//! [`Inner::apply`] performs the resulting [`Action`]s before the lock is released. Tasks to
//! wake come back as a [`Kick`], fired once the lock is released.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWrite;
use tokio::sync::{Notify, oneshot};

use crate::codec::Encoder;
use crate::config::Config;
use crate::error::{SessionError, StreamError};
use crate::frame::{Frame, StreamId};
use crate::outbox::Outbox;
use crate::state::{Action, Role, State};

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// The transport's sending half. Lock order: `writer` before `inner`, never the reverse.
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
        let mut actions = Vec::new();
        let state = State::new(&config, role, &mut actions);
        let mut inner = Inner {
            state,
            outbox: Outbox::new(config.write_queue_limit),
            streams: HashMap::new(),
            incoming_waker: None,
            pings: HashMap::new(),
            actions: Vec::new(),
        };
        // The opening frames; no task runs yet, `Session::start` wakes the writer.
        let _kick = inner.perform(&mut actions);
        Arc::new(Self {
            inner: Mutex::new(inner),
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
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn writer(&self) -> MutexGuard<'_, WriterSide> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Feeds one event to the state machine, performs its actions, and wakes the tasks they
    /// concern once the lock is released.
    pub fn apply(&self, event: impl FnOnce(&mut State, &mut Vec<Action>)) {
        let kick = self.lock().apply(event);
        self.kick(kick);
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
        let mut cx = Context::from_waker(Waker::noop());
        match w.poll_drain(self, &mut cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => {
                drop(w);
                self.apply(|s, out| s.close(e, out));
            }
            // The transport registered a waker that does nothing: hand over to the writer task.
            Poll::Pending => {
                w.idle = false;
                drop(w);
                self.writer_wake.notify_one();
            }
        }
    }

    /// Wakes the tasks that react to changes made under the lock just released.
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

/// What the application side of a stream waits on and reads from.
#[derive(Default)]
pub(crate) struct StreamIo {
    /// Data delivered and not yet read (the state machine counts it as `recv_buffered`).
    pub recv_buf: VecDeque<Bytes>,
    /// Our data bytes (FIN counts one) queued but not yet written to the transport.
    pub unflushed: usize,
    pub read_waker: Option<Waker>,
    pub write_waker: Option<Waker>,
    pub reply_waker: Option<Waker>,
}

impl StreamIo {
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
}

/// Everything behind the session lock.
pub(crate) struct Inner {
    pub state: State,
    pub outbox: Outbox,
    /// Per stream, created on first use; an entry exists only while `state` tracks the stream.
    streams: HashMap<StreamId, StreamIo>,
    pub incoming_waker: Option<Waker>,
    pings: HashMap<u32, oneshot::Sender<()>>,
    /// Kept between events so that performing them allocates nothing.
    actions: Vec<Action>,
}

impl Inner {
    /// Feeds one event to the state machine and performs its actions.
    pub fn apply(&mut self, event: impl FnOnce(&mut State, &mut Vec<Action>)) -> Kick {
        self.apply_with(event).1
    }

    /// [`Inner::apply`] for an event that also returns something.
    pub fn apply_with<R>(
        &mut self,
        event: impl FnOnce(&mut State, &mut Vec<Action>) -> R,
    ) -> (R, Kick) {
        let mut actions = std::mem::take(&mut self.actions);
        let r = event(&mut self.state, &mut actions);
        let kick = self.perform(&mut actions);
        self.actions = actions;
        (r, kick)
    }

    /// The application side of stream `id`; call only for a stream `state` tracks.
    pub fn stream_io(&mut self, id: StreamId) -> &mut StreamIo {
        self.streams.entry(id).or_default()
    }

    pub fn stream_io_ref(&self, id: StreamId) -> Option<&StreamIo> {
        self.streams.get(&id)
    }

    /// How many bytes a writer may queue on `id` right now (0: wait), or the error to return.
    pub fn write_capacity(
        &self,
        id: StreamId,
        want: usize,
        max_frame: usize,
    ) -> Result<usize, StreamError> {
        let n = self.state.write_capacity(id, want, max_frame)?;
        Ok(if self.outbox.is_full() { 0 } else { n })
    }

    /// The write queue is so full that the reader should wait for it to drain.
    pub fn reader_should_wait_for_queue(&self) -> bool {
        self.state.closed().is_none() && self.outbox.is_overfull()
    }

    /// Registers a PING sent with `id`; the receiver completes when its echo arrives and fails
    /// when the session ends.
    pub fn await_ping(&mut self, id: u32) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.pings.insert(id, tx);
        rx
    }

    /// The writer is done with a frame of `cost`; data frames free their stream's unflushed
    /// count (`len` bytes, FIN included).
    fn written(&mut self, cost: usize, data_of: Option<(StreamId, usize)>) {
        self.outbox.written(cost);
        if let Some((id, len)) = data_of
            && let Some(io) = self.streams.get_mut(&id)
        {
            io.unflushed = io.unflushed.saturating_sub(len);
        }
    }

    fn wake_writers(&mut self) {
        for io in self.streams.values_mut() {
            if let Some(w) = io.write_waker.take() {
                w.wake();
            }
        }
    }

    fn perform(&mut self, actions: &mut Vec<Action>) -> Kick {
        let mut kick = Kick::default();
        for action in actions.drain(..) {
            match action {
                Action::Send(frame) => {
                    if let Frame::Data {
                        stream_id,
                        fin,
                        data,
                    } = &frame
                    {
                        self.stream_io(*stream_id).unflushed += data.len() + usize::from(*fin);
                    }
                    self.outbox.push(frame);
                    kick.writer = true;
                }
                Action::SendBehindData(frame) => {
                    self.outbox.push_behind_data(frame);
                    kick.writer = true;
                }
                Action::CancelQueued(id) => {
                    self.outbox.cancel_data(id);
                    if let Some(io) = self.streams.get_mut(&id) {
                        io.unflushed = 0;
                    }
                }
                Action::Deliver(id, data) => {
                    let io = self.stream_io(id);
                    io.recv_buf.push_back(data);
                    if let Some(w) = io.read_waker.take() {
                        w.wake();
                    }
                }
                Action::Discard(id) => {
                    if let Some(io) = self.streams.get_mut(&id) {
                        io.recv_buf.clear();
                    }
                }
                Action::PeerFinished(id) => {
                    if let Some(w) = self
                        .streams
                        .get_mut(&id)
                        .and_then(|io| io.read_waker.take())
                    {
                        w.wake();
                    }
                }
                Action::Replied(id) => {
                    if let Some(w) = self
                        .streams
                        .get_mut(&id)
                        .and_then(|io| io.reply_waker.take())
                    {
                        w.wake();
                    }
                }
                Action::StreamReset(id) => {
                    if let Some(io) = self.streams.get_mut(&id) {
                        io.wake_all();
                    }
                }
                Action::WindowsChanged => self.wake_writers(),
                Action::Forget(id) => {
                    self.streams.remove(&id);
                }
                Action::IncomingChanged => {
                    if let Some(w) = self.incoming_waker.take() {
                        w.wake();
                    }
                }
                Action::PingAnswered(id) => {
                    if let Some(tx) = self.pings.remove(&id) {
                        let _ = tx.send(());
                    }
                }
                Action::ResumeReading => kick.reader = true,
                Action::Closed { discard_queued } => {
                    if discard_queued {
                        self.outbox.clear();
                    }
                    for io in self.streams.values_mut() {
                        io.wake_all();
                    }
                    if let Some(w) = self.incoming_waker.take() {
                        w.wake();
                    }
                    // Pending pings fail.
                    self.pings.clear();
                    kick.closed = true;
                }
            }
        }
        kick
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
    pub idle: bool,
}

impl WriterSide {
    pub fn new<W: AsyncWrite + Send + 'static>(wr: W) -> Self {
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
    pub fn poll_drain(
        &mut self,
        shared: &Shared,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), SessionError>> {
        loop {
            if self.out.is_empty() && !self.flushing {
                {
                    let mut inner = shared.lock();
                    // Batch up to ~64 KiB so one syscall carries many small frames.
                    let mut cost = 0;
                    while cost < (64 << 10) {
                        let Some(item) = inner.outbox.pop() else {
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
            {
                let mut inner = shared.lock();
                for (frame, cost) in self.batch.drain(..) {
                    let data_of = match &frame {
                        Frame::Data {
                            stream_id,
                            data,
                            fin,
                        } => Some((*stream_id, data.len() + usize::from(*fin))),
                        _ => None,
                    };
                    inner.written(cost, data_of);
                }
                inner.wake_writers();
            }
            shared.kick(Kick {
                reader: true,
                ..Kick::default()
            });
        }
    }

    /// Shuts the transport's sending half down.
    pub fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.wr.as_mut().poll_shutdown(cx)
    }
}
