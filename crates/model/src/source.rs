//! The seam between storage and fan-out.
//!
//! [`BlockSource`] is what the stream needs from storage: committed blocks after a height.
//! The Tarantool implementation lives in `planetmint-streams-ingest`; tests use an in-memory
//! one. [`BlockSink`] is where the ingest follower delivers blocks, in height order, exactly
//! once each; the broadcaster's hub implements it. [`SinkFanOut`] hands each block to several
//! sinks (the hub, then the JetStream publisher), so the follower stays one.

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

/// The error underneath a [`SourceError`] (a connection's I/O error, a decoder's complaint),
/// shared so that the error stays `Clone` (replays hand one read's result to many waiters).
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Why a source could not answer. Every variant is worth retrying; the kind says what to log
/// and which `reason` label to count. The error it comes from, when there is one, is its
/// [`source`](std::error::Error::source): log it with [`SourceError::chain`] (or `{:#}` under
/// `anyhow`) to see the whole story.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// The database cannot be reached or did not answer in time.
    #[error("source unavailable: {message}")]
    Unavailable {
        /// What happened.
        message: String,
        /// The error it comes from.
        #[source]
        cause: Option<Cause>,
    },
    /// The database answered with an error.
    #[error("source refused the request: {message}")]
    Refused {
        /// What happened.
        message: String,
        /// The error it comes from.
        #[source]
        cause: Option<Cause>,
    },
    /// The database answered with data the stream cannot use (a reply of the wrong shape).
    #[error("source returned unusable data: {message}")]
    Corrupt {
        /// What happened.
        message: String,
        /// The error it comes from.
        #[source]
        cause: Option<Cause>,
    },
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
    /// The database cannot be reached or did not answer in time.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable {
            message: message.into(),
            cause: None,
        }
    }

    /// The database answered with an error.
    pub fn refused(message: impl Into<String>) -> Self {
        Self::Refused {
            message: message.into(),
            cause: None,
        }
    }

    /// The database answered with data the stream cannot use.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::Corrupt {
            message: message.into(),
            cause: None,
        }
    }

    /// The same error, caused by `cause` (kept as its source, not copied into the message).
    pub fn because(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        match &mut self {
            Self::Unavailable { cause: slot, .. }
            | Self::Refused { cause: slot, .. }
            | Self::Corrupt { cause: slot, .. } => *slot = Some(Arc::new(cause)),
            // A row's problem is its own message; nothing lies beneath it.
            Self::UnusableRow { .. } => {}
        }
        self
    }

    /// A short, fixed label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::Unavailable { .. } => "unavailable",
            SourceError::Refused { .. } => "refused",
            SourceError::Corrupt { .. } => "corrupt",
            SourceError::UnusableRow { .. } => "unusable_row",
        }
    }

    /// The message followed by each cause, `outer: inner: innermost`, for logs.
    pub fn chain(&self) -> Chain<'_> {
        Chain(self)
    }
}

/// An error shown with its causes, `outer: inner: innermost` (what `{:#}` shows under
/// `anyhow`); see [`SourceError::chain`].
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(err) = cause {
            write!(f, ": {err}")?;
            cause = err.source();
        }
        Ok(())
    }
}

/// A history read's answer, perhaps not yet decoded. [`BlockSource::fetch_between`] returns it
/// as soon as the source has answered, so a reader that bounds how many reads it has at the
/// source at once can give its turn back before it spends its own CPU on decoding.
pub struct FetchedBlocks(FetchedInner);

enum FetchedInner {
    Decoded(Vec<CommittedBlock>),
    Later(Box<dyn FnOnce() -> Result<Vec<CommittedBlock>, SourceError> + Send>),
}

impl FetchedBlocks {
    /// Blocks already decoded.
    pub fn decoded(blocks: Vec<CommittedBlock>) -> Self {
        Self(FetchedInner::Decoded(blocks))
    }

    /// An answer that `decode` turns into blocks.
    pub fn later(
        decode: impl FnOnce() -> Result<Vec<CommittedBlock>, SourceError> + Send + 'static,
    ) -> Self {
        Self(FetchedInner::Later(Box::new(decode)))
    }

    /// The blocks (decoding them now if they were not yet).
    pub fn decode(self) -> Result<Vec<CommittedBlock>, SourceError> {
        match self.0 {
            FetchedInner::Decoded(blocks) => Ok(blocks),
            FetchedInner::Later(decode) => decode(),
        }
    }
}

impl std::fmt::Debug for FetchedBlocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            FetchedInner::Decoded(blocks) => write!(f, "FetchedBlocks({} decoded)", blocks.len()),
            FetchedInner::Later(_) => f.write_str("FetchedBlocks(not yet decoded)"),
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

    /// [`BlockSource::blocks_between`] in two steps: returns once the source has answered,
    /// and [`FetchedBlocks::decode`] gives the blocks. Sources whose answers cost CPU to
    /// decode override it; by default the blocks come decoded.
    async fn fetch_between(
        &self,
        after: u64,
        upto: u64,
        max_blocks: usize,
    ) -> Result<FetchedBlocks, SourceError> {
        self.blocks_between(after, upto, max_blocks)
            .await
            .map(FetchedBlocks::decoded)
    }

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

/// A [`BlockSink`] that hands every call to several sinks, in the order given (the hub
/// first, so the WebSocket fan-out never waits behind another sink). Each sink's `publish`
/// must return at once: a slow sink is the sink's own business (bounded queues, catch-up).
pub struct SinkFanOut {
    sinks: Vec<Arc<dyn BlockSink>>,
}

impl SinkFanOut {
    /// Feeds `sinks`, in this order.
    pub fn new(sinks: Vec<Arc<dyn BlockSink>>) -> Self {
        Self { sinks }
    }
}

impl BlockSink for SinkFanOut {
    fn start_after(&self, height: u64) {
        for sink in &self.sinks {
            sink.start_after(height);
        }
    }

    fn publish(&self, block: Arc<CommittedBlock>) {
        for sink in &self.sinks {
            sink.publish(block.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn the_cause_is_the_source_and_shows_in_the_chain_not_the_message() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused by peer");
        let err = SourceError::unavailable("no answer from Tarantool").because(refused);
        assert_eq!(
            err.to_string(),
            "source unavailable: no answer from Tarantool"
        );
        assert_eq!(
            err.chain().to_string(),
            "source unavailable: no answer from Tarantool: refused by peer"
        );
        let copy = err.clone();
        assert_eq!(
            copy.source().map(ToString::to_string).as_deref(),
            Some("refused by peer")
        );
        assert_eq!(copy.kind(), "unavailable");
    }

    /// Records what it is handed.
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<(char, u64)>>);

    impl BlockSink for Recorder {
        fn start_after(&self, height: u64) {
            self.0.lock().expect("lock").push(('s', height));
        }
        fn publish(&self, block: Arc<CommittedBlock>) {
            self.0.lock().expect("lock").push(('p', block.height));
        }
    }

    #[test]
    fn the_fan_out_hands_every_call_to_every_sink_in_order() {
        let first = Arc::new(Recorder::default());
        let second = Arc::new(Recorder::default());
        let fan_out = SinkFanOut::new(vec![first.clone(), second.clone()]);
        fan_out.start_after(4);
        for height in [5, 7] {
            fan_out.publish(Arc::new(CommittedBlock {
                height,
                hash: String::new(),
                transactions: Vec::new(),
                chain_start: false,
                rows: None,
                committed_at: None,
            }));
        }
        let expected = vec![('s', 4), ('p', 5), ('p', 7)];
        assert_eq!(*first.0.lock().expect("lock"), expected);
        assert_eq!(*second.0.lock().expect("lock"), expected);
    }

    #[test]
    fn without_a_cause_the_chain_is_the_message() {
        let err = SourceError::corrupt("a blocks reply record is not an array");
        assert!(err.source().is_none());
        assert_eq!(err.chain().to_string(), err.to_string());
    }
}
