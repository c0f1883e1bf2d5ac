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
use crate::queue::SubscriberQueue;
use crate::subscription::StreamKind;

/// Counters of one connection, resolved once.
struct SentCounters {
    events: IntCounter,
    bytes: IntCounter,
    batches: IntCounter,
    latency: prometheus::Histogram,
}

/// The body of one stream connection.
pub struct StreamBody {
    control: BoxBody,
    /// actix-ws's body ended: the close frame is written.
    control_done: bool,
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
        let label = [stream.name()];
        Self {
            control,
            control_done: false,
            queue,
            counters: SentCounters {
                events: metrics.events_sent.with_label_values(&label),
                bytes: metrics.bytes_sent.with_label_values(&label),
                batches: metrics.batches_sent.with_label_values(&label),
                latency: metrics.commit_to_send.clone(),
            },
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
        if !this.control_done {
            match Pin::new(&mut this.control).poll_next(cx) {
                Poll::Ready(Some(chunk)) => return Poll::Ready(Some(chunk)),
                Poll::Ready(None) => this.control_done = true,
                Poll::Pending => {}
            }
        }
        if this.control_done {
            // The close frame is written. The body (and so the connection) ends only when the
            // session says so: until the client's close frame came, or waiting for it was
            // given up. Meanwhile actix keeps reading what the client sends (its pongs, its
            // close); closing a socket with unread data in it makes the kernel reset the
            // connection and discard what the client had not read yet, the close frame with
            // `last_height` included.
            return this.queue.poll_finished(cx).map(|()| None);
        }
        match this.queue.poll_next_block(cx) {
            Poll::Ready(block) => {
                this.counters.events.inc_by(u64::from(block.messages));
                this.counters.bytes.inc_by(block.frames.len() as u64);
                this.counters.batches.inc();
                if let Some(at) = block.received_at {
                    this.counters.latency.observe(at.elapsed().as_secs_f64());
                }
                Poll::Ready(Some(Ok(block.frames)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
