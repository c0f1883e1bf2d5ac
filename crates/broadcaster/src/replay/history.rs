//! Shared history: every replaying subscriber reads older blocks through one
//! [`SharedHistory`], so N subscribers resuming from the same height cost about one read of
//! that history from Tarantool and one serialization of each block, not N.
//!
//! History is read in segments: a read "after height A, up to U" returns a [`Segment`] that
//! holds every stored block in `(A, reached]`, already framed ([`PublishedBlock`]). Segments
//! are kept in a cache bounded in bytes (oldest evicted first), and a read that is already in
//! flight is joined, not repeated (one read per `after`). A subscriber at height H takes the
//! cached segment that covers H, or joins or starts the read after H. Segments are complete
//! ranges of committed heights, so whichever subscriber started a read, every subscriber gets
//! each block above its own height exactly once.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared, WeakShared};
use planetmint_streams_model::backoff::Backoff;
use planetmint_streams_model::{BlockSource, HeightBounds, SourceError};
use tokio::time::Instant;
use tracing::warn;

use super::budget::ReadBudget;
use crate::metrics::BroadcastMetrics;
use crate::published::PublishedBlock;

/// How long the stored height range is reused before asking the source again.
const BOUNDS_TTL: Duration = Duration::from_secs(1);
/// First and longest wait between attempts while the source does not answer.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Every stored block in `(after, reached]`, framed.
#[derive(Debug)]
pub struct Segment {
    /// Exclusive lower bound.
    pub after: u64,
    /// Inclusive upper bound: no stored block in `(after, reached]` is missing.
    pub reached: u64,
    /// The blocks, in height order.
    pub blocks: Vec<Arc<PublishedBlock>>,
    /// Approximate memory held.
    bytes: usize,
}

impl Segment {
    /// The blocks above `height`.
    pub fn blocks_after(&self, height: u64) -> &[Arc<PublishedBlock>] {
        let start = self.blocks.partition_point(|b| b.height() <= height);
        &self.blocks[start..]
    }

    fn covers(&self, height: u64) -> bool {
        self.after <= height && height < self.reached
    }
}

type SegmentRead = Shared<BoxFuture<'static, Arc<Segment>>>;

#[derive(Default)]
struct Cache {
    /// Segments by `after`.
    segments: BTreeMap<u64, Arc<Segment>>,
    /// `after` of each cached segment, oldest first (eviction order).
    order: VecDeque<u64>,
    bytes: usize,
    /// Reads in flight by `after`; weak, so a read nobody waits for any more is dropped.
    reads: HashMap<u64, WeakShared<BoxFuture<'static, Arc<Segment>>>>,
}

impl Cache {
    fn covering(&self, height: u64) -> Option<Arc<Segment>> {
        self.segments
            .range(..=height)
            .rev()
            .map(|(_, s)| s)
            .find(|s| s.covers(height))
            .cloned()
    }

    fn insert(&mut self, segment: Arc<Segment>, capacity: usize) {
        if segment.bytes > capacity || self.segments.contains_key(&segment.after) {
            return;
        }
        self.bytes += segment.bytes;
        self.order.push_back(segment.after);
        self.segments.insert(segment.after, segment);
        while self.bytes > capacity {
            let Some(after) = self.order.pop_front() else {
                break;
            };
            if let Some(evicted) = self.segments.remove(&after) {
                self.bytes -= evicted.bytes;
            }
        }
    }
}

/// Runs `attempt` until the source answers, with backoff; the subscribers waiting for it stay
/// connected (and pinged) meanwhile. Failures are counted; the first is logged.
async fn until_answered<T, F, Fut>(metrics: &BroadcastMetrics, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SourceError>>,
{
    let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
    let mut logged = false;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(err) => {
                metrics
                    .replay_source_errors
                    .with_label_values(&[err.kind()])
                    .inc();
                if !logged {
                    warn!(error = %err.chain(), "replay waits for the source");
                    logged = true;
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// What a read needs, shared with the futures that make it.
struct Reader {
    source: Arc<dyn BlockSource>,
    budget: Arc<ReadBudget>,
    metrics: BroadcastMetrics,
    batch_blocks: usize,
    capacity: usize,
    cache: Mutex<Cache>,
}

impl Reader {
    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads `(after, upto]` (at most a batch), waiting out source outages with backoff.
    async fn read(self: Arc<Self>, after: u64, upto: u64) -> Arc<Segment> {
        let blocks = until_answered(&self.metrics, || async {
            // A failed read gives its turn back at once (the turn drops uncharged).
            let turn = self.budget.read_turn().await;
            let blocks = self
                .source
                .blocks_between(after, upto, self.batch_blocks)
                .await?;
            turn.charge(blocks.iter().map(|b| b.transactions.len()).sum());
            Ok(blocks)
        })
        .await;
        self.metrics.replay_source_reads.inc();
        self.metrics
            .replay_source_blocks
            .inc_by(blocks.len() as u64);
        // Nothing returned: nothing is stored in (after, upto].
        let reached = blocks.last().map_or(upto, |b| b.height);
        let blocks: Vec<Arc<PublishedBlock>> = blocks
            .into_iter()
            .map(|b| Arc::new(PublishedBlock::new(Arc::new(b))))
            .collect();
        let bytes = blocks.iter().map(|b| b.memory_bytes()).sum();
        let segment = Arc::new(Segment {
            after,
            reached,
            blocks,
            bytes,
        });
        let mut cache = self.cache();
        cache.reads.remove(&after);
        cache.insert(segment.clone(), self.capacity);
        self.metrics
            .replay_cache_bytes
            .set(i64::try_from(cache.bytes).unwrap_or(i64::MAX));
        segment
    }
}

/// The history every replay of a stream server reads through.
pub struct SharedHistory {
    reader: Arc<Reader>,
    bounds: tokio::sync::Mutex<Option<(Instant, Option<HeightBounds>)>>,
}

impl std::fmt::Debug for SharedHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedHistory")
            .field("capacity", &self.reader.capacity)
            .finish()
    }
}

impl SharedHistory {
    /// History from `source`, `batch_blocks` per read, caching up to `capacity` bytes.
    pub fn new(
        source: Arc<dyn BlockSource>,
        budget: Arc<ReadBudget>,
        metrics: BroadcastMetrics,
        batch_blocks: usize,
        capacity: usize,
    ) -> Self {
        Self {
            reader: Arc::new(Reader {
                source,
                budget,
                metrics,
                batch_blocks: batch_blocks.max(1),
                capacity,
                cache: Mutex::new(Cache::default()),
            }),
            bounds: tokio::sync::Mutex::new(None),
        }
    }

    /// The segment covering `after` (stored blocks above it, up to at most `upto` read anew),
    /// from the cache, a read in flight, or a new read.
    pub async fn segment_after(&self, after: u64, upto: u64) -> Arc<Segment> {
        let read: SegmentRead = {
            let mut cache = self.reader.cache();
            if let Some(segment) = cache.covering(after) {
                self.reader.metrics.replay_cache_hits.inc();
                return segment;
            }
            match cache.reads.get(&after).and_then(WeakShared::upgrade) {
                Some(read) => {
                    self.reader.metrics.replay_cache_hits.inc();
                    read
                }
                None => {
                    let read = self.reader.clone().read(after, upto).boxed().shared();
                    if let Some(weak) = read.downgrade() {
                        cache.reads.insert(after, weak);
                    }
                    read
                }
            }
        };
        read.await
    }

    /// The stored height range (reused for a second, so a herd of resumes asks once).
    pub async fn bounds(&self) -> Option<HeightBounds> {
        let mut cached = self.bounds.lock().await;
        if let Some((at, bounds)) = *cached {
            if at.elapsed() < BOUNDS_TTL {
                return bounds;
            }
        }
        let bounds = until_answered(&self.reader.metrics, || self.reader.source.bounds()).await;
        *cached = Some((Instant::now(), bounds));
        bounds
    }

    /// Bytes the cache holds.
    pub fn cached_bytes(&self) -> usize {
        self.reader.cache().bytes
    }
}
