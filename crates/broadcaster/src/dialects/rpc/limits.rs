//! Limits of one JSON-RPC connection (`streams.rpc_*` in the configuration).
//!
//! A connection holds one bounded queue for all its subscriptions, so its memory is bounded
//! like one URL subscriber's; these limits bound the rest: how many subscriptions and filter
//! values it keeps in the hub's index, and how fast it may send requests.

use crate::queue::QueueLimits;

/// Default most subscriptions on one connection.
pub const DEFAULT_RPC_MAX_SUBSCRIPTIONS: usize = 256;
/// Default most filter values (`public_key`, `asset_id`, `operation`) over all subscriptions
/// of one connection.
pub const DEFAULT_RPC_MAX_FILTER_VALUES: usize = 1024;
/// Default requests (and other frames) per second a connection may send on average.
pub const DEFAULT_RPC_REQUESTS_PER_SECOND: u32 = 50;
/// Default burst of requests above the average rate (a wallet subscribing to many keys at
/// once).
pub const DEFAULT_RPC_REQUESTS_BURST: u32 = 300;

/// The limits of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcLimits {
    /// Most open subscriptions (more: `-32002`).
    pub max_subscriptions: usize,
    /// Most filter values over all subscriptions (more: `-32002`).
    pub max_filter_values: usize,
    /// Average frames per second.
    pub requests_per_second: u32,
    /// Burst above the average.
    pub requests_burst: u32,
    /// The connection's one queue.
    pub queue: QueueLimits,
}

impl RpcLimits {
    /// The queue of a connection: the bytes of one URL subscriber's queue, shared by all its
    /// subscriptions, and room for each subscription to lag as many blocks as one URL
    /// subscriber may.
    pub fn connection_queue(per_subscriber: QueueLimits, max_subscriptions: usize) -> QueueLimits {
        QueueLimits {
            max_blocks: per_subscriber
                .max_blocks
                .saturating_mul(max_subscriptions.max(1)),
            max_bytes: per_subscriber.max_bytes,
        }
    }

    /// How far a replaying subscription may fill the queue: half of it, so the connection's
    /// live subscriptions keep the other half to lag in.
    pub fn replay_queue(&self) -> QueueLimits {
        QueueLimits {
            max_blocks: (self.queue.max_blocks / 2).max(1),
            max_bytes: (self.queue.max_bytes / 2).max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_leaves_half_the_queue_to_live_subscriptions() {
        let queue = RpcLimits::connection_queue(
            QueueLimits {
                max_blocks: 256,
                max_bytes: 1 << 24,
            },
            4,
        );
        assert_eq!(queue.max_blocks, 1024);
        assert_eq!(queue.max_bytes, 1 << 24);
        let limits = RpcLimits {
            max_subscriptions: 4,
            max_filter_values: 10,
            requests_per_second: 1,
            requests_burst: 1,
            queue,
        };
        assert_eq!(limits.replay_queue().max_blocks, 512);
        assert_eq!(limits.replay_queue().max_bytes, 1 << 23);
    }
}
