//! The response body of a JSON-RPC connection, and the record of how far each of its
//! subscriptions got.
//!
//! Like a URL stream's body it merges actix-ws's control frames with the connection's one
//! queue, a whole queued item per chunk. The queue carries the answers to requests and every
//! subscription's notifications in the order they were queued; when it hands over a block of
//! a subscription, that subscription's last height advances ([`Progress`]), which is what the
//! close reason's `last_heights` reports.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use bytes::Bytes;

use crate::body::{ControlFrames, SentCounters};
use crate::metrics::BroadcastMetrics;
use crate::queue::SubscriberQueue;
use crate::subscription::StreamKind;

#[derive(Debug, Clone, Copy)]
struct Tracked {
    stream: StreamKind,
    last_height: Option<u64>,
}

/// The last height each subscription of a connection completely handed to the socket.
#[derive(Debug, Default)]
pub struct Progress {
    subscriptions: Mutex<HashMap<u64, Tracked>>,
}

impl Progress {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Tracked>> {
        self.subscriptions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts tracking subscription `key`, at `start` until one of its blocks is handed over.
    pub fn insert(&self, key: u64, stream: StreamKind, start: Option<u64>) {
        self.lock().insert(
            key,
            Tracked {
                stream,
                last_height: start,
            },
        );
    }

    /// Stops tracking `key` (unsubscribed).
    pub fn remove(&self, key: u64) {
        self.lock().remove(&key);
    }

    /// A block of `key` at `height` was handed to the socket; returns its stream while `key`
    /// is tracked.
    fn sent(&self, key: u64, height: u64) -> Option<StreamKind> {
        let mut subscriptions = self.lock();
        let tracked = subscriptions.get_mut(&key)?;
        tracked.last_height = Some(height);
        Some(tracked.stream)
    }

    /// Every subscription's id and last height (`null` when none is known yet).
    pub fn last_heights(&self) -> BTreeMap<String, Option<u64>> {
        self.lock()
            .iter()
            .map(|(key, tracked)| (key.to_string(), tracked.last_height))
            .collect()
    }
}

/// The body of one JSON-RPC connection.
pub struct RpcBody {
    control: ControlFrames,
    queue: Arc<SubscriberQueue>,
    progress: Arc<Progress>,
    /// Indexed as [`StreamKind::ALL`].
    counters: [SentCounters; 2],
}

impl RpcBody {
    /// Merges actix-ws's control body with the connection's queue.
    pub fn new(
        control: BoxBody,
        queue: Arc<SubscriberQueue>,
        progress: Arc<Progress>,
        metrics: &BroadcastMetrics,
    ) -> Self {
        Self {
            control: ControlFrames::new(control),
            queue,
            progress,
            counters: StreamKind::ALL.map(|stream| SentCounters::new(metrics, stream)),
        }
    }
}

impl MessageBody for RpcBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        this.control.next_chunk(cx, &this.queue, |block| {
            // Answers carry no subscription; notifications advance theirs.
            let stream = block
                .subscription
                .and_then(|key| this.progress.sent(key, block.height));
            if let Some(stream) = stream {
                this.counters[usize::from(stream == StreamKind::ValidBlocks)].count(block);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tracked_subscriptions_advance() {
        let progress = Progress::default();
        progress.insert(1, StreamKind::ValidBlocks, Some(4));
        progress.insert(2, StreamKind::ValidTransactions, None);
        assert_eq!(progress.sent(1, 7), Some(StreamKind::ValidBlocks));
        assert_eq!(progress.sent(3, 9), None, "not tracked");
        progress.remove(2);
        assert_eq!(progress.sent(2, 9), None, "unsubscribed");
        let heights = progress.last_heights();
        assert_eq!(heights.len(), 1);
        assert_eq!(heights["1"], Some(7));
    }
}
