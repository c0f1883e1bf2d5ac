//! The follower on an in-memory source with tokio's paused time: where it starts, that every
//! block is handed on once and in height order (heights need not be contiguous), and that an
//! outage of the source is waited out and followed from the cursor. Checked in milliseconds;
//! the end-to-end tests prove the same against a real Tarantool.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use planetmint_streams_ingest::{Follower, FollowerConfig, IngestStatus, MemorySource};
use planetmint_streams_model::{BlockSink, CommittedBlock};
use tokio_util::sync::CancellationToken;

/// Records what the follower hands on.
#[derive(Default)]
struct RecordingSink {
    starts: Mutex<Vec<u64>>,
    published: Mutex<Vec<u64>>,
    changed: tokio::sync::Notify,
}

impl BlockSink for RecordingSink {
    fn start_after(&self, height: u64) {
        self.starts.lock().expect("lock").push(height);
        self.changed.notify_waiters();
    }

    fn publish(&self, block: Arc<CommittedBlock>) {
        self.published.lock().expect("lock").push(block.height);
        self.changed.notify_waiters();
    }
}

impl RecordingSink {
    fn published(&self) -> Vec<u64> {
        self.published.lock().expect("lock").clone()
    }

    /// Waits (in paused time: instantly, unless nothing would ever come) until `check` holds.
    async fn wait_until(&self, check: impl Fn(&Self) -> bool) {
        tokio::time::timeout(Duration::from_secs(600), async {
            loop {
                let changed = self.changed.notified();
                if check(self) {
                    return;
                }
                changed.await;
            }
        })
        .await
        .expect("the follower got there");
    }
}

fn block(height: u64) -> CommittedBlock {
    CommittedBlock {
        height,
        hash: format!("{height:064X}"),
        transactions: Vec::new(),
        chain_start: false,
        rows: None,
        committed_at: None,
    }
}

struct Running {
    source: Arc<MemorySource>,
    sink: Arc<RecordingSink>,
    status: Arc<IngestStatus>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn follow(source: Arc<MemorySource>) -> Running {
    let sink = Arc::new(RecordingSink::default());
    let status = Arc::new(IngestStatus::unregistered().expect("metrics"));
    let config = FollowerConfig {
        batch_blocks: 3,
        long_poll: Duration::from_millis(500),
        retry_min: Duration::from_millis(100),
        retry_max: Duration::from_secs(2),
    };
    let follower = Follower::new(source.clone(), sink.clone(), status.clone(), config);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(follower.run(shutdown.clone()));
    Running {
        source,
        sink,
        status,
        shutdown,
        task,
    }
}

#[tokio::test(start_paused = true)]
async fn starts_at_the_head_and_hands_on_every_later_block_once_in_order() {
    let source = Arc::new(MemorySource::new());
    for height in [0, 1, 2, 5] {
        source.commit(block(height));
    }
    let run = follow(source);
    run.sink
        .wait_until(|s| !s.starts.lock().expect("lock").is_empty())
        .await;
    assert_eq!(*run.sink.starts.lock().expect("lock"), vec![5]);
    // Sparse heights, several per read (batch of 3), committed while the follower waits.
    let later = [6, 9, 10, 11, 12, 20, 21];
    for height in later {
        run.source.commit(block(height));
    }
    run.sink
        .wait_until(|s| s.published().len() == later.len())
        .await;
    assert_eq!(run.sink.published(), later.to_vec());
    assert!(run.status.is_started() && run.status.is_reachable());
    run.shutdown.cancel();
    run.task.await.expect("follower stops on shutdown");
}

#[tokio::test(start_paused = true)]
async fn an_empty_source_starts_after_zero_so_the_genesis_row_is_never_streamed() {
    let run = follow(Arc::new(MemorySource::new()));
    run.sink
        .wait_until(|s| !s.starts.lock().expect("lock").is_empty())
        .await;
    assert_eq!(*run.sink.starts.lock().expect("lock"), vec![0]);
    run.source.commit(block(0));
    run.source.commit(block(1));
    run.sink.wait_until(|s| !s.published().is_empty()).await;
    assert_eq!(run.sink.published(), vec![1]);
    run.shutdown.cancel();
    run.task.await.expect("stopped");
}

#[tokio::test(start_paused = true)]
async fn an_outage_is_waited_out_and_following_resumes_from_the_cursor() {
    let source = Arc::new(MemorySource::new());
    source.commit(block(1));
    let run = follow(source);
    run.sink
        .wait_until(|s| !s.starts.lock().expect("lock").is_empty())
        .await;
    run.source.commit(block(2));
    run.sink.wait_until(|s| s.published() == vec![2]).await;

    run.source.set_unavailable(true);
    // Blocks are committed while the follower cannot read them.
    run.source.commit(block(3));
    run.source.commit(block(4));
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(!run.status.is_reachable(), "the outage is visible");
    assert_eq!(
        run.sink.published(),
        vec![2],
        "nothing is read during the outage"
    );

    run.source.set_unavailable(false);
    run.source.commit(block(7));
    run.sink.wait_until(|s| s.published().len() == 4).await;
    assert_eq!(run.sink.published(), vec![2, 3, 4, 7]);
    assert!(run.status.is_reachable());
    // Started once: the cursor carried through the outage.
    assert_eq!(*run.sink.starts.lock().expect("lock"), vec![1]);
    run.shutdown.cancel();
    run.task.await.expect("stopped");
}

#[tokio::test(start_paused = true)]
async fn a_source_unreachable_at_start_is_retried_with_backoff_until_it_answers() {
    let source = Arc::new(MemorySource::new());
    source.commit(block(8));
    source.set_unavailable(true);
    let run = follow(source);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(run.sink.starts.lock().expect("lock").is_empty());
    assert!(!run.status.is_started());
    run.source.set_unavailable(false);
    run.sink
        .wait_until(|s| !s.starts.lock().expect("lock").is_empty())
        .await;
    assert_eq!(*run.sink.starts.lock().expect("lock"), vec![8]);
    run.shutdown.cancel();
    run.task.await.expect("stopped");
}
