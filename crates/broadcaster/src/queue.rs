//! [`SubscriberQueue`]: the bounded queue between the hub and one subscriber's socket.
//!
//! The hub pushes a block's frames without ever waiting; the socket side takes them one block
//! at a time (one write, one flush). When a subscriber falls behind by more than the queue's
//! limits, the queue stops taking blocks and drops what it held, so memory stays bounded and
//! nobody else waits; the session then closes the connection with the last height that was
//! completely handed to the socket, from which the client can resume. A block is always handed
//! over whole or not at all, so that height is exact.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::sync::Notify;

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

/// A block's frames for one subscriber.
#[derive(Debug)]
pub struct QueuedBlock {
    /// Height of the block.
    pub height: u64,
    /// Its frames, back to back.
    pub frames: Bytes,
    /// Number of messages in `frames`.
    pub messages: u32,
    /// When the ingest handed the block over, for live blocks (commit-to-send latency).
    pub received_at: Option<std::time::Instant>,
    /// On a JSON-RPC connection, the subscription these frames are for (`None` on URL streams
    /// and for JSON-RPC answers); its last height is tracked when they are handed over.
    pub subscription: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Overflowed,
    Stopped,
}

#[derive(Debug)]
struct Inner {
    blocks: VecDeque<QueuedBlock>,
    bytes: usize,
    state: State,
    last_sent: Option<u64>,
    waker: Option<Waker>,
    /// The session is over (close handshake done or given up): the body may end.
    finished: bool,
}

/// The queue of one subscriber; shared by the hub (producer) and its socket (consumer).
#[derive(Debug)]
pub struct SubscriberQueue {
    inner: Mutex<Inner>,
    limits: QueueLimits,
    /// Limits of waiting pushes (replay), at most `limits`.
    replay_limits: QueueLimits,
    overflowed: Notify,
    space: Notify,
}

impl SubscriberQueue {
    /// An empty queue. `start_after` is the height reported as last sent until a block is.
    pub fn new(limits: QueueLimits, start_after: Option<u64>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                blocks: VecDeque::new(),
                bytes: 0,
                state: State::Open,
                last_sent: start_after,
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
            overflowed: Notify::new(),
            space: Notify::new(),
        }
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

    /// Queues a block without waiting (the hub's side). A full queue overflows.
    pub fn push(&self, block: QueuedBlock) -> Pushed {
        let mut inner = self.lock();
        match inner.state {
            State::Open => {}
            State::Overflowed | State::Stopped => return Pushed::Closed,
        }
        if inner.blocks.len() >= self.limits.max_blocks
            || inner.bytes + block.frames.len() > self.limits.max_bytes && !inner.blocks.is_empty()
        {
            inner.state = State::Overflowed;
            inner.blocks.clear();
            inner.bytes = 0;
            drop(inner);
            self.overflowed.notify_one();
            return Pushed::Overflowed;
        }
        inner.bytes += block.frames.len();
        inner.blocks.push_back(block);
        let waker = inner.waker.take();
        drop(inner);
        if let Some(waker) = waker {
            waker.wake();
        }
        Pushed::Queued
    }

    /// Queues a block, waiting for room instead of overflowing (replay of history, where the
    /// reader can simply go slower). Returns false when the queue is closed.
    pub async fn push_waiting(&self, block: QueuedBlock) -> bool {
        let mut block = Some(block);
        loop {
            let space = self.space.notified();
            {
                let mut inner = self.lock();
                if inner.state != State::Open {
                    return false;
                }
                let fits = inner.blocks.is_empty()
                    || (inner.blocks.len() < self.replay_limits.max_blocks
                        && inner.bytes + block.as_ref().map_or(0, |b| b.frames.len())
                            <= self.replay_limits.max_bytes);
                if fits {
                    if let Some(block) = block.take() {
                        inner.bytes += block.frames.len();
                        inner.blocks.push_back(block);
                    }
                    let waker = inner.waker.take();
                    drop(inner);
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                    return true;
                }
            }
            space.await;
        }
    }

    /// Takes the next block for the socket (the body's side). `Pending` registers `cx` to be
    /// woken by the next push. Once stopped, stays pending: the session sends the close frame.
    pub fn poll_next_block(&self, cx: &mut Context<'_>) -> Poll<QueuedBlock> {
        let mut inner = self.lock();
        if inner.state == State::Open {
            if let Some(block) = inner.blocks.pop_front() {
                inner.bytes -= block.frames.len();
                inner.last_sent = Some(block.height);
                drop(inner);
                self.space.notify_waiters();
                return Poll::Ready(block);
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

    /// Stops the queue: nothing more is queued or handed to the socket, held blocks are
    /// dropped. Returns the last height completely handed to the socket.
    pub fn stop(&self) -> Option<u64> {
        let mut inner = self.lock();
        inner.state = State::Stopped;
        inner.blocks.clear();
        inner.bytes = 0;
        let last = inner.last_sent;
        drop(inner);
        self.space.notify_waiters();
        last
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

    /// The last height completely handed to the socket.
    pub fn last_sent(&self) -> Option<u64> {
        self.lock().last_sent
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
    use std::sync::Arc;
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn block(height: u64, len: usize) -> QueuedBlock {
        QueuedBlock {
            height,
            frames: Bytes::from(vec![b'x'; len]),
            messages: 1,
            received_at: None,
            subscription: None,
        }
    }

    #[test]
    fn blocks_come_out_in_order_and_wake_the_socket() {
        let q = SubscriberQueue::new(
            QueueLimits {
                max_blocks: 4,
                max_bytes: 1000,
            },
            Some(9),
        );
        let flag = Arc::new(Flag(Default::default()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(q.poll_next_block(&mut cx).is_pending());
        assert_eq!(q.push(block(10, 10)), Pushed::Queued);
        assert!(
            flag.0.load(std::sync::atomic::Ordering::SeqCst),
            "push wakes the socket"
        );
        assert_eq!(q.push(block(11, 10)), Pushed::Queued);
        let Poll::Ready(first) = q.poll_next_block(&mut cx) else {
            panic!("ready")
        };
        assert_eq!(first.height, 10);
        assert_eq!(q.last_sent(), Some(10));
        let Poll::Ready(second) = q.poll_next_block(&mut cx) else {
            panic!("ready")
        };
        assert_eq!(second.height, 11);
    }

    #[test]
    fn a_full_queue_overflows_once_and_keeps_the_last_whole_block() {
        let q = SubscriberQueue::new(
            QueueLimits {
                max_blocks: 2,
                max_bytes: 1000,
            },
            None,
        );
        let waker = Waker::from(Arc::new(Flag(Default::default())));
        let mut cx = Context::from_waker(&waker);
        assert_eq!(q.push(block(1, 10)), Pushed::Queued);
        assert!(q.poll_next_block(&mut cx).is_ready());
        assert_eq!(q.push(block(2, 10)), Pushed::Queued);
        assert_eq!(q.push(block(3, 10)), Pushed::Queued);
        assert_eq!(q.push(block(4, 10)), Pushed::Overflowed);
        assert_eq!(q.push(block(5, 10)), Pushed::Closed);
        assert_eq!(q.backlog(), (0, 0), "memory released at once");
        assert!(
            q.poll_next_block(&mut cx).is_pending(),
            "nothing more after overflow"
        );
        assert_eq!(q.stop(), Some(1), "height 1 was the last handed over");
    }

    #[test]
    fn the_byte_limit_counts_too() {
        let q = SubscriberQueue::new(
            QueueLimits {
                max_blocks: 100,
                max_bytes: 25,
            },
            None,
        );
        assert_eq!(q.push(block(1, 10)), Pushed::Queued);
        assert_eq!(q.push(block(2, 10)), Pushed::Queued);
        assert_eq!(q.push(block(3, 10)), Pushed::Overflowed);
    }

    #[test]
    fn a_single_block_larger_than_the_byte_limit_still_goes_through() {
        let q = SubscriberQueue::new(
            QueueLimits {
                max_blocks: 4,
                max_bytes: 5,
            },
            None,
        );
        assert_eq!(q.push(block(1, 50)), Pushed::Queued);
    }

    #[tokio::test]
    async fn waiting_pushes_resume_when_the_socket_takes_a_block() {
        let q = Arc::new(SubscriberQueue::new(
            QueueLimits {
                max_blocks: 1,
                max_bytes: 1000,
            },
            None,
        ));
        assert!(q.push_waiting(block(1, 10)).await);
        let pusher = {
            let q = q.clone();
            tokio::spawn(async move { q.push_waiting(block(2, 10)).await })
        };
        tokio::task::yield_now().await;
        assert!(!pusher.is_finished(), "waits for room");
        let waker = Waker::from(Arc::new(Flag(Default::default())));
        let mut cx = Context::from_waker(&waker);
        assert!(q.poll_next_block(&mut cx).is_ready());
        assert!(pusher.await.expect("join"));
        assert_eq!(q.backlog().0, 1);
        q.stop();
        assert!(!q.push_waiting(block(3, 10)).await, "closed");
    }
}
