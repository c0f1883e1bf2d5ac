//! [`SubscriberQueue`]: the bounded queue between the hub and one connection's socket.
//!
//! The hub pushes a block's [`Delivery`] without ever waiting; the socket side takes them one
//! at a time (one write, one flush). A delivery holds the block's shared frames and, for a
//! dialect that wraps each message (JSON-RPC, stream-sea, SSE, NDJSON), the subscription's
//! [`Envelope`]: the wrapping is written when the socket takes the delivery, so no copy of a
//! block is made per subscription while it waits here.
//!
//! Two bounds apply. The queue's own limits (blocks and wire bytes) say how far a connection
//! may fall behind: past them the queue stops taking deliveries and drops what it held, so
//! nobody else waits; the connection then closes with the last height completely handed to
//! the socket, from which the client can resume. And what only this queue holds (answers,
//! frames built for its filters, each delivery's bookkeeping) is counted in its address's
//! [`AddressBudget`], shared by every connection from that address: a push that would pass it
//! overflows the queue the same way. A block is always handed over whole or not at all, so the
//! height to resume from is exact.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::envelope::Envelope;
use crate::limits::AddressBudget;
use crate::subscription::StreamKind;

/// Limits of one subscriber's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most blocks waiting for the socket.
    pub max_blocks: usize,
    /// Most bytes waiting for the socket.
    pub max_bytes: usize,
}

/// What happened to a pushed block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued for the socket.
    Queued,
    /// The queue was full: the subscriber is now too slow and will be closed.
    Overflowed,
    /// The queue is closed (overflowed earlier, or the session is ending).
    Closed,
}

/// Which subscription of a connection a delivery is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionTag {
    /// The subscription's key on its connection.
    pub key: u64,
    /// Its stream (the sent-data metrics are per stream).
    pub stream: StreamKind,
}

/// What a delivery costs its address beyond its private bytes: its place in a queue.
pub const DELIVERY_OVERHEAD: usize = std::mem::size_of::<Delivery>() + 16;

/// One block's messages for one subscription (or one answer to a request), as queued for a
/// socket.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Height of the block (0 for an answer).
    pub height: u64,
    /// The messages as whole WebSocket text frames back to back, as the URL stream sends
    /// them: usually bytes every subscriber of the block shares.
    pub frames: Bytes,
    /// Number of messages in `frames`.
    pub messages: u32,
    /// When the ingest handed the block over, for live blocks (commit-to-send latency).
    pub received_at: Option<std::time::Instant>,
    /// The subscription these messages are for (`None` for an answer); its last height
    /// advances when they are handed to the socket.
    pub subscription: Option<SubscriptionTag>,
    /// How the connection's dialect wraps each message (`None`: the frames as they are).
    pub envelope: Option<Arc<dyn Envelope>>,
    /// Bytes of `frames` only this delivery holds (0 when they are a block's shared frames).
    pub private: usize,
}

impl Delivery {
    /// A block's frames for a subscription, shared with other subscribers.
    pub fn shared(height: u64, frames: Bytes, messages: u32) -> Self {
        Self {
            height,
            frames,
            messages,
            received_at: None,
            subscription: None,
            envelope: None,
            private: 0,
        }
    }

    /// Frames built for this delivery alone (an answer, a filter's share of a block).
    pub fn private(height: u64, frames: Bytes, messages: u32) -> Self {
        let private = frames.len();
        Self {
            private,
            ..Self::shared(height, frames, messages)
        }
    }

    /// About how many bytes the socket is given for it.
    pub fn wire_len(&self) -> usize {
        let wrapping = self
            .envelope
            .as_ref()
            .map_or(0, |e| e.overhead() * self.messages as usize);
        self.frames.len() + wrapping
    }

    /// What it costs its address's budget while queued.
    pub fn held(&self) -> usize {
        self.private + DELIVERY_OVERHEAD
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Overflowed,
    Stopped,
}

#[derive(Debug)]
struct Inner {
    blocks: VecDeque<Delivery>,
    /// Wire bytes of `blocks`.
    bytes: usize,
    /// What `blocks` hold of the address's budget.
    held: usize,
    state: State,
    /// Each tracked subscription's last height completely handed to the socket (`None` until
    /// one is known), updated under the same lock that hands a delivery over, so the height a
    /// closing connection reports is exactly what the socket was given.
    progress: HashMap<u64, Option<u64>>,
    waker: Option<Waker>,
    /// The session is over (close handshake done or given up): the body may end.
    finished: bool,
}

/// The queue of one connection; shared by the hub (producer) and its socket (consumer).
#[derive(Debug)]
pub struct SubscriberQueue {
    inner: Mutex<Inner>,
    limits: QueueLimits,
    /// Limits of waiting pushes (replay), at most `limits`.
    replay_limits: QueueLimits,
    /// The budget of the connection's address (`None`: not counted, e.g. in tests).
    budget: Option<Arc<AddressBudget>>,
    overflowed: Notify,
    space: Notify,
}

impl SubscriberQueue {
    /// An empty queue.
    pub fn new(limits: QueueLimits) -> Self {
        Self {
            inner: Mutex::new(Inner {
                blocks: VecDeque::new(),
                bytes: 0,
                held: 0,
                state: State::Open,
                progress: HashMap::new(),
                waker: None,
                finished: false,
            }),
            limits,
            // History fills at most half the queue: a subscriber attaches to the live stream
            // with room left for live blocks, instead of overflowing on the first one while
            // its socket is still taking the history.
            replay_limits: QueueLimits {
                max_blocks: (limits.max_blocks / 2).max(1),
                max_bytes: (limits.max_bytes / 2).max(1),
            },
            budget: None,
            overflowed: Notify::new(),
            space: Notify::new(),
        }
    }

    /// Counts what this queue holds in `budget` (its address's, shared with the address's
    /// other connections).
    pub fn with_budget(mut self, budget: Arc<AddressBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Makes waiting pushes (replay of history) stop at `replay` (capped by the queue's own
    /// limits) instead of half the limits. A JSON-RPC connection shares one queue between
    /// replaying and live subscriptions: the room left is what its live ones may lag before
    /// the connection counts as too slow.
    pub fn with_replay_limits(mut self, replay: QueueLimits) -> Self {
        self.replay_limits = QueueLimits {
            max_blocks: replay.max_blocks.clamp(1, self.limits.max_blocks),
            max_bytes: replay.max_bytes.min(self.limits.max_bytes),
        };
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Empties the queue into the overflowed state (under its lock); gives back what it held.
    fn overflow(&self, mut inner: MutexGuard<'_, Inner>) -> Pushed {
        inner.state = State::Overflowed;
        self.clear(&mut inner);
        drop(inner);
        self.overflowed.notify_one();
        Pushed::Overflowed
    }

    fn clear(&self, inner: &mut Inner) {
        inner.blocks.clear();
        inner.bytes = 0;
        if let Some(budget) = &self.budget {
            budget.unqueue(inner.held);
        }
        inner.held = 0;
    }

    fn append(&self, mut inner: MutexGuard<'_, Inner>, delivery: Delivery, held: usize) {
        inner.bytes += delivery.wire_len();
        inner.held += held;
        inner.blocks.push_back(delivery);
        let waker = inner.waker.take();
        drop(inner);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Queues a delivery without waiting (the hub's side). A full queue overflows, and so
    /// does one whose address has no budget left for it.
    pub fn push(&self, delivery: Delivery) -> Pushed {
        let inner = self.lock();
        match inner.state {
            State::Open => {}
            State::Overflowed | State::Stopped => return Pushed::Closed,
        }
        if inner.blocks.len() >= self.limits.max_blocks
            || inner.bytes + delivery.wire_len() > self.limits.max_bytes && !inner.blocks.is_empty()
        {
            return self.overflow(inner);
        }
        let held = delivery.held();
        if let Some(budget) = &self.budget {
            if !budget.try_queue(held) {
                return self.overflow(inner);
            }
        }
        self.append(inner, delivery, held);
        Pushed::Queued
    }

    /// Queues a delivery, waiting for room instead of overflowing (replay of history, where
    /// the reader can simply go slower). Returns false when the queue is closed.
    pub async fn push_waiting(&self, delivery: Delivery) -> bool {
        let mut delivery = Some(delivery);
        loop {
            let space = self.space.notified();
            {
                let inner = self.lock();
                if inner.state != State::Open {
                    return false;
                }
                let fits = inner.blocks.is_empty()
                    || (inner.blocks.len() < self.replay_limits.max_blocks
                        && inner.bytes + delivery.as_ref().map_or(0, Delivery::wire_len)
                            <= self.replay_limits.max_bytes);
                if fits {
                    if let Some(delivery) = delivery.take() {
                        let held = delivery.held();
                        if let Some(budget) = &self.budget {
                            budget.force_queue(held);
                        }
                        self.append(inner, delivery, held);
                    }
                    return true;
                }
            }
            space.await;
        }
    }

    /// Takes the next delivery for the socket (the body's side). `Pending` registers `cx` to
    /// be woken by the next push. Once stopped, stays pending: the session sends the close
    /// frame.
    pub fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Delivery> {
        let mut inner = self.lock();
        if inner.state == State::Open {
            if let Some(delivery) = inner.blocks.pop_front() {
                inner.bytes -= delivery.wire_len();
                let held = delivery.held();
                inner.held -= held;
                if let Some(budget) = &self.budget {
                    budget.unqueue(held);
                }
                if let Some(tag) = delivery.subscription {
                    if let Some(last) = inner.progress.get_mut(&tag.key) {
                        *last = Some(delivery.height);
                    }
                }
                drop(inner);
                self.space.notify_waiters();
                return Poll::Ready(delivery);
            }
        }
        match &inner.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => inner.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Waits until the queue overflows.
    pub async fn overflowed(&self) {
        loop {
            let notified = self.overflowed.notified();
            if self.lock().state == State::Overflowed {
                return;
            }
            notified.await;
        }
    }

    /// Waits until everything queued has been handed to the socket (or the queue closed).
    pub async fn drained(&self) {
        loop {
            let space = self.space.notified();
            {
                let inner = self.lock();
                if inner.blocks.is_empty() || inner.state != State::Open {
                    return;
                }
            }
            space.await;
        }
    }

    /// Stops the queue: nothing more is queued or handed to the socket, held deliveries are
    /// dropped. Returns every tracked subscription's last height completely handed to the
    /// socket, by key.
    pub fn stop(&self) -> BTreeMap<u64, Option<u64>> {
        let mut inner = self.lock();
        inner.state = State::Stopped;
        self.clear(&mut inner);
        let last = inner.progress.iter().map(|(&k, &h)| (k, h)).collect();
        drop(inner);
        self.space.notify_waiters();
        last
    }

    /// Drops what is queued for subscription `key` (the server ended it: nothing more of it
    /// reaches the socket) and returns it.
    pub fn discard(&self, key: u64) -> Vec<Delivery> {
        let mut inner = self.lock();
        let (kept, discarded): (Vec<Delivery>, Vec<Delivery>) = std::mem::take(&mut inner.blocks)
            .into_iter()
            .partition(|d| d.subscription.map(|tag| tag.key) != Some(key));
        inner.blocks = kept.into();
        let bytes: usize = discarded.iter().map(Delivery::wire_len).sum();
        let held: usize = discarded.iter().map(Delivery::held).sum();
        inner.bytes -= bytes;
        inner.held -= held;
        if let Some(budget) = &self.budget {
            budget.unqueue(held);
        }
        drop(inner);
        if !discarded.is_empty() {
            self.space.notify_waiters();
        }
        discarded
    }

    /// Starts tracking how far subscription `key` got; `start` is reported until one of its
    /// deliveries is handed over.
    pub fn track(&self, key: u64, start: Option<u64>) {
        self.lock().progress.insert(key, start);
    }

    /// Stops tracking `key` (unsubscribed): its last height is no longer reported.
    pub fn untrack(&self, key: u64) {
        let mut inner = self.lock();
        inner.progress.remove(&key);
        crate::shrink::release_unused(&mut inner.progress);
    }

    /// Says the session is over: once its close frame is written, the connection may end.
    pub fn finish(&self) {
        let mut inner = self.lock();
        inner.finished = true;
        let waker = inner.waker.take();
        drop(inner);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Ready once [`finish`](Self::finish) was called (the body's side, after the close frame).
    pub fn poll_finished(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.lock();
        if inner.finished {
            return Poll::Ready(());
        }
        match &inner.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => inner.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The last height of subscription `key` completely handed to the socket.
    pub fn last_sent(&self, key: u64) -> Option<u64> {
        self.lock().progress.get(&key).copied().flatten()
    }

    /// Blocks and bytes waiting.
    pub fn backlog(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.blocks.len(), inner.bytes)
    }

    /// The limits of this queue.
    pub fn limits(&self) -> QueueLimits {
        self.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::AddressLimits;
    use std::sync::Arc;
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    const KEY: u64 = 1;

    fn block(height: u64, len: usize) -> Delivery {
        Delivery {
            subscription: Some(SubscriptionTag {
                key: KEY,
                stream: StreamKind::ValidBlocks,
            }),
            ..Delivery::shared(height, Bytes::from(vec![b'x'; len]), 1)
        }
    }

    fn limits(max_blocks: usize, max_bytes: usize) -> QueueLimits {
        QueueLimits {
            max_blocks,
            max_bytes,
        }
    }

    #[test]
    fn blocks_come_out_in_order_and_wake_the_socket() {
        let q = SubscriberQueue::new(limits(4, 1000));
        q.track(KEY, Some(9));
        assert_eq!(q.last_sent(KEY), Some(9));
        let flag = Arc::new(Flag(Default::default()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(q.poll_next(&mut cx).is_pending());
        assert_eq!(q.push(block(10, 10)), Pushed::Queued);
        assert!(
            flag.0.load(std::sync::atomic::Ordering::SeqCst),
            "push wakes the socket"
        );
        assert_eq!(q.push(block(11, 10)), Pushed::Queued);
        let Poll::Ready(first) = q.poll_next(&mut cx) else {
            panic!("ready")
        };
        assert_eq!(first.height, 10);
        assert_eq!(q.last_sent(KEY), Some(10));
        let Poll::Ready(second) = q.poll_next(&mut cx) else {
            panic!("ready")
        };
        assert_eq!(second.height, 11);
    }

    #[test]
    fn a_full_queue_overflows_once_and_keeps_the_last_whole_block() {
        let q = SubscriberQueue::new(limits(2, 1000));
        q.track(KEY, None);
        let waker = Waker::from(Arc::new(Flag(Default::default())));
        let mut cx = Context::from_waker(&waker);
        assert_eq!(q.push(block(1, 10)), Pushed::Queued);
        assert!(q.poll_next(&mut cx).is_ready());
        assert_eq!(q.push(block(2, 10)), Pushed::Queued);
        assert_eq!(q.push(block(3, 10)), Pushed::Queued);
        assert_eq!(q.push(block(4, 10)), Pushed::Overflowed);
        assert_eq!(q.push(block(5, 10)), Pushed::Closed);
        assert_eq!(q.backlog(), (0, 0), "memory released at once");
        assert!(
            q.poll_next(&mut cx).is_pending(),
            "nothing more after overflow"
        );
        assert_eq!(
            q.stop(),
            BTreeMap::from([(KEY, Some(1))]),
            "height 1 was the last handed over"
        );
    }

    #[test]
    fn each_subscription_of_a_connection_keeps_its_own_last_height() {
        let q = SubscriberQueue::new(limits(10, 1000));
        q.track(1, Some(3));
        q.track(2, None);
        let tagged = |key, height| Delivery {
            subscription: Some(SubscriptionTag {
                key,
                stream: StreamKind::ValidTransactions,
            }),
            ..Delivery::shared(height, Bytes::from_static(b"x"), 1)
        };
        q.push(tagged(2, 5));
        q.push(Delivery::private(0, Bytes::from_static(b"answer"), 1));
        q.push(tagged(1, 6));
        q.push(tagged(3, 7)); // untracked (unsubscribed): reported nowhere
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        while q.poll_next(&mut cx).is_ready() {}
        q.untrack(2);
        assert_eq!(q.stop(), BTreeMap::from([(1, Some(6))]));
    }

    #[test]
    fn the_byte_limit_counts_too() {
        let q = SubscriberQueue::new(limits(100, 25));
        assert_eq!(q.push(block(1, 10)), Pushed::Queued);
        assert_eq!(q.push(block(2, 10)), Pushed::Queued);
        assert_eq!(q.push(block(3, 10)), Pushed::Overflowed);
    }

    #[test]
    fn a_single_block_larger_than_the_byte_limit_still_goes_through() {
        let q = SubscriberQueue::new(limits(4, 5));
        assert_eq!(q.push(block(1, 50)), Pushed::Queued);
    }

    #[test]
    fn private_bytes_count_against_the_address_and_shared_ones_do_not() {
        let budget = Arc::new(AddressBudget::new(AddressLimits {
            max_queued_bytes: 3 * DELIVERY_OVERHEAD + 100,
            ..AddressLimits::UNLIMITED
        }));
        let first = SubscriberQueue::new(limits(100, 1 << 20)).with_budget(budget.clone());
        let second = SubscriberQueue::new(limits(100, 1 << 20)).with_budget(budget.clone());
        // A shared block of any size costs only its place in the queue.
        assert_eq!(first.push(block(1, 100_000)), Pushed::Queued);
        assert_eq!(budget.held().2, DELIVERY_OVERHEAD);
        // 80 private bytes fit; the address's next 80, on another connection, do not.
        let answer = || Delivery::private(0, Bytes::from(vec![b'a'; 80]), 1);
        assert_eq!(first.push(answer()), Pushed::Queued);
        assert_eq!(second.push(answer()), Pushed::Overflowed);
        // Taking them off the queue (or stopping it) gives them back.
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(first.poll_next(&mut cx).is_ready());
        assert_eq!(budget.held().2, DELIVERY_OVERHEAD + 80);
        first.stop();
        assert_eq!(budget.held().2, 0);
        second.stop();
        assert_eq!(budget.held().2, 0);
    }

    #[tokio::test]
    async fn waiting_pushes_resume_when_the_socket_takes_a_block() {
        let q = Arc::new(SubscriberQueue::new(limits(1, 1000)));
        assert!(q.push_waiting(block(1, 10)).await);
        let pusher = {
            let q = q.clone();
            tokio::spawn(async move { q.push_waiting(block(2, 10)).await })
        };
        tokio::task::yield_now().await;
        assert!(!pusher.is_finished(), "waits for room");
        let waker = Waker::from(Arc::new(Flag(Default::default())));
        let mut cx = Context::from_waker(&waker);
        assert!(q.poll_next(&mut cx).is_ready());
        assert!(pusher.await.expect("join"));
        assert_eq!(q.backlog().0, 1);
        q.stop();
        assert!(!q.push_waiting(block(3, 10)).await, "closed");
    }
}
