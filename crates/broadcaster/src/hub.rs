//! The hub: fans each committed block out to every subscriber's queue, and keeps the most
//! recent blocks in a ring for subscribers that resume.
//!
//! One lock guards the registry and the ring. Publishing frames the block once, outside the
//! lock, then, under it, appends to the ring, pushes the shared frames into each unfiltered
//! queue without waiting (a full queue overflows instead; a `partition` alone counts as
//! unfiltered: its workers share one set of frames per partition) and looks up the filtered
//! subscribers in the index; their filters are checked and their frames built after the lock
//! is released. Nothing is built per subscriber under the lock: a push is a reference to the
//! shared frames and the subscription's envelope (see [`crate::envelope`]). Subscribers attach under the same
//! lock only when they have caught up to the last published height, so a resuming subscriber
//! sees every block exactly once at the seam between history and live.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use planetmint_streams_model::{BlockSink, CommittedBlock};
use tokio::sync::Notify;
use tracing::debug;

use crate::index::FilterIndex;
use crate::metrics::BroadcastMetrics;
use crate::published::PublishedBlock;
use crate::queue::{Delivery, Pushed, SubscriberQueue};
pub use crate::selection::Selection;
use crate::selection::{filtered_frames, unfiltered_frames};
use crate::shrink::release_unused;
use crate::subscription::{Framing, Partition, Payload, StreamKind};

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
    /// Subscribers without filter: every block goes to each of them.
    unfiltered: HashMap<u64, Attached>,
    /// Subscribers with a filter, found through `index`.
    filtered: HashMap<u64, Attached>,
    index: FilterIndex,
    ring: VecDeque<Arc<PublishedBlock>>,
    /// What the ring's blocks hold ([`PublishedBlock::memory_bytes`] when they entered it).
    ring_bytes: usize,
    /// The ring holds every published block above this height.
    ring_complete_after: u64,
    /// Last published height (the follower's start before the first block); `None` until the
    /// follower has started.
    last_published: Option<u64>,
}

/// The fan-out point between the ingest and the sockets.
pub struct Hub {
    state: Mutex<HubState>,
    /// Held for a whole publish (blocks are pushed in order, and a selection changes only
    /// between two blocks' pushes); never taken while `state` is held.
    publish_order: Mutex<()>,
    next_id: AtomicU64,
    /// Attached subscribers with `include=transaction` (changed under `state`): while there
    /// are any, each block's whole transactions are framed before the state lock is taken.
    whole_transaction_subscribers: AtomicUsize,
    ring_capacity: usize,
    /// Most bytes the ring may hold (the newest block stays even if it alone is bigger).
    ring_max_bytes: usize,
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
            publish_order: Mutex::new(()),
            next_id: AtomicU64::new(1),
            whole_transaction_subscribers: AtomicUsize::new(0),
            ring_capacity,
            ring_max_bytes: usize::MAX,
            started: Notify::new(),
            metrics,
        }
    }

    /// Bounds the ring in bytes as well as in blocks.
    pub fn with_ring_max_bytes(mut self, bytes: usize) -> Self {
        self.ring_max_bytes = bytes;
        self
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publishing(&self) -> MutexGuard<'_, ()> {
        self.publish_order.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Counts a selection in or out of [`Hub::whole_transaction_subscribers`].
    fn count_payload(&self, selection: &Selection, attached: bool) {
        if selection.payload == Payload::WithTransaction {
            if attached {
                self.whole_transaction_subscribers
                    .fetch_add(1, Ordering::Relaxed);
            } else {
                self.whole_transaction_subscribers
                    .fetch_sub(1, Ordering::Relaxed);
            }
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
        self.count_payload(selection, true);
        let attached = Attached {
            queue: queue.clone(),
            selection: selection.clone(),
            after,
        };
        if !selection.filter.has_values() {
            state.unfiltered.insert(id, attached);
        } else {
            state.index.insert(id, &selection.filter);
            state.filtered.insert(id, attached);
        }
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

    /// Whether a subscriber resuming after `after` would read history from the source: the
    /// ring does not reach back that far (or the ingest has not started yet).
    pub fn needs_source(&self, after: u64) -> bool {
        let state = self.lock();
        match state.last_published {
            None => true,
            Some(last) => after < last && after < state.ring_complete_after,
        }
    }

    /// Replaces an attached subscriber's selection (a JSON-RPC `update`) under the lock that
    /// publishes blocks. Returns the last published height: blocks up to it went out with the
    /// old selection, later ones go out with the new one, none is skipped or repeated. `None`
    /// when `id` is not attached. Costs one index operation per filter value that changed.
    pub fn update_selection(&self, id: SubscriberId, selection: &Arc<Selection>) -> Option<u64> {
        // Wait for a publish in progress to finish pushing (filtered frames are pushed after
        // the state lock is released), so that every block up to the returned height has been
        // queued with the old selection before the caller answers.
        let _publishing = self.publishing();
        let mut state = self.lock();
        self.update_locked(&mut state, id, selection)?;
        Some(state.last_published.unwrap_or(0))
    }

    fn update_locked(
        &self,
        state: &mut HubState,
        id: SubscriberId,
        selection: &Arc<Selection>,
    ) -> Option<()> {
        let was_filtered = !state.unfiltered.contains_key(&id.0);
        let mut attached = match state.unfiltered.remove(&id.0) {
            Some(attached) => attached,
            None => state.filtered.remove(&id.0)?,
        };
        let filtered = selection.filter.has_values();
        match (was_filtered, filtered) {
            (true, true) => {
                state
                    .index
                    .replace(id.0, &attached.selection.filter, &selection.filter)
            }
            (true, false) => state.index.remove(id.0, &attached.selection.filter),
            (false, true) => state.index.insert(id.0, &selection.filter),
            (false, false) => {}
        }
        self.count_payload(&attached.selection, false);
        self.count_payload(selection, true);
        attached.selection = selection.clone();
        if filtered {
            state.filtered.insert(id.0, attached);
        } else {
            state.unfiltered.insert(id.0, attached);
        }
        Some(())
    }

    /// A consumer group gains a member at one point of the stream: `joining` is attached for
    /// blocks from now on and each of `members` gets its new selection (its share), under the
    /// lock that publishes blocks, so every block is split by exactly one membership.
    pub fn join_group(
        &self,
        joining: (&Arc<SubscriberQueue>, &Arc<Selection>),
        members: &[(SubscriberId, Arc<Selection>)],
    ) -> SubscriberId {
        let _publishing = self.publishing();
        let mut state = self.lock();
        for (id, selection) in members {
            self.update_locked(&mut state, *id, selection);
        }
        let after = state.last_published.unwrap_or(0);
        self.attach_locked(&mut state, joining.0, joining.1, after)
    }

    /// A consumer group loses a member at one point of the stream: `leaving` is detached and
    /// each of `members` gets its new selection, under the lock that publishes blocks.
    pub fn leave_group(&self, leaving: SubscriberId, members: &[(SubscriberId, Arc<Selection>)]) {
        let _publishing = self.publishing();
        let mut state = self.lock();
        self.detach_locked(&mut state, leaving);
        for (id, selection) in members {
            self.update_locked(&mut state, *id, selection);
        }
    }

    /// Detaches a subscriber (its session ended).
    pub fn detach(&self, id: SubscriberId) {
        let mut state = self.lock();
        self.detach_locked(&mut state, id);
    }

    fn detach_locked(&self, state: &mut HubState, id: SubscriberId) {
        let removed = match state.unfiltered.remove(&id.0) {
            Some(attached) => Some(attached),
            None => {
                let attached = state.filtered.remove(&id.0);
                if let Some(attached) = &attached {
                    state.index.remove(id.0, &attached.selection.filter);
                }
                attached
            }
        };
        if let Some(attached) = removed {
            self.count_payload(&attached.selection, false);
        }
        // After a crowd has left, give back the slots it needed (ADR 0005).
        release_unused(&mut state.unfiltered);
        release_unused(&mut state.filtered);
    }

    /// Number of attached subscribers.
    pub fn subscriber_count(&self) -> usize {
        let state = self.lock();
        state.unfiltered.len() + state.filtered.len()
    }

    /// Number of distinct filter values indexed (for tests).
    pub fn indexed_values(&self) -> usize {
        self.lock().index.len()
    }

    /// Slots the registry of attached subscribers holds (for tests: it shrinks after a crowd
    /// has left).
    pub fn registry_capacity(&self) -> usize {
        let state = self.lock();
        state.unfiltered.capacity() + state.filtered.capacity()
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
                    state.ring_bytes = 0;
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
        let published = Arc::new(
            PublishedBlock::new(block)
                .counting_unrebuildable(self.metrics.transactions_unrebuildable.clone()),
        );
        if self.whole_transaction_subscribers.load(Ordering::Relaxed) > 0 {
            // Rebuilding whole transactions is the costly part of framing: not under the lock.
            published.transaction_frames(Payload::WithTransaction);
        }
        let _publishing = self.publishing();
        let (mut overflowed, candidates) = {
            let mut state = self.lock();
            if state.last_published.is_some_and(|last| height <= last) {
                debug!(
                    height,
                    "ignoring a block at or below the last published height"
                );
                return;
            }
            state.ring_bytes += published.memory_bytes();
            state.ring.push_back(published.clone());
            while state.ring.len() > self.ring_capacity
                || (state.ring_bytes > self.ring_max_bytes && state.ring.len() > 1)
            {
                if let Some(evicted) = state.ring.pop_front() {
                    state.ring_bytes = state.ring_bytes.saturating_sub(evicted.memory_bytes());
                    state.ring_complete_after = evicted.height();
                }
            }
            state.last_published = Some(height);
            let overflowed = fan_out_unfiltered(&state, &published);
            (overflowed, filtered_candidates(&state, &published))
        };
        // Filters are checked and frames built outside the state lock (attaches and catch-ups
        // do not wait for them). Publishes are serialized by `publish_order`, so each queue
        // still gets blocks in height order, and a subscriber attached after this block's
        // height was recorded is not a candidate.
        overflowed += fan_out_filtered(candidates, &published);
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

/// Pushes `block` to every subscriber without filter (under the hub lock: a `Bytes` clone
/// each); returns how many overflowed.
///
/// They share one `Bytes` per (stream, framing, payload, partition), made once per block.
fn fan_out_unfiltered(state: &HubState, block: &PublishedBlock) -> usize {
    let mut overflowed = 0;
    type Shape = (StreamKind, (Framing, Payload), Option<Partition>);
    let mut shared: HashMap<Shape, Option<Delivery>> = HashMap::new();
    for attached in state.unfiltered.values() {
        let selection = &attached.selection;
        let key = (
            selection.stream,
            (selection.framing, selection.payload),
            selection.filter.partition,
        );
        let frames = shared
            .entry(key)
            .or_insert_with(|| unfiltered_frames(key.0, key.1, key.2, block));
        if let Some(frames) = frames {
            if push(
                &attached.queue,
                &attached.selection,
                block,
                frames,
                attached.after,
            ) {
                overflowed += 1;
            }
        }
    }
    overflowed
}

/// A filtered subscriber the index found for a block, with the transactions to check.
struct Candidate {
    queue: Arc<SubscriberQueue>,
    selection: Arc<Selection>,
    transactions: Vec<usize>,
}

/// The filtered subscribers that may want `block` (found through the index, under the lock).
fn filtered_candidates(state: &HubState, block: &PublishedBlock) -> Vec<Candidate> {
    if state.filtered.is_empty() {
        return Vec::new();
    }
    state
        .index
        .candidates(&block.block)
        .into_iter()
        .filter_map(|(id, transactions)| {
            let attached = state.filtered.get(&id)?;
            (block.height() > attached.after).then(|| Candidate {
                queue: attached.queue.clone(),
                selection: attached.selection.clone(),
                transactions,
            })
        })
        .collect()
}

/// Checks the candidates' filters, frames what they want and pushes it (outside the lock);
/// returns how many overflowed. Subscribers whose matches are the same share one set of
/// frames.
fn fan_out_filtered(candidates: Vec<Candidate>, block: &PublishedBlock) -> usize {
    let mut overflowed = 0;
    type Shape = (Vec<usize>, StreamKind, (Framing, Payload));
    let mut built: HashMap<Shape, Option<Delivery>> = HashMap::new();
    let transactions = &block.block.transactions;
    for candidate in candidates {
        let selection = &candidate.selection;
        if !selection.admits_height(block.height()) {
            continue;
        }
        let matching: Vec<usize> = candidate
            .transactions
            .into_iter()
            .filter(|&i| selection.wants(&transactions[i]))
            .collect();
        if matching.is_empty() {
            continue;
        }
        let key = (
            matching,
            selection.stream,
            (selection.framing, selection.payload),
        );
        let frames = match built.get(&key) {
            Some(frames) => frames,
            None => {
                let frames = filtered_frames(key.1, key.2, block, &key.0);
                built.entry(key).or_insert(frames)
            }
        };
        if let Some(frames) = frames {
            if push(&candidate.queue, selection, block, frames, 0) {
                overflowed += 1;
            }
        }
    }
    overflowed
}

/// Pushes a block's frames (the same bytes, tagged with the subscription and its envelope)
/// to its queue unless it starts above the block; true when the queue overflowed.
fn push(
    queue: &SubscriberQueue,
    selection: &Selection,
    block: &PublishedBlock,
    frames: &Delivery,
    after: u64,
) -> bool {
    if block.height() <= after {
        return false;
    }
    queue.push(selection.queued(frames, Some(block.received_at))) == Pushed::Overflowed
}

#[cfg(test)]
mod tests {
    //! The indexed fan-out must deliver exactly what checking every subscriber's filter
    //! against every transaction would (the obvious, slow way), for any mix of filters.
    use super::*;
    use crate::queue::QueueLimits;
    use crate::subscription::{Filter, KeyRole, Partition};
    use planetmint_streams_model::{AssetIdsEntry, CommittedTransaction};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::HashSet;
    use std::task::{Context, Poll, Waker};

    /// An item of `items`, chosen by `rng`.
    fn pick<'a>(rng: &mut StdRng, items: &'a [String]) -> &'a String {
        &items[rng.gen_range(0..items.len())]
    }

    fn tx(rng: &mut StdRng, keys: &[String], assets: &[String], n: usize) -> CommittedTransaction {
        let ops = ["CREATE", "TRANSFER", "VOTE"];
        let operation = ops[rng.gen_range(0..3) as usize].to_owned();
        let asset = pick(rng, assets).clone();
        CommittedTransaction {
            // The first 16 hex digits vary, so partitions split the transactions.
            id: format!("{:016x}{n:048x}", rng.gen::<u64>()),
            asset_id: asset.clone(),
            asset_ids: vec![AssetIdsEntry::Id(asset)],
            operation,
            output_public_keys: (0..1 + rng.gen_range(0..3))
                .map(|_| pick(rng, keys).clone())
                .collect(),
            input_owners: (0..rng.gen_range(0..3))
                .map(|_| pick(rng, keys).clone())
                .collect(),
        }
    }

    fn filter(rng: &mut StdRng, keys: &[String], assets: &[String]) -> Filter {
        let mut f = Filter::default();
        if rng.gen_range(0..2) == 0 {
            f.public_keys = (0..1 + rng.gen_range(0..2))
                .map(|_| pick(rng, keys).clone())
                .collect();
            f.key_role =
                [KeyRole::Outputs, KeyRole::Inputs, KeyRole::Any][rng.gen_range(0..3) as usize];
        }
        if rng.gen_range(0..3) == 0 {
            f.asset_ids = (0..1 + rng.gen_range(0..2))
                .map(|_| pick(rng, assets).clone())
                .collect();
        }
        if rng.gen_range(0..3) == 0 {
            f.operations = HashSet::from([["CREATE", "TRANSFER", "VOTE"]
                [rng.gen_range(0..3) as usize]
                .to_owned()]);
        }
        if rng.gen_range(0..3) == 0 {
            let count = 1 + rng.gen_range(0..4) as u16;
            f.partition = Some(Partition {
                index: rng.gen_range(0..u64::from(count)) as u16,
                count,
            });
        }
        f
    }

    fn drain(queue: &SubscriberQueue) -> Vec<(u64, Vec<u8>)> {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut out = Vec::new();
        while let Poll::Ready(block) = queue.poll_next(&mut cx) {
            out.push((block.height, block.frames.to_vec()));
        }
        out
    }

    #[test]
    fn indexed_fan_out_equals_checking_every_filter() {
        let mut rng = StdRng::seed_from_u64(0x9e3779b97f4a7c15);
        let keys: Vec<String> = (0..12).map(|i| format!("key{i}")).collect();
        let assets: Vec<String> = (0..6).map(|i| format!("{i:064x}")).collect();
        let hub = Hub::new(8, BroadcastMetrics::unregistered().expect("metrics"));
        hub.start_after(0);
        let limits = QueueLimits {
            max_blocks: 1000,
            max_bytes: usize::MAX,
        };
        let mut subscribers = Vec::new();
        for _ in 0..300 {
            let selection = Arc::new(Selection {
                stream: [StreamKind::ValidTransactions, StreamKind::ValidBlocks]
                    [rng.gen_range(0..2) as usize],
                filter: if rng.gen_range(0..5) == 0 {
                    Filter::default()
                } else {
                    filter(&mut rng, &keys, &assets)
                },
                framing: [Framing::PerEvent, Framing::PerBlock][rng.gen_range(0..2) as usize],
                payload: Payload::Event,
                key: 0,
                envelope: None,
            });
            let queue = Arc::new(SubscriberQueue::new(limits));
            let id = hub.attach_live(&queue, &selection);
            subscribers.push((id, selection, queue));
        }
        let mut blocks = Vec::new();
        let mut n = 0;
        for height in 1..=40u64 {
            let txs = (0..rng.gen_range(0..6))
                .map(|_| {
                    n += 1;
                    tx(&mut rng, &keys, &assets, n)
                })
                .collect();
            let block = Arc::new(CommittedBlock {
                height,
                hash: format!("h{height}"),
                transactions: txs,
                chain_start: false,
                rows: None,
                committed_at: None,
            });
            hub.publish(block.clone());
            blocks.push(block);
        }
        for (_, selection, queue) in &subscribers {
            let expected: Vec<(u64, Vec<u8>)> = blocks
                .iter()
                .filter_map(|b| {
                    let published = PublishedBlock::new(b.clone());
                    selection
                        .frames(&published)
                        .map(|q| (q.height, q.frames.to_vec()))
                })
                .collect();
            let got = drain(queue);
            let heights = |v: &[(u64, Vec<u8>)]| v.iter().map(|b| b.0).collect::<Vec<_>>();
            assert_eq!(
                heights(&got),
                heights(&expected),
                "blocks for {selection:?}"
            );
            assert!(got == expected, "frames for {selection:?}");
        }
        // Detaching removes every trace from the index.
        for (id, _, _) in subscribers {
            hub.detach(id);
        }
        assert_eq!(hub.subscriber_count(), 0);
        assert_eq!(hub.indexed_values(), 0);
    }

    /// A valid_blocks subscriber without filter and its queue (room for 10 blocks).
    fn valid_blocks_subscriber() -> (Arc<SubscriberQueue>, Arc<Selection>) {
        let queue = Arc::new(SubscriberQueue::new(QueueLimits {
            max_blocks: 10,
            max_bytes: 1 << 20,
        }));
        let selection = Arc::new(Selection {
            stream: StreamKind::ValidBlocks,
            filter: Filter::default(),
            framing: Framing::PerEvent,
            payload: Payload::Event,
            key: 0,
            envelope: None,
        });
        (queue, selection)
    }

    #[test]
    fn the_ring_is_bounded_in_bytes_as_well_as_in_blocks() {
        let block = |height: u64| Arc::new(CommittedBlock::synthetic(height, vec![]));
        let one = PublishedBlock::new(block(1)).memory_bytes();
        // Room for 100 blocks by count, for 3 by bytes.
        let hub = Hub::new(100, BroadcastMetrics::unregistered().expect("metrics"))
            .with_ring_max_bytes(3 * one + one / 2);
        let (queue, selection) = valid_blocks_subscriber();
        hub.start_after(0);
        for height in 1..=10 {
            hub.publish(block(height));
        }
        match hub.catch_up(&queue, &selection, 7) {
            Catchup::FromMemory(blocks) => assert_eq!(
                blocks.iter().map(|b| b.height()).collect::<Vec<_>>(),
                vec![8, 9, 10]
            ),
            other => panic!("expected memory, got {other:?}"),
        }
        assert!(matches!(
            hub.catch_up(&queue, &selection, 6),
            Catchup::FromSource { after: 6, upto: 7 }
        ));
        // A block bigger than the whole bound still stays (the newest is always kept).
        let tiny = Hub::new(100, BroadcastMetrics::unregistered().expect("metrics"))
            .with_ring_max_bytes(1);
        tiny.start_after(0);
        tiny.publish(block(1));
        assert!(matches!(
            tiny.catch_up(&queue, &selection, 0),
            Catchup::FromMemory(blocks) if blocks.len() == 1
        ));
    }

    #[test]
    fn catch_up_hands_out_memory_then_source_then_attaches() {
        let hub = Hub::new(3, BroadcastMetrics::unregistered().expect("metrics"));
        let (queue, selection) = valid_blocks_subscriber();
        assert!(matches!(
            hub.catch_up(&queue, &selection, 0),
            Catchup::NotStarted
        ));
        hub.start_after(10);
        for height in 11..=15 {
            hub.publish(Arc::new(CommittedBlock {
                height,
                hash: String::new(),
                transactions: vec![],
                chain_start: false,
                rows: None,
                committed_at: None,
            }));
        }
        // Ring holds 13..=15: 12 and below come from the source.
        assert!(matches!(
            hub.catch_up(&queue, &selection, 4),
            Catchup::FromSource { after: 4, upto: 12 }
        ));
        match hub.catch_up(&queue, &selection, 12) {
            Catchup::FromMemory(blocks) => {
                assert_eq!(
                    blocks.iter().map(|b| b.height()).collect::<Vec<_>>(),
                    vec![13, 14, 15]
                )
            }
            other => panic!("expected memory, got {other:?}"),
        }
        assert!(matches!(
            hub.catch_up(&queue, &selection, 15),
            Catchup::Attached(_)
        ));
        hub.publish(Arc::new(CommittedBlock {
            height: 16,
            hash: String::new(),
            transactions: vec![],
            chain_start: false,
            rows: None,
            committed_at: None,
        }));
        assert_eq!(
            drain(&queue).iter().map(|b| b.0).collect::<Vec<_>>(),
            vec![16]
        );
        // A height in the future: attached at once, earlier blocks skipped.
        let future = Arc::new(SubscriberQueue::new(QueueLimits {
            max_blocks: 10,
            max_bytes: 1 << 20,
        }));
        assert!(matches!(
            hub.catch_up(&future, &selection, 18),
            Catchup::Attached(_)
        ));
        for height in 17..=19 {
            hub.publish(Arc::new(CommittedBlock {
                height,
                hash: String::new(),
                transactions: vec![],
                chain_start: false,
                rows: None,
                committed_at: None,
            }));
        }
        assert_eq!(
            drain(&future).iter().map(|b| b.0).collect::<Vec<_>>(),
            vec![19]
        );
    }
}
