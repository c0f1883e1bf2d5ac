//! The seam between storage and fan-out.
//!
//! [`BlockSource`] is what the stream needs from storage: committed blocks after a height.
//! The Tarantool implementation lives in `planetmint-streams-ingest`; tests use an in-memory
//! one. [`BlockSink`] is where the ingest follower delivers blocks, in height order, exactly
//! once each; the broadcaster's hub implements it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::block::CommittedBlock;

/// Blocks read from the source, with the source's committed head at the time of reading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockBatch {
    /// Highest committed height the source knows (0 when it holds no block).
    pub head: u64,
    /// Blocks in increasing height order.
    pub blocks: Vec<CommittedBlock>,
}

/// The heights a source holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeightBounds {
    /// Lowest stored block height (Planetmint's genesis row is height 0).
    pub lowest: u64,
    /// Highest committed block height.
    pub highest: u64,
}

/// Why a source could not answer. Every variant is worth retrying; the kind says what to log
/// and which `reason` label to count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The database cannot be reached or did not answer in time.
    #[error("source unavailable: {0}")]
    Unavailable(String),
    /// The database answered with an error.
    #[error("source refused the request: {0}")]
    Refused(String),
    /// The database answered with data the stream cannot use (a reply of the wrong shape).
    #[error("source returned unusable data: {0}")]
    Corrupt(String),
    /// A stored row the stream cannot use: a field missing or of the wrong type, or a block
    /// row naming a transaction stored nowhere. Nothing after it is streamed (a block is never
    /// skipped) until the row is readable.
    #[error("unusable row in space `{space}`, key {key}: {problem}")]
    UnusableRow {
        /// The space holding the row.
        space: String,
        /// The row's key (or what identifies it: a height, a transaction id).
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl SourceError {
    /// A short, fixed label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::Unavailable(_) => "unavailable",
            SourceError::Refused(_) => "refused",
            SourceError::Corrupt(_) => "corrupt",
            SourceError::UnusableRow { .. } => "unusable_row",
        }
    }
}

/// Committed blocks, read by height. Heights increase but need not be contiguous, so every
/// read is "after a height", never "at a height".
#[async_trait]
pub trait BlockSource: Send + Sync + 'static {
    /// Up to `max_blocks` committed blocks with height > `after`. When there is none yet, waits
    /// up to `wait` for one to be committed (and may then return an empty batch).
    async fn next_blocks(
        &self,
        after: u64,
        max_blocks: usize,
        wait: Duration,
    ) -> Result<BlockBatch, SourceError>;

    /// Up to `max_blocks` committed blocks with `after < height <= upto`, without waiting
    /// (replay of history).
    async fn blocks_between(
        &self,
        after: u64,
        upto: u64,
        max_blocks: usize,
    ) -> Result<Vec<CommittedBlock>, SourceError>;

    /// The lowest and highest stored heights; `None` when no block row exists yet.
    async fn bounds(&self) -> Result<Option<HeightBounds>, SourceError>;
}

/// Receives committed blocks from the ingest follower.
pub trait BlockSink: Send + Sync + 'static {
    /// Called once the follower knows where it starts: it will publish only heights above
    /// `height`. Called again after a restart of the follower with the same cursor.
    fn start_after(&self, height: u64);

    /// Delivers the next block; heights strictly increase across calls.
    fn publish(&self, block: Arc<CommittedBlock>);
}
