//! Shared history: every replaying subscriber reads older blocks through one
//! [`SharedHistory`], so N subscribers resuming from the same height cost about one read of
//! that history from Tarantool and one serialization of each block, not N.
//!
//! History is read in segments: a segment is a range of heights `(after, reached]`, fixed
//! when its read starts (`reached` is at most `batch_blocks` heights above `after`), and once
//! read it holds every stored block of that range, already framed ([`PublishedBlock`]). Since
//! a segment's end is known before it is read, a replay starts reading the next segment while
//! this one is still being read, decoded and queued, so Tarantool and the node work at the same
//! time instead of in turns.
//!
//! Segments are kept in a cache bounded in bytes (oldest evicted first), and a read already in
//! flight is joined, not repeated. A subscriber at height H takes the cached segment or the read
//! in flight that covers H, or starts the read after H. Segments are complete ranges of
//! committed heights, so whichever subscriber started a read, every subscriber gets each block
//! above its own height exactly once.

use std::collections::{BTreeMap, VecDeque};
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

/// A segment's read, shared by every replay that waits for it.
pub type SegmentRead = Shared<BoxFuture<'static, Arc<Segment>>>;

#[derive(Default)]
struct Cache {
    /// Segments by `after`.
    segments: BTreeMap<u64, Arc<Segment>>,
    /// `after` of each cached segment, oldest first (eviction order).
    order: VecDeque<u64>,
    bytes: usize,
    /// Reads in flight by `after`, with the end of their range; weak, so a read nobody waits
    /// for any more is dropped.
    reads: BTreeMap<u64, ReadInFlight>,
}

struct ReadInFlight {
    reached: u64,
    read: WeakShared<BoxFuture<'static, Arc<Segment>>>,
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

    /// The read in flight whose range covers `height`, with its end.
    fn reading(&mut self, height: u64) -> Option<PendingSegment> {
        // Reads whose waiters are all gone are forgotten on the way.
        self.reads.retain(|_, r| r.read.upgrade().is_some());
        self.reads
            .range(..=height)
            .rev()
            .find(|(_, r)| height < r.reached)
            .and_then(|(_, r)| {
                Some(PendingSegment {
                    reached: r.reached,
                    read: r.read.upgrade()?,
                })
            })
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

    /// Reads every stored block in `(after, reached]`, waiting out source outages with
    /// backoff. The source may answer with part of the range (it bounds the transactions of
    /// one answer), so the rest is asked for until the range is complete.
    async fn read(self: Arc<Self>, after: u64, reached: u64) -> Arc<Segment> {
        let mut blocks = Vec::new();
        let mut from = after;
        while from < reached {
            let part = until_answered(&self.metrics, || async {
                // A failed read gives its turn back at once (the turn drops uncharged). The
                // turn ends once the source has answered: decoding is the node's work, and
                // meanwhile the source can serve the next read.
                let turn = self.budget.read_turn().await;
                let fetched = self
                    .source
                    .fetch_between(from, reached, self.batch_blocks)
                    .await?;
                let settle = turn.answered();
                let part = fetched.decode()?;
                settle.charge(part.iter().map(|b| b.transactions.len()).sum());
                Ok(part)
            })
            .await;
            self.metrics.replay_source_reads.inc();
            self.metrics.replay_source_blocks.inc_by(part.len() as u64);
            // Nothing returned: nothing is stored in (from, reached].
            let Some(last) = part.last().map(|b| b.height) else {
                break;
            };
            from = last;
            blocks.extend(part.into_iter().map(|b| {
                Arc::new(
                    PublishedBlock::new(Arc::new(b))
                        .counting_unrebuildable(self.metrics.transactions_unrebuildable.clone()),
                )
            }));
        }
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

/// A segment whose range is known and whose blocks may still be being read: `reached` is
/// where the next segment starts, so its read can begin before this one is done.
#[derive(Clone)]
pub struct PendingSegment {
    /// Inclusive upper bound of the segment's range.
    pub reached: u64,
    read: SegmentRead,
}

impl PendingSegment {
    /// The segment, once read (reading it if nobody else drives the read).
    pub fn blocks(&self) -> SegmentRead {
        self.read.clone()
    }
}

impl std::fmt::Debug for PendingSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSegment")
            .field("reached", &self.reached)
            .finish()
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

    /// The segment covering `after`, from the cache, a read in flight, or a new read of at
    /// most `batch_blocks` heights above `after` (and not above `upto`). Not awaited: the
    /// read makes progress while the returned segment's `blocks()` is polled.
    pub fn segment_after(&self, after: u64, upto: u64) -> PendingSegment {
        let mut cache = self.reader.cache();
        if let Some(segment) = cache.covering(after) {
            self.reader.metrics.replay_cache_hits.inc();
            return PendingSegment {
                reached: segment.reached,
                read: futures_util::future::ready(segment).boxed().shared(),
            };
        }
        if let Some(pending) = cache.reading(after) {
            self.reader.metrics.replay_cache_hits.inc();
            return pending;
        }
        let reached = upto.min(after.saturating_add(self.reader.batch_blocks as u64));
        let read = self.reader.clone().read(after, reached).boxed().shared();
        if let Some(weak) = read.downgrade() {
            cache.reads.insert(
                after,
                ReadInFlight {
                    reached,
                    read: weak,
                },
            );
        }
        PendingSegment { reached, read }
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
