//! An in-memory [`BlockSource`] for tests of the follower and the broadcaster.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use planetmint_streams_model::{
    BlockBatch, BlockSource, CommittedBlock, HeightBounds, SourceError,
};
use tokio::sync::Notify;

/// Blocks kept in a map; can be made unavailable to simulate an outage.
#[derive(Debug, Default)]
pub struct MemorySource {
    state: Mutex<State>,
    committed: Notify,
}

#[derive(Debug, Default)]
struct State {
    blocks: BTreeMap<u64, CommittedBlock>,
    unavailable: bool,
}

impl MemorySource {
    /// An empty, available source.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Commits a block (wakes waiting readers).
    pub fn commit(&self, block: CommittedBlock) {
        self.state().blocks.insert(block.height, block);
        self.committed.notify_waiters();
    }

    /// Makes every request fail as if the database were down (or back up).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.state().unavailable = unavailable;
        self.committed.notify_waiters();
    }

    /// Forgets blocks below `height` (history no longer available).
    pub fn prune_below(&self, height: u64) {
        let mut state = self.state();
        state.blocks = state.blocks.split_off(&height);
    }

    fn collect(&self, after: u64, upto: u64, max_blocks: usize) -> Result<BlockBatch, SourceError> {
        let state = self.state();
        if state.unavailable {
            return Err(SourceError::unavailable("memory source switched off"));
        }
        let head = state.blocks.keys().next_back().copied().unwrap_or(0);
        let blocks = state
            .blocks
            .range(after.saturating_add(1)..)
            .take_while(|(height, _)| **height <= upto)
            .take(max_blocks)
            .map(|(_, block)| block.clone())
            .collect();
        Ok(BlockBatch { head, blocks })
    }
}

#[async_trait]
impl BlockSource for MemorySource {
    async fn next_blocks(
        &self,
        after: u64,
        max_blocks: usize,
        wait: Duration,
    ) -> Result<BlockBatch, SourceError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let committed = self.committed.notified();
            let batch = self.collect(after, u64::MAX, max_blocks)?;
            if !batch.blocks.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(batch);
            }
            if tokio::time::timeout_at(deadline, committed).await.is_err() {
                return self.collect(after, u64::MAX, max_blocks);
            }
        }
    }

    async fn blocks_between(
        &self,
        after: u64,
        upto: u64,
        max_blocks: usize,
    ) -> Result<Vec<CommittedBlock>, SourceError> {
        Ok(self.collect(after, upto, max_blocks)?.blocks)
    }

    async fn bounds(&self) -> Result<Option<HeightBounds>, SourceError> {
        let state = self.state();
        if state.unavailable {
            return Err(SourceError::unavailable("memory source switched off"));
        }
        let lowest = state.blocks.keys().next().copied();
        let highest = state.blocks.keys().next_back().copied();
        Ok(lowest
            .zip(highest)
            .map(|(lowest, highest)| HeightBounds { lowest, highest }))
    }
}
