//! The response body of a stream connection: everything the server writes after the
//! handshake, whatever the dialect.
//!
//! Two sources are merged, whole chunks at a time so nothing interleaves:
//! - the link's control chunks: on a WebSocket, actix-ws's own body with the frames the driver
//!   sends through its `Session` (pings, pongs, a closing notice, the close frame), which ends
//!   after the close frame; on a plain HTTP stream, keep-alive comments and the final notice;
//! - the connection's [`SubscriberQueue`], one delivery per chunk: a block's shared frames as
//!   they are (the same `Bytes` for every subscriber of an unfiltered URL stream), or each of
//!   their messages wrapped in the delivery's envelope ([`crate::envelope::write`]), written
//!   here, when the socket takes it.
//!
//! actix-http writes a chunk into its buffer and flushes when the body has nothing more ready,
//! so a block's messages go out back to back in one write.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use bytes::Bytes;
use prometheus::IntCounter;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::BroadcastMetrics;
use crate::queue::{Delivery, SubscriberQueue};
use crate::subscription::StreamKind;

/// The sent-data metrics of one stream, resolved once per connection.
struct SentCounters {
    events: IntCounter,
    bytes: IntCounter,
    batches: IntCounter,
    latency: prometheus::Histogram,
}

impl SentCounters {
    /// The counters labelled with `stream`.
    fn new(metrics: &BroadcastMetrics, stream: StreamKind) -> Self {
        let label = [stream.name()];
        Self {
            events: metrics.events_sent.with_label_values(&label),
            bytes: metrics.bytes_sent.with_label_values(&label),
            batches: metrics.batches_sent.with_label_values(&label),
            latency: metrics.commit_to_send.clone(),
        }
    }

    /// Counts a delivery of `bytes` handed to the socket (and, for a live block, its
    /// commit-to-send time).
    fn count(&self, delivery: &Delivery, bytes: usize) {
        self.events.inc_by(u64::from(delivery.messages));
        self.bytes.inc_by(bytes as u64);
        self.batches.inc();
        if let Some(at) = delivery.received_at {
            self.latency.observe(at.elapsed().as_secs_f64());
        }
    }
}

/// Where the link's own chunks come from.
pub(crate) enum Control {
    /// actix-ws's body: the frames sent through the connection's `Session`.
    WebSocket(BoxBody),
    /// A plain HTTP stream's chunks (keep-alives, the final notice); ends when the sender is
    /// dropped.
    Http(mpsc::Receiver<Bytes>),
}

/// What a response body yields.
type Chunk = Poll<Option<Result<Bytes, Box<dyn std::error::Error>>>>;

/// The body of one stream connection.
pub(crate) struct ConnectionBody {
    control: Control,
    /// The control source ended (a WebSocket's close frame is written, an HTTP stream's
    /// notice): the body ends once the driver says the connection is finished.
    control_done: bool,
    queue: Arc<SubscriberQueue>,
    /// Indexed as [`StreamKind::ALL`].
    counters: [SentCounters; 2],
    /// Cancelled when the body is dropped: the connection is gone (how a plain HTTP stream,
    /// which has no frames from the client, learns it).
    dropped: CancellationToken,
}

impl ConnectionBody {
    /// Merges `control` with the connection's queue.
    pub(crate) fn new(
        control: Control,
        queue: Arc<SubscriberQueue>,
        metrics: &BroadcastMetrics,
        dropped: CancellationToken,
    ) -> Self {
        Self {
            control,
            control_done: false,
            queue,
            counters: StreamKind::ALL.map(|stream| SentCounters::new(metrics, stream)),
            dropped,
        }
    }

    /// `Some`: what the body yields now (a control chunk, or its end). `None`: nothing from
    /// the control source, the queue's deliveries may go.
    ///
    /// Once the control source has ended, the body (and so the connection) ends only when
    /// the driver says so (`queue.finish()`): after the client's close frame came, or waiting
    /// for it was given up. Meanwhile actix keeps reading what the client sends (its pongs,
    /// its close); closing a socket with unread data in it makes the kernel reset the
    /// connection and discard what the client had not read yet, the close frame with the
    /// heights to resume from included.
    fn poll_control(&mut self, cx: &mut Context<'_>) -> Option<Chunk> {
        if !self.control_done {
            let next = match &mut self.control {
                Control::WebSocket(body) => match Pin::new(body).poll_next(cx) {
                    Poll::Ready(Some(chunk)) => Poll::Ready(Some(chunk)),
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                },
                Control::Http(chunks) => chunks.poll_recv(cx).map(|chunk| chunk.map(Ok)),
            };
            match next {
                Poll::Ready(Some(chunk)) => return Some(Poll::Ready(Some(chunk))),
                Poll::Ready(None) => self.control_done = true,
                Poll::Pending => {}
            }
        }
        self.control_done
            .then(|| self.queue.poll_finished(cx).map(|()| None))
    }
}

impl MessageBody for ConnectionBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        if let Some(chunk) = this.poll_control(cx) {
            return chunk;
        }
        this.queue.poll_next(cx).map(|delivery| {
            let bytes = if delivery.envelope.is_none() {
                delivery.frames.clone()
            } else {
                let mut out = Vec::new();
                crate::envelope::write(&delivery, &mut out);
                Bytes::from(out)
            };
            // Answers are not stream data.
            if let Some(tag) = delivery.subscription {
                let counters = &this.counters[usize::from(tag.stream == StreamKind::ValidBlocks)];
                counters.count(&delivery, bytes.len());
            }
            Some(Ok(bytes))
        })
    }
}

impl Drop for ConnectionBody {
    fn drop(&mut self) {
        self.dropped.cancel();
    }
}
