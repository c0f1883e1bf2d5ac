//! The ingest loop: one cursor, blocks after it, each handed on exactly once.
//!
//! The cursor is the last height handed to the sink. It starts at the source's committed head
//! (without parameters a subscriber gets only blocks committed after it connected, as with
//! Planetmint), and only moves forward. Every read asks for "height > cursor", so an outage
//! of Tarantool or a restart of the follower resumes exactly where it stopped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use planetmint_streams_model::{BlockSink, BlockSource, SourceError};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::status::IngestStatus;
use crate::tarantool::TarantoolConfig;
use planetmint_streams_model::backoff::Backoff;

/// How often the error about a row that stays unusable is repeated in the log.
pub const STALL_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// How the follower reads: the `[tarantool]` settings that concern it, built from
/// [`TarantoolConfig`] so that each default is set in one place.
#[derive(Debug, Clone)]
pub struct FollowerConfig {
    /// Most blocks per read (`tarantool.batch_blocks`).
    pub batch_blocks: usize,
    /// How long one read may wait on the source for a new block (`tarantool.long_poll`).
    pub long_poll: Duration,
    /// First pause after a failed read (`tarantool.reconnect_min`).
    pub retry_min: Duration,
    /// Longest pause between failed reads (`tarantool.reconnect_max`).
    pub retry_max: Duration,
}

impl From<&TarantoolConfig> for FollowerConfig {
    fn from(config: &TarantoolConfig) -> Self {
        Self {
            batch_blocks: config.batch_blocks,
            long_poll: config.long_poll,
            retry_min: config.reconnect_min,
            retry_max: config.reconnect_max,
        }
    }
}

impl Default for FollowerConfig {
    /// The `[tarantool]` defaults.
    fn default() -> Self {
        Self::from(&TarantoolConfig::default())
    }
}

/// Follows a [`BlockSource`] and feeds a [`BlockSink`].
pub struct Follower {
    source: Arc<dyn BlockSource>,
    sink: Arc<dyn BlockSink>,
    status: Arc<IngestStatus>,
    config: FollowerConfig,
}

impl Follower {
    /// A follower that has not started yet.
    pub fn new(
        source: Arc<dyn BlockSource>,
        sink: Arc<dyn BlockSink>,
        status: Arc<IngestStatus>,
        config: FollowerConfig,
    ) -> Self {
        Self {
            source,
            sink,
            status,
            config,
        }
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut cursor: Option<u64> = None;
        let mut backoff = Backoff::new(self.config.retry_min, self.config.retry_max);
        let mut warned_behind = false;
        let mut stall_logged: Option<Instant> = None;
        loop {
            let step = async {
                match cursor {
                    None => self.start().await.map(|start| {
                        cursor = Some(start);
                    }),
                    Some(after) => {
                        let next = self.follow(after, &mut warned_behind).await?;
                        cursor = Some(next);
                        Ok(())
                    }
                }
            };
            let result = tokio::select! {
                _ = shutdown.cancelled() => break,
                result = step => result,
            };
            match result {
                Ok(()) => {
                    backoff.reset();
                    if let Some(reason) = self.status.clear_stalled() {
                        stall_logged = None;
                        info!(
                            was = %reason,
                            streamed_height = cursor,
                            "the unusable row is readable again; streaming resumes"
                        );
                    }
                }
                Err(SourceError::UnusableRow {
                    space,
                    key,
                    problem,
                }) => {
                    self.on_unusable_row(&space, &key, &problem, cursor, &mut stall_logged);
                    let delay = backoff.next_delay();
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Err(err) => {
                    self.on_error(&err, cursor);
                    let delay = backoff.next_delay();
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        info!(streamed_height = cursor, "ingest stopped");
    }

    /// Finds the starting cursor: the committed head (0 when the source is empty, so that
    /// Planetmint's genesis row at height 0 is never streamed).
    async fn start(&self) -> Result<u64, SourceError> {
        let bounds = self.source.bounds().await?;
        let start = bounds.map_or(0, |b| b.highest);
        self.status.mark_reachable(start);
        self.status.mark_started(start);
        self.sink.start_after(start);
        info!(
            start_after = start,
            "ingest started; streaming blocks committed from now on"
        );
        Ok(start)
    }

    /// One read after `after`; returns the new cursor.
    async fn follow(&self, after: u64, warned_behind: &mut bool) -> Result<u64, SourceError> {
        let batch = self
            .source
            .next_blocks(after, self.config.batch_blocks, self.config.long_poll)
            .await?;
        if self.status.mark_reachable(batch.head.max(after)) && self.status.is_started() {
            self.status.source_reconnects.inc();
            info!(
                resume_after = after,
                head = batch.head,
                "Tarantool is back; streaming continues from the cursor"
            );
        }
        if batch.head < after && batch.blocks.is_empty() && !*warned_behind {
            *warned_behind = true;
            warn!(
                head = batch.head,
                cursor = after,
                "Tarantool's head is below the last streamed height; waiting for blocks above the cursor (was the database reset?)"
            );
        }
        let mut cursor = after;
        for block in batch.blocks {
            if block.height <= cursor {
                // The source must return heights above the cursor in order; anything else
                // would be a duplicate or a reordering, so it is never published.
                error!(
                    height = block.height,
                    cursor, "source returned a block at or below the cursor; skipped"
                );
                continue;
            }
            let span = info_span!(
                "block",
                height = block.height,
                transactions = block.transactions.len()
            );
            async {
                debug!("publishing");
            }
            .instrument(span)
            .await;
            cursor = block.height;
            self.status.blocks_ingested.inc();
            self.status
                .transactions_ingested
                .inc_by(block.transactions.len() as u64);
            self.sink.publish(Arc::new(block));
            self.status
                .streamed_height
                .set(i64::try_from(cursor).unwrap_or(i64::MAX));
            *warned_behind = false;
        }
        Ok(cursor)
    }

    /// A stored row cannot be used: nothing after it streams (a block is never skipped), `/ready`
    /// says why, a metric counts it, and reading is retried until the row is readable.
    fn on_unusable_row(
        &self,
        space: &str,
        key: &str,
        problem: &str,
        cursor: Option<u64>,
        logged: &mut Option<Instant>,
    ) {
        self.status.mark_failed("unusable_row", false);
        let after = cursor.unwrap_or(0);
        let reason = format!(
            "streaming stopped after height {after}: unusable row in space `{space}`, key {key}: {problem}"
        );
        let previous = self.status.mark_stalled(space, reason.clone());
        // Logged when it starts or changes, then at most every STALL_LOG_INTERVAL.
        let due = previous.as_deref() != Some(reason.as_str())
            || logged.is_none_or(|at| at.elapsed() >= STALL_LOG_INTERVAL);
        if due {
            *logged = Some(Instant::now());
            error!(
                space,
                key,
                problem,
                streamed_height = after,
                "a stored row cannot be used; streaming waits here (nothing is skipped) and resumes once the row is readable"
            );
        }
    }

    fn on_error(&self, err: &SourceError, cursor: Option<u64>) {
        let unreachable = matches!(err, SourceError::Unavailable { .. });
        let first = self.status.mark_failed(err.kind(), unreachable);
        match (first, cursor) {
            (true, Some(cursor)) => warn!(
                error = %err.chain(),
                resume_after = cursor,
                "lost Tarantool; subscribers stay connected, streaming resumes from the cursor when it is back"
            ),
            (true, None) => {
                warn!(error = %err.chain(), "cannot reach Tarantool yet; retrying with backoff")
            }
            (false, _) if !unreachable => {
                error!(error = %err.chain(), kind = err.kind(), "reading blocks failed; retrying with backoff")
            }
            (false, _) => debug!(error = %err.chain(), "Tarantool still unavailable"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_follower_reads_as_the_tarantool_section_says() {
        let tarantool = TarantoolConfig {
            batch_blocks: 7,
            long_poll: Duration::from_millis(1500),
            reconnect_min: Duration::from_millis(250),
            reconnect_max: Duration::from_secs(9),
            ..TarantoolConfig::default()
        };
        let config = FollowerConfig::from(&tarantool);
        assert_eq!(config.batch_blocks, 7);
        assert_eq!(config.long_poll, Duration::from_millis(1500));
        assert_eq!(config.retry_min, Duration::from_millis(250));
        assert_eq!(config.retry_max, Duration::from_secs(9));
    }
}
