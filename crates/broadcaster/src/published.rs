//! A committed block framed for the wire, once, for every subscriber.

use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use planetmint_streams_model::event::{block_batch_json, block_event_json, transaction_event_json};
use planetmint_streams_model::CommittedBlock;

use crate::frame::{encode_frame, OPCODE_TEXT};

/// A block's messages, framed: shared by all subscribers through an `Arc`.
#[derive(Debug)]
pub struct PublishedBlock {
    /// The block as read from the source (filters look at its transactions).
    pub block: Arc<CommittedBlock>,
    /// When the ingest handed it over (start of the commit-to-send latency).
    pub received_at: Instant,
    /// Every `valid_transactions` text frame, back to back, in block order.
    transaction_frames: Bytes,
    /// For each transaction, where its frame is in `transaction_frames`.
    frame_ranges: Vec<FrameRange>,
    /// The `valid_blocks` text frame.
    block_frame: Bytes,
    /// The `batch=block` frame of all transactions, made on first use.
    batch_frame: OnceLock<Bytes>,
}

impl PublishedBlock {
    /// Serializes and frames `block` once.
    pub fn new(block: Arc<CommittedBlock>) -> Self {
        let mut frames = Vec::with_capacity(block.transactions.len() * 240);
        let mut frame_ranges = Vec::with_capacity(block.transactions.len());
        for tx in &block.transactions {
            let json = transaction_event_json(block.height, tx);
            let start = frames.len();
            encode_frame(OPCODE_TEXT, &json, &mut frames);
            frame_ranges.push(FrameRange {
                frame: start..frames.len(),
                payload_start: frames.len() - json.len(),
            });
        }
        let mut block_frame = Vec::new();
        encode_frame(OPCODE_TEXT, &block_event_json(&block), &mut block_frame);
        Self {
            block,
            received_at: Instant::now(),
            transaction_frames: Bytes::from(frames),
            frame_ranges,
            block_frame: Bytes::from(block_frame),
            batch_frame: OnceLock::new(),
        }
    }

    /// Block height.
    pub fn height(&self) -> u64 {
        self.block.height
    }

    /// Approximate memory this block holds: its frames, and about as much again for the
    /// decoded block they were made from (for caches bounded in bytes).
    pub fn memory_bytes(&self) -> usize {
        let frames = self.transaction_frames.len() + self.block_frame.len();
        2 * frames + self.batch_frame.get().map_or(0, Bytes::len)
    }

    /// Number of transactions.
    pub fn transaction_count(&self) -> usize {
        self.frame_ranges.len()
    }

    /// All `valid_transactions` frames of the block (empty for an empty block).
    pub fn transaction_frames(&self) -> &Bytes {
        &self.transaction_frames
    }

    /// The `valid_blocks` frame.
    pub fn block_frame(&self) -> &Bytes {
        &self.block_frame
    }

    /// JSON payload of transaction `index`'s message.
    fn event_json(&self, index: usize) -> &[u8] {
        let range = &self.frame_ranges[index];
        &self.transaction_frames[range.payload_start..range.frame.end]
    }

    /// The frames of the transactions at `indices` (in block order), back to back.
    pub fn transaction_frames_of(&self, indices: &[usize]) -> Bytes {
        if indices.len() == self.frame_ranges.len() {
            return self.transaction_frames.clone();
        }
        let mut out = Vec::with_capacity(
            indices
                .iter()
                .map(|&i| self.frame_ranges[i].frame.len())
                .sum(),
        );
        for &i in indices {
            out.extend_from_slice(&self.transaction_frames[self.frame_ranges[i].frame.clone()]);
        }
        Bytes::from(out)
    }

    /// The `batch=block` frame: `{"height", "transactions": [...]}` with every transaction.
    pub fn batch_frame(&self) -> &Bytes {
        self.batch_frame
            .get_or_init(|| self.batch_frame_of(&(0..self.frame_ranges.len()).collect::<Vec<_>>()))
    }

    /// A `batch=block` frame with the transactions at `indices`.
    pub fn batch_frame_of(&self, indices: &[usize]) -> Bytes {
        let json = block_batch_json(self.height(), indices.iter().map(|&i| self.event_json(i)));
        let mut frame = Vec::with_capacity(json.len() + 10);
        encode_frame(OPCODE_TEXT, &json, &mut frame);
        Bytes::from(frame)
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
