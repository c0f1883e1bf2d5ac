//! Replay: brings a subscriber that asked for `from_height` up to the live stream, then
//! attaches it to the [`Hub`], with nothing missing or repeated at the seam.
//!
//! It talks only to the hub (recent blocks in its ring, and the attach) and to history read
//! through [`SharedHistory`] (older blocks from the [`BlockSource`], shared by every replaying
//! subscriber and paid for from the [`ReadBudget`]). Frames are built once per block, by
//! whoever read it; a subscriber only selects and queues them, at the pace its socket takes
//! them.
//!
//! - [`history`]: the shared, byte-bounded cache of history segments and single-flight reads.
//! - [`budget`]: what replays may ask of Planetmint's Tarantool.

pub mod budget;
pub mod history;

use std::sync::Arc;

use futures_util::future::Either;

use planetmint_streams_model::BlockSource;

pub use budget::{BudgetLimits, ReadBudget, ReplayTurn};
pub use history::{PendingSegment, Segment, SegmentRead, SharedHistory};

use crate::hub::{Catchup, Hub, Selection, SubscriberId};
use crate::metrics::BroadcastMetrics;
use crate::published::PublishedBlock;
use crate::queue::SubscriberQueue;

/// Why a replay could not bring its subscriber to the live stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// `from_height` is below the lowest height the source still stores.
    #[error("history below height {lowest} is not stored")]
    HistoryUnavailable {
        /// Lowest stored height.
        lowest: u64,
    },
    /// The subscriber's queue was closed (the connection is gone).
    #[error("the subscriber is gone")]
    QueueClosed,
}

/// Settings of replays (from `[streams]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplaySettings {
    /// Blocks per history read.
    pub batch_blocks: usize,
    /// Most bytes of history kept for other subscribers.
    pub cache_bytes: usize,
    /// What replays may ask of the source.
    pub budget: BudgetLimits,
}

/// Replays history for every subscriber of a stream server.
#[derive(Debug)]
pub struct Replayer {
    hub: Arc<Hub>,
    history: SharedHistory,
    budget: Arc<ReadBudget>,
}

impl Replayer {
    /// A replayer over `hub` and `source`.
    pub fn new(hub: Arc<Hub>, source: Arc<dyn BlockSource>, settings: ReplaySettings) -> Self {
        let metrics = hub.metrics().clone();
        let budget = Arc::new(ReadBudget::new(
            settings.budget,
            metrics.replay_waits.clone(),
        ));
        let history = SharedHistory::new(
            source,
            budget.clone(),
            metrics,
            settings.batch_blocks,
            settings.cache_bytes,
        );
        Self {
            hub,
            history,
            budget,
        }
    }

    fn metrics(&self) -> &BroadcastMetrics {
        self.hub.metrics()
    }

    /// The shared history (for tests and metrics).
    pub fn history(&self) -> &SharedHistory {
        &self.history
    }

    /// Queues every block after `from_height` that `selection` wants (none without it:
    /// Planetmint's behaviour), then attaches the subscriber for live blocks.
    pub async fn attach(
        &self,
        queue: &Arc<SubscriberQueue>,
        selection: &Arc<Selection>,
        from_height: Option<u64>,
    ) -> Result<SubscriberId, ReplayError> {
        let Some(after) = from_height else {
            return Ok(self.hub.attach_live(queue, selection));
        };
        self.metrics()
            .replay_requests
            .with_label_values(&[selection.stream.name()])
            .inc();
        self.catch_up_from(queue, selection, after).await
    }

    /// Attaches a live subscriber (no `from_height`) from the last height published when its
    /// handshake was answered (`None`: the ingest had not started): blocks published between
    /// that answer and this attach are queued first, from memory, so a client that saw its
    /// upgrade before a commit always gets that commit.
    pub async fn attach_live_since(
        &self,
        queue: &Arc<SubscriberQueue>,
        selection: &Arc<Selection>,
        connected_after: Option<u64>,
    ) -> Result<SubscriberId, ReplayError> {
        match connected_after {
            Some(after) => self.catch_up_from(queue, selection, after).await,
            None => Ok(self.hub.attach_live(queue, selection)),
        }
    }

    /// Queues every block after `after` (memory, then the source) and attaches at the seam.
    async fn catch_up_from(
        &self,
        queue: &Arc<SubscriberQueue>,
        selection: &Arc<Selection>,
        mut after: u64,
    ) -> Result<SubscriberId, ReplayError> {
        let mut turn: Option<ReplayTurn> = None;
        let mut checked_history = false;
        loop {
            match self.hub.catch_up(queue, selection, after) {
                Catchup::Attached(id) => return Ok(id),
                Catchup::NotStarted => {
                    self.hub.started().await;
                }
                Catchup::FromMemory(blocks) => {
                    // Caught up with what the source had to give: let another replay go.
                    turn = None;
                    if let Some(last) = self
                        .queue_blocks(queue, selection, &blocks, "memory")
                        .await?
                    {
                        after = last;
                    }
                }
                Catchup::FromSource { after: from, upto } => {
                    if turn.is_none() {
                        turn = Some(self.budget.replay_turn().await);
                    }
                    if !checked_history {
                        if let Some(bounds) = self.history.bounds().await {
                            if from.saturating_add(1) < bounds.lowest {
                                return Err(ReplayError::HistoryUnavailable {
                                    lowest: bounds.lowest,
                                });
                            }
                        }
                        checked_history = true;
                    }
                    after = self
                        .replay_from_source(queue, selection, from, upto)
                        .await?;
                }
            }
        }
    }

    /// Queues history in `(after, upto]` (and possibly a little beyond) from the shared
    /// history; returns the height reached. The next segment is read (or joined) while this
    /// one is still being read and queued: its range is known in advance, so the source reads
    /// it while the node decodes, frames and sends this one.
    async fn replay_from_source(
        &self,
        queue: &SubscriberQueue,
        selection: &Selection,
        mut after: u64,
        upto: u64,
    ) -> Result<u64, ReplayError> {
        let mut current = self.history.segment_after(after, upto);
        loop {
            let reached = current.reached;
            let next = (reached < upto).then(|| self.history.segment_after(reached, upto));
            let queued = async {
                let segment = current.blocks().await;
                self.queue_blocks(queue, selection, segment.blocks_after(after), "source")
                    .await
            };
            match &next {
                None => queued.await?,
                Some(next) => {
                    let queued = std::pin::pin!(queued);
                    match futures_util::future::select(queued, next.blocks()).await {
                        Either::Left((queued, _)) => queued?,
                        Either::Right((_, queued)) => queued.await?,
                    }
                }
            };
            after = reached;
            match next {
                Some(next) => current = next,
                None => return Ok(after),
            }
        }
    }

    /// Queues this subscriber's frames of `blocks` at its socket's pace; returns the last
    /// height (`None` for no block), or the error when the connection is gone.
    async fn queue_blocks(
        &self,
        queue: &SubscriberQueue,
        selection: &Selection,
        blocks: &[Arc<PublishedBlock>],
        from: &str,
    ) -> Result<Option<u64>, ReplayError> {
        let replayed = self.metrics().replayed_blocks.with_label_values(&[from]);
        let mut last = None;
        for block in blocks {
            if let Some(frames) = selection.frames(block) {
                if !queue.push_waiting(frames).await {
                    return Err(ReplayError::QueueClosed);
                }
            }
            last = Some(block.height());
            replayed.inc();
        }
        Ok(last)
    }
}
