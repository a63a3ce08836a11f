//! Frames on their way to the writer, in wire order, with what they cost the write queue.

use std::collections::VecDeque;

use crate::frame::{Frame, StreamId};

/// Approximate queue cost of a control frame.
const CONTROL_COST: usize = 32;

pub(crate) struct Outbox {
    /// Stream frames (SYN_STREAM, SYN_REPLY, HEADERS, data) in wire order, with their cost.
    queue: VecDeque<(Frame, usize)>,
    /// Session and flow-control frames (WINDOW_UPDATE, PING, SETTINGS, RST_STREAM, GOAWAY); the
    /// writer sends them ahead of queued data, or a WINDOW_UPDATE stuck behind data that waits
    /// for the peer's WINDOW_UPDATE could deadlock both sides.
    urgent: VecDeque<(Frame, usize)>,
    /// The cost of what is queued, or taken by the writer and not yet written.
    cost: usize,
    /// `Config::write_queue_limit`.
    limit: usize,
}

impl Outbox {
    pub fn new(limit: usize) -> Self {
        Self {
            queue: VecDeque::new(),
            urgent: VecDeque::new(),
            cost: 0,
            limit,
        }
    }

    /// Queues a frame: session and flow-control frames ahead of stream frames.
    pub fn push(&mut self, frame: Frame) {
        let cost = match &frame {
            Frame::Data { data, .. } => data.len().max(1),
            _ => CONTROL_COST,
        };
        self.cost += cost;
        match frame {
            Frame::WindowUpdate { .. }
            | Frame::Ping { .. }
            | Frame::Settings { .. }
            | Frame::RstStream { .. }
            | Frame::GoAway { .. } => self.urgent.push_back((frame, cost)),
            _ => self.queue.push_back((frame, cost)),
        }
    }

    /// Queues a control frame behind the stream frames already queued.
    pub fn push_behind_data(&mut self, frame: Frame) {
        self.cost += CONTROL_COST;
        self.queue.push_back((frame, CONTROL_COST));
    }

    /// Drops the data frames queued for `id`.
    pub fn cancel_data(&mut self, id: StreamId) {
        let mut freed = 0;
        self.queue.retain(|(f, cost)| {
            let drop = matches!(f, Frame::Data { stream_id, .. } if *stream_id == id);
            if drop {
                freed += cost;
            }
            !drop
        });
        self.cost -= freed;
    }

    /// The next frame for the writer, with its cost (hand it back to [`Outbox::written`]).
    pub fn pop(&mut self) -> Option<(Frame, usize)> {
        self.urgent.pop_front().or_else(|| self.queue.pop_front())
    }

    /// The writer is done with a frame of `cost`.
    pub fn written(&mut self, cost: usize) {
        self.cost = self.cost.saturating_sub(cost);
    }

    /// Forgets everything queued (the transport failed).
    pub fn clear(&mut self) {
        self.queue.clear();
        self.urgent.clear();
        self.cost = 0;
    }

    /// Writers wait until the writer has made room.
    pub fn is_full(&self) -> bool {
        self.cost >= self.limit
    }

    /// So full (control frames included) that the reader should stop producing replies (PING
    /// echoes, WINDOW_UPDATEs) until it drains.
    pub fn is_overfull(&self) -> bool {
        self.cost > self.limit.saturating_mul(2)
    }
}
