//! Replay logic on an in-memory source with tokio's paused time: the seam between history and
//! live, shared history reads, the read budget and source outages, checked in milliseconds
//! without Tarantool or sockets. (The end-to-end tests prove the same against the real thing.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_trait::async_trait;
use planetmint_streams_broadcaster::hub::{Hub, Selection};
use planetmint_streams_broadcaster::queue::{QueueLimits, SubscriberQueue};
use planetmint_streams_broadcaster::replay::{BudgetLimits, ReplayError, ReplaySettings, Replayer};
use planetmint_streams_broadcaster::subscription::{Filter, Framing, Payload, StreamKind};
use planetmint_streams_broadcaster::BroadcastMetrics;
use planetmint_streams_ingest::MemorySource;
use planetmint_streams_model::block::AssetIdsEntry;
use planetmint_streams_model::{
    BlockBatch, BlockSink, BlockSource, CommittedBlock, CommittedTransaction, HeightBounds,
    SourceError,
};

/// A source that counts what replays ask of it.
struct CountingSource {
    inner: MemorySource,
    reads: AtomicUsize,
    blocks_read: AtomicUsize,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

impl CountingSource {
    fn with_blocks(heights: impl IntoIterator<Item = u64>) -> Arc<Self> {
        let inner = MemorySource::new();
        for height in heights {
            inner.commit(block(height));
        }
        Arc::new(Self {
            inner,
            reads: AtomicUsize::new(0),
            blocks_read: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
        })
    }

    /// Commits a block to the source and hands it to the hub, as the ingest would.
    fn commit_and_publish(&self, hub: &Hub, height: u64) {
        self.inner.commit(block(height));
        hub.publish(Arc::new(block(height)));
    }
}

#[async_trait]
impl BlockSource for CountingSource {
    async fn next_blocks(
        &self,
        after: u64,
        max_blocks: usize,
        wait: Duration,
    ) -> Result<BlockBatch, SourceError> {
        self.inner.next_blocks(after, max_blocks, wait).await
    }

    async fn blocks_between(
        &self,
        after: u64,
        upto: u64,
        max_blocks: usize,
    ) -> Result<Vec<CommittedBlock>, SourceError> {
        // A read takes a little time, as a real one does, so concurrent replays overlap.
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.most_in_flight.fetch_max(now, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let blocks = self.inner.blocks_between(after, upto, max_blocks).await?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.blocks_read.fetch_add(blocks.len(), Ordering::Relaxed);
        Ok(blocks)
    }

    async fn bounds(&self) -> Result<Option<HeightBounds>, SourceError> {
        self.inner.bounds().await
    }
}

/// Heights are sparse on purpose (every third height is missing): reads are "after", never
/// "at" a height.
fn stored(upto: u64) -> impl Iterator<Item = u64> {
    (1..=upto).filter(|h| h % 3 != 0)
}

fn block(height: u64) -> CommittedBlock {
    let tx = |i: u64| CommittedTransaction {
        id: format!("{:064x}", height * 10 + i),
        operation: "CREATE".into(),
        asset_id: format!("{:064x}", height * 10 + i),
        asset_ids: vec![AssetIdsEntry::Id(format!("{:064x}", height * 10 + i))],
        output_public_keys: vec![format!("key{}", height % 5)],
        input_owners: vec![],
    };
    CommittedBlock {
        height,
        hash: format!("{height:064X}"),
        transactions: vec![tx(0), tx(1)],
        chain_start: false,
        rows: None,
        committed_at: None,
    }
}

fn settings(budget: BudgetLimits) -> ReplaySettings {
    ReplaySettings {
        batch_blocks: 7,
        cache_bytes: 8 << 20,
        budget,
    }
}

fn unlimited() -> BudgetLimits {
    BudgetLimits {
        reads_in_flight: 1,
        transactions_per_second: 0,
        max_concurrent_replays: 1000,
    }
}

fn queue() -> Arc<SubscriberQueue> {
    Arc::new(SubscriberQueue::new(QueueLimits {
        max_blocks: 100_000,
        max_bytes: usize::MAX,
    }))
}

fn blocks_selection() -> Arc<Selection> {
    Arc::new(Selection {
        stream: StreamKind::ValidBlocks,
        filter: Filter::default(),
        framing: Framing::PerEvent,
        payload: Payload::Event,
        key: 0,
        envelope: None,
    })
}

/// Heights queued so far, taken out of the queue.
fn drain(queue: &SubscriberQueue) -> Vec<u64> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    while let Poll::Ready(block) = queue.poll_next(&mut cx) {
        out.push(block.height);
    }
    out
}

/// A hub whose ring holds only the last 4 blocks, started at `head`.
fn hub_at(head: u64) -> Arc<Hub> {
    let hub = Arc::new(Hub::new(
        4,
        BroadcastMetrics::unregistered().expect("metrics"),
    ));
    hub.start_after(head);
    hub
}

#[tokio::test(start_paused = true)]
async fn a_herd_resuming_from_the_same_height_reads_history_about_once_and_misses_nothing() {
    let source = CountingSource::with_blocks(stored(600));
    let hub = hub_at(600);
    let replayer = Arc::new(Replayer::new(
        hub.clone(),
        source.clone(),
        settings(unlimited()),
    ));
    let selection = blocks_selection();
    let mut herd = Vec::new();
    for i in 0..100u64 {
        let queue = queue();
        let task = tokio::spawn({
            let (replayer, queue, selection) = (replayer.clone(), queue.clone(), selection.clone());
            // Some resume from 0, some from a height in the middle of a segment.
            let from = if i % 4 == 0 { 5 } else { 0 };
            async move { (from, replayer.attach(&queue, &selection, Some(from)).await) }
        });
        herd.push((queue, task));
    }
    // Live blocks arrive while the herd replays (and the 4-block ring moves on).
    for height in 601..=610 {
        tokio::time::sleep(Duration::from_millis(3)).await;
        source.commit_and_publish(&hub, height);
    }
    let stored_count = stored(610).count();
    let mut attached = Vec::new();
    for (queue, task) in herd {
        let (from, result) = task.await.expect("replay task");
        result.expect("attached");
        attached.push((from, queue));
    }
    source.commit_and_publish(&hub, 611);
    for (from, queue) in attached {
        let got = drain(&queue);
        let expected: Vec<u64> = stored(600).chain(601..=611).filter(|h| *h > from).collect();
        assert_eq!(got, expected, "resumed from {from}");
    }
    let read = source.blocks_read.load(Ordering::Relaxed);
    assert!(
        read <= stored_count + 4 * 7,
        "100 replays read {read} blocks of {stored_count} stored: history is shared"
    );
}

#[tokio::test(start_paused = true)]
async fn replays_wait_out_a_source_outage_and_resume_without_loss() {
    let source = Arc::new(MemorySource::new());
    for height in stored(100) {
        source.commit(block(height));
    }
    let hub = hub_at(100);
    let replayer = Arc::new(Replayer::new(
        hub.clone(),
        source.clone(),
        settings(unlimited()),
    ));
    source.set_unavailable(true);
    let queue = queue();
    let task = tokio::spawn({
        let (replayer, queue, selection) = (replayer.clone(), queue.clone(), blocks_selection());
        async move { replayer.attach(&queue, &selection, Some(10)).await }
    });
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!task.is_finished(), "the replay waits for the source");
    assert!(drain(&queue).is_empty());
    source.set_unavailable(false);
    task.await
        .expect("task")
        .expect("attached once the source is back");
    hub.publish(Arc::new(block(101)));
    let expected: Vec<u64> = stored(100).filter(|h| *h > 10).chain([101]).collect();
    assert_eq!(drain(&queue), expected);
}

#[tokio::test(start_paused = true)]
async fn a_height_below_the_stored_history_is_refused_with_the_lowest_height() {
    let source = Arc::new(MemorySource::new());
    for height in 50..=80 {
        source.commit(block(height));
    }
    let hub = hub_at(80);
    let replayer = Replayer::new(hub, source, settings(unlimited()));
    let err = replayer
        .attach(&queue(), &blocks_selection(), Some(10))
        .await
        .err();
    assert_eq!(err, Some(ReplayError::HistoryUnavailable { lowest: 50 }));
}

#[tokio::test(start_paused = true)]
async fn the_read_budget_paces_replays_from_the_source() {
    // 300 stored blocks of 2 transactions at 100 transactions per second: about 5 s (the
    // first second's burst is free).
    let source = CountingSource::with_blocks(1..=300);
    let hub = hub_at(300);
    let budget = BudgetLimits {
        reads_in_flight: 1,
        transactions_per_second: 100,
        max_concurrent_replays: 10,
    };
    let replayer = Replayer::new(hub.clone(), source.clone(), settings(budget));
    let queue = queue();
    let start = tokio::time::Instant::now();
    replayer
        .attach(&queue, &blocks_selection(), Some(0))
        .await
        .expect("attached");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took <= Duration::from_secs(8),
        "600 transactions at 100/s took {took:?}"
    );
    assert_eq!(drain(&queue), (1..=300).collect::<Vec<_>>());
    let waits = hub
        .metrics()
        .replay_waits
        .with_label_values(&["read_rate"])
        .get();
    assert!(waits > 0, "waits are counted");
}

#[tokio::test(start_paused = true)]
async fn replays_beyond_the_concurrency_limit_wait_and_then_complete() {
    let source = CountingSource::with_blocks(1..=100);
    let hub = hub_at(100);
    let budget = BudgetLimits {
        reads_in_flight: 1,
        transactions_per_second: 0,
        max_concurrent_replays: 2,
    };
    let replayer = Arc::new(Replayer::new(hub.clone(), source, settings(budget)));
    let mut tasks = Vec::new();
    for from in [0u64, 20, 40, 60, 80] {
        let queue = queue();
        let task = tokio::spawn({
            let (replayer, queue, selection) =
                (replayer.clone(), queue.clone(), blocks_selection());
            async move { replayer.attach(&queue, &selection, Some(from)).await }
        });
        tasks.push((from, queue, task));
    }
    for (from, queue, task) in tasks {
        task.await.expect("task").expect("attached");
        assert_eq!(drain(&queue), ((from + 1)..=100).collect::<Vec<_>>());
    }
    let waits = hub
        .metrics()
        .replay_waits
        .with_label_values(&["concurrent_replays"])
        .get();
    assert!(
        waits >= 1,
        "at least one replay waited for a turn ({waits})"
    );
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_without_from_height_gets_only_new_blocks() {
    let source = CountingSource::with_blocks(1..=10);
    let hub = hub_at(10);
    let replayer = Replayer::new(hub.clone(), source.clone(), settings(unlimited()));
    let queue = queue();
    replayer
        .attach(&queue, &blocks_selection(), None)
        .await
        .expect("attached");
    hub.publish(Arc::new(block(11)));
    assert_eq!(drain(&queue), vec![11]);
    assert_eq!(source.reads.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn a_live_subscriber_attached_late_gets_every_block_after_its_handshake() {
    let source = CountingSource::with_blocks(1..=10);
    let hub = hub_at(10);
    let replayer = Replayer::new(hub.clone(), source.clone(), settings(unlimited()));
    let queue = queue();
    // The handshake was answered at height 10; blocks 11 and 12 are published before the
    // session's task gets to attach (a busy machine).
    let connected_after = hub.last_published();
    source.commit_and_publish(&hub, 11);
    source.commit_and_publish(&hub, 12);
    replayer
        .attach_live_since(&queue, &blocks_selection(), connected_after)
        .await
        .expect("attached");
    source.commit_and_publish(&hub, 13);
    assert_eq!(drain(&queue), vec![11, 12, 13]);
    assert_eq!(source.reads.load(Ordering::Relaxed), 0, "from memory");
    let requests = hub
        .metrics()
        .replay_requests
        .with_label_values(&["valid_blocks"])
        .get();
    assert_eq!(requests, 0, "not counted as a replay");
}

#[tokio::test(start_paused = true)]
async fn one_replay_reads_the_next_segment_while_this_one_is_read() {
    // Segments are fixed ranges of heights, so a replay asks for the next one before the
    // current one has arrived: with two reads allowed at the source, one replay uses both,
    // and with one it never exceeds it.
    for allowed in [1, 2] {
        let source = CountingSource::with_blocks(1..=200);
        let hub = hub_at(200);
        let budget = BudgetLimits {
            reads_in_flight: allowed,
            ..unlimited()
        };
        let replayer = Replayer::new(hub.clone(), source.clone(), settings(budget));
        let queue = queue();
        replayer
            .attach(&queue, &blocks_selection(), Some(0))
            .await
            .expect("attached");
        assert_eq!(drain(&queue), (1..=200).collect::<Vec<_>>());
        assert_eq!(
            source.most_in_flight.load(Ordering::Relaxed),
            allowed,
            "reads at the source at once with {allowed} allowed"
        );
        assert_eq!(
            source.blocks_read.load(Ordering::Relaxed),
            200,
            "every stored block read once"
        );
    }
}
