//! What one subscriber receives of a block: which stream, which transactions, which framing,
//! and for which subscription of its connection, wrapped how.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use planetmint_streams_model::CommittedTransaction;

use crate::envelope::Envelope;
use crate::published::PublishedBlock;
use crate::queue::{Delivery, SubscriptionTag};
use crate::subscription::{Filter, Framing, Partition, Payload, StreamKind, Subscription};

/// What a subscriber receives: stream, filter and framing, and where it goes on its
/// connection.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Which stream.
    pub stream: StreamKind,
    /// Which transactions.
    pub filter: Filter,
    /// Message framing.
    pub framing: Framing,
    /// What each transaction event carries.
    pub payload: Payload,
    /// The subscription's key on its connection (its deliveries carry it; the connection's
    /// queue tracks each key's last height).
    pub key: u64,
    /// How the connection's dialect wraps each message (`None`: the URL streams' bare
    /// messages).
    pub envelope: Option<Arc<dyn Envelope>>,
}

impl Selection {
    /// What `subscription` asks for, as subscription `key` of its connection, wrapped in
    /// `envelope`.
    pub fn new(subscription: &Subscription, key: u64, envelope: Option<Arc<dyn Envelope>>) -> Self {
        Self {
            stream: subscription.stream,
            filter: subscription.filter.clone(),
            framing: subscription.framing,
            payload: subscription.payload,
            key,
            envelope,
        }
    }
}

impl From<&Subscription> for Selection {
    fn from(s: &Subscription) -> Self {
        Self::new(s, 0, None)
    }
}

impl Selection {
    /// Whether this subscriber wants `tx`: its key, asset and operation filters and, on
    /// valid_transactions, its partition.
    pub fn wants(&self, tx: &CommittedTransaction) -> bool {
        self.filter.matches(tx) && transaction_in_partition(self.stream, self.filter.partition, tx)
    }

    /// Whether a block at `height` may go to this subscriber at all: on valid_blocks, the
    /// partition is by height.
    pub fn admits_height(&self, height: u64) -> bool {
        block_in_partition(self.stream, self.filter.partition, height)
    }

    /// Indices of the block's transactions this subscriber wants (all of them without filter).
    pub fn matching(&self, block: &PublishedBlock) -> Vec<usize> {
        block
            .block
            .transactions
            .iter()
            .enumerate()
            .filter(|(_, tx)| self.wants(tx))
            .map(|(i, _)| i)
            .collect()
    }

    /// This subscriber's delivery of `block` (for a replay), or `None` when nothing in it is
    /// for them.
    pub fn frames(&self, block: &PublishedBlock) -> Option<Delivery> {
        let frames = if !self.filter.has_values() {
            unfiltered_frames(
                self.stream,
                (self.framing, self.payload),
                self.filter.partition,
                block,
            )
        } else if self.admits_height(block.height()) {
            filtered_frames(
                self.stream,
                (self.framing, self.payload),
                block,
                &self.matching(block),
            )
        } else {
            None
        }?;
        Some(self.queued(&frames, None))
    }

    /// What goes into this subscriber's queue for `frames` (shared by every subscriber with
    /// the same matches): the same bytes, tagged with this subscription and its envelope. No
    /// byte of the block is copied: the hub calls this for every subscriber under its lock.
    pub fn queued(&self, frames: &Delivery, received_at: Option<Instant>) -> Delivery {
        Delivery {
            received_at,
            subscription: Some(SubscriptionTag {
                key: self.key,
                stream: self.stream,
            }),
            envelope: self.envelope.clone(),
            ..frames.clone()
        }
    }
}

/// Frames every subscriber of the block may share (made once per block).
fn shared(height: u64, frames: Bytes, messages: usize) -> Delivery {
    Delivery::shared(height, frames, u32::try_from(messages).unwrap_or(u32::MAX))
}

/// Frames built for some subscribers' share of a block (counted against their addresses).
fn built(height: u64, frames: Bytes, messages: usize) -> Delivery {
    Delivery::private(height, frames, u32::try_from(messages).unwrap_or(u32::MAX))
}

/// Whether `tx` is in `partition` (always, without one, and on valid_blocks, which are
/// partitioned by height).
fn transaction_in_partition(
    stream: StreamKind,
    partition: Option<Partition>,
    tx: &CommittedTransaction,
) -> bool {
    match (stream, partition) {
        (StreamKind::ValidTransactions, Some(p)) => p.admits_transaction(&tx.id),
        _ => true,
    }
}

/// Whether a block at `height` is in `partition` (always, without one, and on
/// valid_transactions, which are partitioned by transaction).
fn block_in_partition(stream: StreamKind, partition: Option<Partition>, height: u64) -> bool {
    match (stream, partition) {
        (StreamKind::ValidBlocks, Some(p)) => p.admits_height(height),
        _ => true,
    }
}

/// The shared frames of a block for subscribers without key, asset or operation filter
/// (no per-subscriber work): the whole block, or, with a partition, its share of it (one
/// set of frames per distinct partition and framing, shared by every worker with it).
pub fn unfiltered_frames(
    stream: StreamKind,
    (framing, payload): (Framing, Payload),
    partition: Option<Partition>,
    block: &PublishedBlock,
) -> Option<Delivery> {
    let height = block.height();
    let count = block.transaction_count();
    if let (StreamKind::ValidTransactions, Some(_)) = (stream, partition) {
        let share: Vec<usize> = block
            .block
            .transactions
            .iter()
            .enumerate()
            .filter(|(_, tx)| transaction_in_partition(stream, partition, tx))
            .map(|(i, _)| i)
            .collect();
        return filtered_frames(stream, (framing, payload), block, &share);
    }
    match (stream, framing) {
        // Planetmint publishes nothing for the row `init_chain` stores.
        (StreamKind::ValidBlocks, _) if !block.block.is_announced() => None,
        (StreamKind::ValidBlocks, _) if !block_in_partition(stream, partition, height) => None,
        (StreamKind::ValidBlocks, _) => Some(shared(height, block.block_frame().clone(), 1)),
        (StreamKind::ValidTransactions, _) if count == 0 => None,
        (StreamKind::ValidTransactions, Framing::PerEvent) => Some(shared(
            height,
            block.transaction_frames(payload).clone(),
            count,
        )),
        (StreamKind::ValidTransactions, Framing::PerBlock) => {
            Some(shared(height, block.batch_frame(payload).clone(), 1))
        }
    }
}

/// Frames of a block for a filtered subscriber whose matching transactions are `matching`
/// (ascending indices); `None` when nothing matches.
pub fn filtered_frames(
    stream: StreamKind,
    (framing, payload): (Framing, Payload),
    block: &PublishedBlock,
    matching: &[usize],
) -> Option<Delivery> {
    if matching.is_empty() {
        return None;
    }
    let height = block.height();
    let whole_block = matching.len() == block.transaction_count();
    Some(match (stream, framing) {
        // valid_blocks with a filter: the blocks that hold a matching transaction.
        (StreamKind::ValidBlocks, _) => shared(height, block.block_frame().clone(), 1),
        (StreamKind::ValidTransactions, Framing::PerEvent) if whole_block => shared(
            height,
            block.transaction_frames(payload).clone(),
            matching.len(),
        ),
        (StreamKind::ValidTransactions, Framing::PerEvent) => built(
            height,
            block.transaction_frames_of(payload, matching),
            matching.len(),
        ),
        (StreamKind::ValidTransactions, Framing::PerBlock) if whole_block => {
            shared(height, block.batch_frame(payload).clone(), 1)
        }
        (StreamKind::ValidTransactions, Framing::PerBlock) => {
            built(height, block.batch_frame_of(payload, matching), 1)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use planetmint_streams_model::{AssetIdsEntry, CommittedBlock};
    use std::collections::HashSet;

    fn tx(id: String, operation: &str) -> CommittedTransaction {
        CommittedTransaction {
            asset_id: id.clone(),
            asset_ids: vec![AssetIdsEntry::Id(id.clone())],
            id,
            operation: operation.to_owned(),
            output_public_keys: Vec::new(),
            input_owners: Vec::new(),
        }
    }

    fn block(height: u64, count: u64) -> PublishedBlock {
        // Leading digits 0, 1, 2, ... so the share of each worker is known.
        let transactions = (0..count)
            .map(|i| {
                let op = if i % 3 == 0 { "CREATE" } else { "TRANSFER" };
                tx(format!("{i:016x}{height:048x}"), op)
            })
            .collect();
        PublishedBlock::new(Arc::new(CommittedBlock::synthetic(height, transactions)))
    }

    fn selection(stream: StreamKind, framing: Framing, filter: Filter) -> Selection {
        Selection {
            stream,
            filter,
            framing,
            payload: Payload::Event,
            key: 0,
            envelope: None,
        }
    }

    fn partition(index: u16, count: u16) -> Filter {
        Filter {
            partition: Some(Partition { index, count }),
            ..Filter::default()
        }
    }

    /// Frames of a block whose stored rows say each transaction's operation is `op-i`.
    fn block_with_rows(height: u64, count: u64) -> PublishedBlock {
        let plain = block(height, count);
        let rows: Vec<serde_json::Value> = plain
            .block
            .transactions
            .iter()
            .enumerate()
            .map(|(i, tx)| serde_json::json!([tx.id, format!("op-{i}"), "3.0", null, [], [], null]))
            .collect();
        let record = serde_json::json!([["uuid", "", height, []], rows, []]);
        let bytes = rmp_serde::to_vec(&record).expect("msgpack");
        let mut with_rows = (*plain.block).clone();
        with_rows.rows = Some(planetmint_streams_model::api::StoredRows::new(bytes.into()));
        PublishedBlock::new(Arc::new(with_rows))
    }

    fn payloads(frames: &bytes::Bytes) -> Vec<serde_json::Value> {
        texts(frames)
            .iter()
            .map(|t| serde_json::from_slice(t).expect("JSON"))
            .collect()
    }

    fn texts(frames: &bytes::Bytes) -> Vec<Vec<u8>> {
        // Unmasked text frames of small payloads: 2-byte or 4-byte headers.
        let mut out = Vec::new();
        let mut at = 0;
        while at < frames.len() {
            let (len, header) = match frames[at + 1] {
                126 => (
                    usize::from(u16::from_be_bytes([frames[at + 2], frames[at + 3]])),
                    4,
                ),
                n => (usize::from(n), 2),
            };
            out.push(frames[at + header..at + header + len].to_vec());
            at += header + len;
        }
        out
    }

    #[test]
    fn whole_transactions_come_from_the_stored_rows_in_events_and_batches() {
        let published = block_with_rows(9, 4);
        let events = payloads(published.transaction_frames(Payload::WithTransaction));
        assert_eq!(events.len(), 4);
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event["transaction"]["operation"], format!("op-{i}"));
            assert_eq!(event["transaction"]["id"], event["transaction_id"]);
        }
        // The event's own members are unchanged, `transaction` comes last.
        let plain_texts = texts(published.transaction_frames(Payload::Event));
        for (plain, whole) in plain_texts.iter().zip(texts(
            published.transaction_frames(Payload::WithTransaction),
        )) {
            let head = &plain[..plain.len() - 1];
            assert!(whole.starts_with(head));
            assert!(whole[head.len()..].starts_with(b",\"transaction\":{"));
        }
        let plain = payloads(published.transaction_frames(Payload::Event));
        assert!(plain.iter().all(|e| e.get("transaction").is_none()));
        // A filtered batch carries the same events, whole transactions included.
        let batch = payloads(&published.batch_frame_of(Payload::WithTransaction, &[1, 3]));
        assert_eq!(
            batch[0]["transactions"],
            serde_json::json!([events[1], events[3]])
        );
        // Without stored rows (not from Planetmint's storage) the member is null, not absent,
        // and each such transaction is counted once, however often its frames are asked for.
        let unrebuildable = prometheus::IntCounter::new("unrebuildable", "test").expect("metric");
        let bare = block(9, 2).counting_unrebuildable(unrebuildable.clone());
        let events = payloads(bare.transaction_frames(Payload::WithTransaction));
        assert!(events.iter().all(|e| e["transaction"].is_null()));
        assert!(events.iter().all(|e| e.get("transaction").is_some()));
        bare.transaction_frames(Payload::WithTransaction);
        assert_eq!(unrebuildable.get(), 2);
        let counted = prometheus::IntCounter::new("rebuilt", "test").expect("metric");
        let whole = block_with_rows(9, 4).counting_unrebuildable(counted.clone());
        whole.transaction_frames(Payload::WithTransaction);
        assert_eq!(counted.get(), 0, "every transaction rebuilt");
    }

    #[test]
    fn four_workers_share_every_transaction_exactly_once_in_order() {
        let published = block(7, 10);
        let all = unfiltered_frames(
            StreamKind::ValidTransactions,
            (Framing::PerEvent, Payload::Event),
            None,
            &published,
        )
        .expect("frames");
        let mut shares = Vec::new();
        for i in 0..4 {
            let worker = selection(
                StreamKind::ValidTransactions,
                Framing::PerEvent,
                partition(i, 4),
            );
            let matching = worker.matching(&published);
            // Transaction k (leading number k) belongs to worker k mod 4.
            assert_eq!(
                matching,
                (0..10)
                    .filter(|k| k % 4 == usize::from(i))
                    .collect::<Vec<_>>()
            );
            let frames = worker.frames(&published).expect("each worker has a share");
            assert_eq!(frames.messages as usize, matching.len());
            assert_eq!(
                frames.frames,
                published.transaction_frames_of(Payload::Event, &matching)
            );
            shares.extend(matching);
        }
        shares.sort_unstable();
        assert_eq!(shares, (0..10).collect::<Vec<_>>());
        assert_eq!(all.messages, 10);
        // One worker of one gets everything.
        let one = selection(
            StreamKind::ValidTransactions,
            Framing::PerBlock,
            partition(0, 1),
        );
        assert_eq!(
            one.frames(&published).expect("all").frames,
            *published.batch_frame(Payload::Event)
        );
    }

    #[test]
    fn valid_blocks_are_shared_by_height_even_when_empty() {
        for height in 1..=8 {
            let published = block(height, 0);
            let owners: Vec<u16> = (0..3)
                .filter(|&i| {
                    selection(StreamKind::ValidBlocks, Framing::PerEvent, partition(i, 3))
                        .frames(&published)
                        .is_some()
                })
                .collect();
            assert_eq!(owners, vec![(height % 3) as u16], "height {height}");
        }
    }

    #[test]
    fn partition_and_filters_combine_with_and() {
        let published = block(5, 12);
        let mut filter = partition(1, 2);
        filter.operations = HashSet::from(["CREATE".to_owned()]);
        let worker = selection(
            StreamKind::ValidTransactions,
            Framing::PerEvent,
            filter.clone(),
        );
        // CREATE: 0, 3, 6, 9; odd: 3, 9.
        assert_eq!(worker.matching(&published), vec![3, 9]);
        // On valid_blocks the partition is the height's: 5 is odd, so worker 1 of 2 gets the
        // block (it holds a CREATE), worker 0 does not.
        let blocks = selection(StreamKind::ValidBlocks, Framing::PerEvent, filter.clone());
        assert!(blocks.frames(&published).is_some());
        filter.partition = Some(Partition { index: 0, count: 2 });
        let blocks = selection(StreamKind::ValidBlocks, Framing::PerEvent, filter);
        assert!(blocks.frames(&published).is_none());
    }
}
