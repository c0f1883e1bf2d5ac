//! What one subscriber receives of a block: which stream, which transactions, which framing.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::published::PublishedBlock;
use crate::queue::QueuedBlock;
use crate::rpc::envelope::Envelope;
use crate::subscription::{Filter, Framing, StreamKind, Subscription};

/// What a subscriber receives: stream, filter and framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Which stream.
    pub stream: StreamKind,
    /// Which transactions.
    pub filter: Filter,
    /// Message framing.
    pub framing: Framing,
    /// On a JSON-RPC connection: the notification each message is wrapped in (`None`: the
    /// URL streams' bare messages).
    pub envelope: Option<Arc<Envelope>>,
}

impl From<&Subscription> for Selection {
    fn from(s: &Subscription) -> Self {
        Self {
            stream: s.stream,
            filter: s.filter.clone(),
            framing: s.framing,
            envelope: None,
        }
    }
}

impl Selection {
    /// Indices of the block's transactions this subscriber wants (all of them without filter).
    pub fn matching(&self, block: &PublishedBlock) -> Vec<usize> {
        block
            .block
            .transactions
            .iter()
            .enumerate()
            .filter(|(_, tx)| self.filter.matches(tx))
            .map(|(i, _)| i)
            .collect()
    }

    /// This subscriber's frames of `block`, or `None` when nothing in it is for them.
    pub fn frames(&self, block: &PublishedBlock) -> Option<QueuedBlock> {
        let frames = if self.filter.is_empty() {
            unfiltered_frames(self.stream, self.framing, block)
        } else {
            filtered_frames(self.stream, self.framing, block, &self.matching(block))
        }?;
        Some(match &self.envelope {
            None => frames,
            Some(envelope) => envelope.wrap(&frames, None),
        })
    }

    /// What goes into this subscriber's queue for `frames` (shared by every subscriber with
    /// the same matches): the same bytes, or, on a JSON-RPC connection, each message wrapped
    /// in this subscription's notification.
    pub fn queued(&self, frames: &QueuedBlock, received_at: Option<Instant>) -> QueuedBlock {
        match &self.envelope {
            None => QueuedBlock {
                height: frames.height,
                frames: frames.frames.clone(),
                messages: frames.messages,
                received_at,
                subscription: None,
            },
            Some(envelope) => envelope.wrap(frames, received_at),
        }
    }
}

fn queued(height: u64, frames: Bytes, messages: usize) -> QueuedBlock {
    QueuedBlock {
        height,
        frames,
        messages: u32::try_from(messages).unwrap_or(u32::MAX),
        received_at: None,
        subscription: None,
    }
}

/// The shared frames of a block for subscribers without filter (no per-subscriber work).
pub fn unfiltered_frames(
    stream: StreamKind,
    framing: Framing,
    block: &PublishedBlock,
) -> Option<QueuedBlock> {
    let height = block.height();
    let count = block.transaction_count();
    match (stream, framing) {
        // Planetmint publishes nothing for the row `init_chain` stores.
        (StreamKind::ValidBlocks, _) if !block.block.is_announced() => None,
        (StreamKind::ValidBlocks, _) => Some(queued(height, block.block_frame().clone(), 1)),
        (StreamKind::ValidTransactions, _) if count == 0 => None,
        (StreamKind::ValidTransactions, Framing::PerEvent) => {
            Some(queued(height, block.transaction_frames().clone(), count))
        }
        (StreamKind::ValidTransactions, Framing::PerBlock) => {
            Some(queued(height, block.batch_frame().clone(), 1))
        }
    }
}

/// Frames of a block for a filtered subscriber whose matching transactions are `matching`
/// (ascending indices); `None` when nothing matches.
pub fn filtered_frames(
    stream: StreamKind,
    framing: Framing,
    block: &PublishedBlock,
    matching: &[usize],
) -> Option<QueuedBlock> {
    if matching.is_empty() {
        return None;
    }
    let height = block.height();
    Some(match (stream, framing) {
        // valid_blocks with a filter: the blocks that hold a matching transaction.
        (StreamKind::ValidBlocks, _) => queued(height, block.block_frame().clone(), 1),
        (StreamKind::ValidTransactions, Framing::PerEvent) => queued(
            height,
            block.transaction_frames_of(matching),
            matching.len(),
        ),
        (StreamKind::ValidTransactions, Framing::PerBlock) => {
            queued(height, block.batch_frame_of(matching), 1)
        }
    })
}
