//! A committed block framed for the wire, once, for every subscriber.

use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use planetmint_streams_model::api::StoredRows;
use planetmint_streams_model::event::{
    block_batch_json, block_event_json, transaction_event_json,
    transaction_event_with_transaction_json,
};
use planetmint_streams_model::CommittedBlock;
use prometheus::IntCounter;
use tracing::warn;

use crate::frame::{encode_frame, OPCODE_TEXT};
use crate::subscription::Payload;

/// A block's messages, framed: shared by all subscribers through an `Arc`.
#[derive(Debug)]
pub struct PublishedBlock {
    /// The block as read from the source (filters look at its transactions).
    pub block: Arc<CommittedBlock>,
    /// Start of the commit-to-send latency: when Tarantool committed the block, when the
    /// source knows it, else when the ingest handed it over.
    pub received_at: Instant,
    /// The `valid_transactions` events as Planetmint sends them.
    events: EventFrames,
    /// The events with `"transaction"` (`include=transaction`), made on first use.
    events_with_transactions: OnceLock<EventFrames>,
    /// The `valid_blocks` text frame.
    block_frame: Bytes,
    /// Counts transactions whose whole transaction could not be rebuilt.
    unrebuildable: Option<IntCounter>,
}

/// One kind of a block's `valid_transactions` events, framed.
#[derive(Debug)]
struct EventFrames {
    /// Every text frame, back to back, in block order.
    frames: Bytes,
    /// For each transaction, where its frame is in `frames`.
    ranges: Vec<FrameRange>,
    /// The `batch=block` frame of all transactions, made on first use.
    batch: OnceLock<Bytes>,
}

impl EventFrames {
    fn new(payloads: impl ExactSizeIterator<Item = Vec<u8>>) -> Self {
        let mut frames = Vec::with_capacity(payloads.len() * 240);
        let mut ranges = Vec::with_capacity(payloads.len());
        for json in payloads {
            let start = frames.len();
            encode_frame(OPCODE_TEXT, &json, &mut frames);
            ranges.push(FrameRange {
                frame: start..frames.len(),
                payload_start: frames.len() - json.len(),
            });
        }
        Self {
            frames: Bytes::from(frames),
            ranges,
            batch: OnceLock::new(),
        }
    }

    /// JSON payload of transaction `index`'s message.
    fn payload(&self, index: usize) -> &[u8] {
        let range = &self.ranges[index];
        &self.frames[range.payload_start..range.frame.end]
    }

    fn frames_of(&self, indices: &[usize]) -> Bytes {
        if indices.len() == self.ranges.len() {
            return self.frames.clone();
        }
        let mut out = Vec::with_capacity(indices.iter().map(|&i| self.ranges[i].frame.len()).sum());
        for &i in indices {
            out.extend_from_slice(&self.frames[self.ranges[i].frame.clone()]);
        }
        Bytes::from(out)
    }

    fn batch_of(&self, height: u64, indices: &[usize]) -> Bytes {
        let json = block_batch_json(height, indices.iter().map(|&i| self.payload(i)));
        let mut frame = Vec::with_capacity(json.len() + 10);
        encode_frame(OPCODE_TEXT, &json, &mut frame);
        Bytes::from(frame)
    }

    fn batch(&self, height: u64) -> &Bytes {
        self.batch
            .get_or_init(|| self.batch_of(height, &(0..self.ranges.len()).collect::<Vec<_>>()))
    }
}

impl PublishedBlock {
    /// Serializes and frames `block` once.
    pub fn new(block: Arc<CommittedBlock>) -> Self {
        let events = EventFrames::new(
            block
                .transactions
                .iter()
                .map(|tx| transaction_event_json(block.height, tx)),
        );
        let mut block_frame = Vec::new();
        encode_frame(OPCODE_TEXT, &block_event_json(&block), &mut block_frame);
        let now = Instant::now();
        // The commit time is on Tarantool's clock: as an age, so that a clock ahead of ours
        // counts as no age rather than a negative one.
        let received_at = block
            .committed_at
            .and_then(|at| SystemTime::now().duration_since(at).ok())
            .and_then(|age| now.checked_sub(age))
            .unwrap_or(now);
        Self {
            block,
            received_at,
            events,
            events_with_transactions: OnceLock::new(),
            block_frame: Bytes::from(block_frame),
            unrebuildable: None,
        }
    }

    /// Counts in `counter` every transaction sent as `"transaction": null`.
    pub fn counting_unrebuildable(mut self, counter: IntCounter) -> Self {
        self.unrebuildable = Some(counter);
        self
    }

    /// Block height.
    pub fn height(&self) -> u64 {
        self.block.height
    }

    /// Approximate memory this block holds, fixed when it is made (so a holder bounded in
    /// bytes adds and removes the same amount): its frames, about as much again for the
    /// decoded block they were made from, and the stored rows counted twice (the
    /// `batch=block` and whole-transaction frames made later from them take about as much).
    pub fn memory_bytes(&self) -> usize {
        let frames = self.events.frames.len() + self.block_frame.len();
        let rows = self.block.rows.as_ref().map_or(0, StoredRows::len);
        3 * frames + 2 * rows
    }

    /// Number of transactions.
    pub fn transaction_count(&self) -> usize {
        self.events.ranges.len()
    }

    /// The `valid_blocks` frame.
    pub fn block_frame(&self) -> &Bytes {
        &self.block_frame
    }

    /// All `valid_transactions` frames of the block (empty for an empty block).
    pub fn transaction_frames(&self, payload: Payload) -> &Bytes {
        &self.events(payload).frames
    }

    /// The frames of the transactions at `indices` (in block order), back to back.
    pub fn transaction_frames_of(&self, payload: Payload, indices: &[usize]) -> Bytes {
        self.events(payload).frames_of(indices)
    }

    /// The `batch=block` frame: `{"height", "transactions": [...]}` with every transaction.
    pub fn batch_frame(&self, payload: Payload) -> &Bytes {
        self.events(payload).batch(self.height())
    }

    /// A `batch=block` frame with the transactions at `indices`.
    pub fn batch_frame_of(&self, payload: Payload, indices: &[usize]) -> Bytes {
        self.events(payload).batch_of(self.height(), indices)
    }

    fn events(&self, payload: Payload) -> &EventFrames {
        match payload {
            Payload::Event => &self.events,
            Payload::WithTransaction => self
                .events_with_transactions
                .get_or_init(|| self.frame_events_with_transactions()),
        }
    }

    /// The events with the whole transaction of each, rebuilt from the block's stored rows
    /// (once per block, whoever asks first). A transaction that cannot be rebuilt (a row
    /// Planetmint's own API could not serve either) is sent as `"transaction": null`.
    fn frame_events_with_transactions(&self) -> EventFrames {
        let height = self.height();
        let rebuilt = match &self.block.rows {
            Some(rows) => rows.api_transactions().unwrap_or_else(|err| {
                warn!(height, error = %err, "whole transactions unavailable for this block");
                Vec::new()
            }),
            None => Vec::new(),
        };
        let mut unrebuildable = 0;
        let payloads = self.block.transactions.iter().enumerate().map(|(i, tx)| {
            let transaction = match rebuilt.get(i) {
                Some(Ok(transaction))
                    if transaction.get("id").and_then(|id| id.as_str()) == Some(tx.id.as_str()) =>
                {
                    Some(transaction)
                }
                Some(Err(err)) => {
                    warn!(height, error = %err, "transaction cannot be rebuilt; sent as null");
                    None
                }
                _ => None,
            };
            if transaction.is_none() {
                unrebuildable += 1;
            }
            transaction_event_with_transaction_json(self.events.payload(i), transaction)
        });
        let frames = EventFrames::new(payloads);
        if let Some(counter) = &self.unrebuildable {
            counter.inc_by(unrebuildable);
        }
        frames
    }
}

/// Where one transaction's frame and its JSON payload are in a block's frames.
#[derive(Debug, Clone)]
struct FrameRange {
    /// The whole frame.
    frame: Range<usize>,
    /// Where the payload starts (it ends with the frame).
    payload_start: usize,
}
