//! The hub: fans each committed block out to every subscriber's queue, and keeps the most
//! recent blocks in a ring for subscribers that resume.
//!
//! One lock guards the registry and the ring. Publishing frames the block once, outside the
//! lock, then, under it, appends to the ring and pushes the shared frames into each matching
//! queue without waiting (a full queue overflows instead). Subscribers attach under the same
//! lock only when they have caught up to the last published height, so a resuming subscriber
//! sees every block exactly once at the seam between history and live.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use planetmint_streams_model::{BlockSink, CommittedBlock};
use tokio::sync::Notify;
use tracing::debug;

use crate::metrics::BroadcastMetrics;
use crate::published::PublishedBlock;
use crate::queue::{Pushed, QueuedBlock, SubscriberQueue};
use crate::subscription::{Filter, Framing, StreamKind, Subscription};

/// What a subscriber receives: stream, filter and framing.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Which stream.
    pub stream: StreamKind,
    /// Which transactions.
    pub filter: Filter,
    /// Message framing.
    pub framing: Framing,
}

impl From<&Subscription> for Selection {
    fn from(s: &Subscription) -> Self {
        Self {
            stream: s.stream,
            filter: s.filter.clone(),
            framing: s.framing,
        }
    }
}

impl Selection {
    /// This subscriber's frames of `block`, or `None` when nothing in it is for them.
    pub fn frames(&self, block: &PublishedBlock) -> Option<QueuedBlock> {
        let height = block.height();
        let all = self.filter.is_empty();
        let matching: Vec<usize> = if all {
            Vec::new()
        } else {
            block
                .block
                .transactions
                .iter()
                .enumerate()
                .filter(|(_, tx)| self.filter.matches(tx))
                .map(|(i, _)| i)
                .collect()
        };
        let queued = |frames: Bytes, messages: usize| QueuedBlock {
            height,
            frames,
            messages: u32::try_from(messages).unwrap_or(u32::MAX),
            received_at: None,
        };
        match (self.stream, self.framing) {
            (StreamKind::ValidBlocks, _) => {
                (all || !matching.is_empty()).then(|| queued(block.block_frame().clone(), 1))
            }
            (StreamKind::ValidTransactions, Framing::PerEvent) => {
                if all {
                    (block.transaction_count() > 0).then(|| {
                        queued(
                            block.transaction_frames().clone(),
                            block.transaction_count(),
                        )
                    })
                } else {
                    (!matching.is_empty())
                        .then(|| queued(block.transaction_frames_of(&matching), matching.len()))
                }
            }
            (StreamKind::ValidTransactions, Framing::PerBlock) => {
                if all {
                    (block.transaction_count() > 0).then(|| queued(block.batch_frame().clone(), 1))
                } else {
                    (!matching.is_empty()).then(|| queued(block.batch_frame_of(&matching), 1))
                }
            }
        }
    }
}

/// Identifies an attached subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriberId(u64);

/// What a resuming subscriber must do next to catch up.
#[derive(Debug)]
pub enum Catchup {
    /// Caught up: attached for live blocks.
    Attached(SubscriberId),
    /// Queue these recent blocks (heights above the asked one), then ask again.
    FromMemory(Vec<Arc<PublishedBlock>>),
    /// Read the committed blocks in `(after, upto]` from the source, then ask again.
    FromSource {
        /// Exclusive lower bound.
        after: u64,
        /// Inclusive upper bound.
        upto: u64,
    },
    /// The ingest has not reached the source yet: wait for [`Hub::started`].
    NotStarted,
}

struct Attached {
    queue: Arc<SubscriberQueue>,
    selection: Arc<Selection>,
    /// Blocks at or below this height are not for this subscriber.
    after: u64,
}

#[derive(Default)]
struct HubState {
    subscribers: HashMap<u64, Attached>,
    ring: VecDeque<Arc<PublishedBlock>>,
    /// The ring holds every published block above this height.
    ring_complete_after: u64,
    /// Last published height (the follower's start before the first block); `None` until the
    /// follower has started.
    last_published: Option<u64>,
}

/// The fan-out point between the ingest and the sockets.
pub struct Hub {
    state: Mutex<HubState>,
    next_id: AtomicU64,
    ring_capacity: usize,
    started: Notify,
    metrics: BroadcastMetrics,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("ring_capacity", &self.ring_capacity)
            .finish()
    }
}

impl Hub {
    /// A hub keeping the last `ring_capacity` blocks in memory for resumes.
    pub fn new(ring_capacity: usize, metrics: BroadcastMetrics) -> Self {
        Self {
            state: Mutex::new(HubState::default()),
            next_id: AtomicU64::new(1),
            ring_capacity,
            started: Notify::new(),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The metrics the hub and its sessions update.
    pub fn metrics(&self) -> &BroadcastMetrics {
        &self.metrics
    }

    /// Last published height, once the follower has started.
    pub fn last_published(&self) -> Option<u64> {
        self.lock().last_published
    }

    /// Waits until the follower has started; returns its starting point or last height.
    pub async fn started(&self) -> u64 {
        loop {
            let notified = self.started.notified();
            if let Some(height) = self.last_published() {
                return height;
            }
            notified.await;
        }
    }

    fn attach_locked(
        &self,
        state: &mut HubState,
        queue: &Arc<SubscriberQueue>,
        selection: &Arc<Selection>,
        after: u64,
    ) -> SubscriberId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        state.subscribers.insert(
            id,
            Attached {
                queue: queue.clone(),
                selection: selection.clone(),
                after,
            },
        );
        SubscriberId(id)
    }

    /// Attaches a subscriber for blocks published from now on (Planetmint's behaviour).
    pub fn attach_live(
        &self,
        queue: &Arc<SubscriberQueue>,
        selection: &Arc<Selection>,
    ) -> SubscriberId {
        let mut state = self.lock();
        let after = state.last_published.unwrap_or(0);
        self.attach_locked(&mut state, queue, selection, after)
    }

    /// One step of catching up from `after` (the last height already queued for this
    /// subscriber). Attaches when nothing is missing between `after` and live.
    pub fn catch_up(
        &self,
        queue: &Arc<SubscriberQueue>,
        selection: &Arc<Selection>,
        after: u64,
    ) -> Catchup {
        let mut state = self.lock();
        let Some(last) = state.last_published else {
            return Catchup::NotStarted;
        };
        if after >= last {
            // Caught up (or asking for the future: blocks up to `after` are skipped).
            return Catchup::Attached(self.attach_locked(&mut state, queue, selection, after));
        }
        if after >= state.ring_complete_after {
            let recent = state
                .ring
                .iter()
                .filter(|b| b.height() > after)
                .cloned()
                .collect();
            return Catchup::FromMemory(recent);
        }
        Catchup::FromSource {
            after,
            upto: state.ring_complete_after,
        }
    }

    /// Detaches a subscriber (its session ended).
    pub fn detach(&self, id: SubscriberId) {
        self.lock().subscribers.remove(&id.0);
    }

    /// Number of attached subscribers.
    pub fn subscriber_count(&self) -> usize {
        self.lock().subscribers.len()
    }
}

impl BlockSink for Hub {
    fn start_after(&self, height: u64) {
        {
            let mut state = self.lock();
            match state.last_published {
                // A restarted follower resumes from its own cursor, which is ours.
                Some(last) if last >= height => {}
                _ => {
                    state.last_published = Some(height);
                    state.ring_complete_after = height;
                    state.ring.clear();
                }
            }
        }
        self.metrics
            .published_height
            .set(i64::try_from(height).unwrap_or(i64::MAX));
        self.started.notify_waiters();
    }

    fn publish(&self, block: Arc<CommittedBlock>) {
        let height = block.height;
        let published = Arc::new(PublishedBlock::new(block));
        let mut overflowed = 0usize;
        {
            let mut state = self.lock();
            if state.last_published.is_some_and(|last| height <= last) {
                debug!(
                    height,
                    "ignoring a block at or below the last published height"
                );
                return;
            }
            state.ring.push_back(published.clone());
            while state.ring.len() > self.ring_capacity {
                if let Some(evicted) = state.ring.pop_front() {
                    state.ring_complete_after = evicted.height();
                }
            }
            state.last_published = Some(height);
            for subscriber in state.subscribers.values() {
                if height <= subscriber.after {
                    continue;
                }
                if let Some(mut frames) = subscriber.selection.frames(&published) {
                    frames.received_at = Some(published.received_at);
                    if subscriber.queue.push(frames) == Pushed::Overflowed {
                        overflowed += 1;
                    }
                }
            }
        }
        if overflowed > 0 {
            debug!(height, overflowed, "subscribers fell behind");
        }
        self.metrics.blocks_published.inc();
        self.metrics
            .published_height
            .set(i64::try_from(height).unwrap_or(i64::MAX));
        self.started.notify_waiters();
    }
}
