//! The response body of a stream connection: everything the server writes after the upgrade.
//!
//! Two sources are merged, whole chunks at a time so frames never interleave:
//! - actix-ws's own body, which carries the control frames the session sends through its
//!   `Session` (pings, pongs, the close frame) and ends after the close frame;
//! - the subscriber's [`SubscriberQueue`], which yields one block's pre-encoded frames per
//!   chunk (the same `Bytes` for every subscriber of an unfiltered stream).
//!
//! actix-http writes a chunk into its buffer and flushes when the body has nothing more ready,
//! so a block's messages go out back to back in one write.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use bytes::Bytes;
use prometheus::IntCounter;

use crate::metrics::BroadcastMetrics;
use crate::queue::{QueuedBlock, SubscriberQueue};
use crate::subscription::StreamKind;

/// The sent-data metrics of one stream, resolved once per connection.
pub(crate) struct SentCounters {
    events: IntCounter,
    bytes: IntCounter,
    batches: IntCounter,
    latency: prometheus::Histogram,
}

impl SentCounters {
    /// The counters labelled with `stream`.
    pub(crate) fn new(metrics: &BroadcastMetrics, stream: StreamKind) -> Self {
        let label = [stream.name()];
        Self {
            events: metrics.events_sent.with_label_values(&label),
            bytes: metrics.bytes_sent.with_label_values(&label),
            batches: metrics.batches_sent.with_label_values(&label),
            latency: metrics.commit_to_send.clone(),
        }
    }

    /// Counts a block handed to the socket (and, for a live block, its commit-to-send time).
    pub(crate) fn count(&self, block: &QueuedBlock) {
        self.events.inc_by(u64::from(block.messages));
        self.bytes.inc_by(block.frames.len() as u64);
        self.batches.inc();
        if let Some(at) = block.received_at {
            self.latency.observe(at.elapsed().as_secs_f64());
        }
    }
}

/// actix-ws's own body (pings, pongs, the close frame), and when the connection may end:
/// the half every stream connection's body shares.
pub(crate) struct ControlFrames {
    body: BoxBody,
    /// actix-ws's body ended: the close frame is written.
    done: bool,
}

/// What a response body yields.
pub(crate) type Chunk = Poll<Option<Result<Bytes, Box<dyn std::error::Error>>>>;

impl ControlFrames {
    /// actix-ws's control body.
    pub(crate) fn new(body: BoxBody) -> Self {
        Self { body, done: false }
    }

    /// `Some`: what the connection's body yields now (a control frame, or its end). `None`:
    /// nothing from here, the queue's blocks may go.
    ///
    /// Once the close frame is written, the body (and so the connection) ends only when the
    /// session says so (`queue.finish()`): after the client's close frame came, or waiting for
    /// it was given up. Meanwhile actix keeps reading what the client sends (its pongs, its
    /// close); closing a socket with unread data in it makes the kernel reset the connection
    /// and discard what the client had not read yet, the close frame with the heights to
    /// resume from included.
    fn poll(&mut self, cx: &mut Context<'_>, queue: &SubscriberQueue) -> Option<Chunk> {
        if !self.done {
            match Pin::new(&mut self.body).poll_next(cx) {
                Poll::Ready(Some(chunk)) => return Some(Poll::Ready(Some(chunk))),
                Poll::Ready(None) => self.done = true,
                Poll::Pending => {}
            }
        }
        self.done.then(|| queue.poll_finished(cx).map(|()| None))
    }

    /// What the connection's body yields next: a control frame, its end, or the queue's next
    /// block, handed to `sent` (to count it) on its way to the socket.
    pub(crate) fn next_chunk(
        &mut self,
        cx: &mut Context<'_>,
        queue: &SubscriberQueue,
        sent: impl FnOnce(&QueuedBlock),
    ) -> Chunk {
        if let Some(chunk) = self.poll(cx, queue) {
            return chunk;
        }
        queue.poll_next_block(cx).map(|block| {
            sent(&block);
            Some(Ok(block.frames))
        })
    }
}

/// The body of one stream connection.
pub struct StreamBody {
    control: ControlFrames,
    queue: Arc<SubscriberQueue>,
    counters: SentCounters,
}

impl StreamBody {
    /// Merges actix-ws's control body with the subscriber's queue.
    pub fn new(
        control: BoxBody,
        queue: Arc<SubscriberQueue>,
        stream: StreamKind,
        metrics: &BroadcastMetrics,
    ) -> Self {
        Self {
            control: ControlFrames::new(control),
            queue,
            counters: SentCounters::new(metrics, stream),
        }
    }
}

impl MessageBody for StreamBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        this.control
            .next_chunk(cx, &this.queue, |block| this.counters.count(block))
    }
}
