//! Blocks for the node to stream: Planetmint-shaped chains and the events they must give,
//! committed either to the in-memory source or to a real Tarantool ([`Store`]), in the
//! foreground ([`ChainWriter`]) or the background ([`spawn_writer`], [`Bystander`]).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use planetmint_streams_devchain::fixtures::Planetmint253;
use planetmint_streams_devchain::generate::{ChainGenerator, GeneratedBlock};
use planetmint_streams_devchain::writer::PlanetmintWriter;
use planetmint_streams_ingest::MemorySource;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::clients::http::http_get;
use super::clients::url_stream::UrlStream;
use super::metrics::metric;
use super::node::NodeUnderTest;

/// How long a write to Tarantool may keep failing (while it restarts) before the test fails.
const WRITE_GIVE_UP: Duration = Duration::from_secs(30);

/// How many blocks [`write_until_metric`] may commit ahead of the subscriber it paces itself to.
pub const PACE_SLACK_BLOCKS: u64 = 2;

/// How long [`write_until_metric`] waits for that subscriber to get a block's events.
const PACE_WITHIN: Duration = Duration::from_secs(30);

/// How long a bystander waits for the events committed before it was told to stop.
const DRAIN_WITHIN: Duration = Duration::from_secs(30);

/// `blocks` Planetmint-shaped blocks of `txs` transactions from height `first`.
pub fn chain(seed: u64, first: u64, blocks: usize, txs: usize) -> Vec<GeneratedBlock> {
    let mut generator = ChainGenerator::new(seed, first, 8);
    (0..blocks).map(|_| generator.block(txs)).collect()
}

/// The stream events a list of generated blocks must produce, in order.
pub fn expected_events(blocks: &[GeneratedBlock]) -> Vec<Value> {
    blocks
        .iter()
        .flat_map(|b| {
            b.transactions.iter().map(move |tx| {
                serde_json::json!({
                    "transaction_id": tx.id,
                    "asset_id": tx.asset_id,
                    "asset_ids": tx.asset_ids,
                    "height": b.height,
                })
            })
        })
        .collect()
}

/// Where a node's blocks are committed.
#[derive(Clone)]
pub enum Store {
    /// The in-memory source the node reads.
    Memory(Arc<MemorySource>),
    /// The Tarantool at this address.
    Tarantool(String),
}

impl Store {
    /// A writer for this store (connected, for Tarantool).
    pub async fn writer(&self) -> ChainWriter {
        match self {
            Store::Memory(source) => ChainWriter::Memory(source.clone()),
            Store::Tarantool(address) => ChainWriter::Tarantool {
                writer: PlanetmintWriter::connect(address)
                    .await
                    .expect("writer connects"),
                address: address.clone(),
            },
        }
    }
}

/// Commits blocks as Planetmint does: Planetmint's rows, the block row last.
pub enum ChainWriter {
    /// Into an in-memory source (the rows are assembled as the Tarantool source does).
    Memory(Arc<MemorySource>),
    /// Into a Tarantool, surviving its restarts.
    Tarantool {
        /// The connection.
        writer: PlanetmintWriter,
        /// Where to connect again.
        address: String,
    },
}

impl ChainWriter {
    /// Commits a generated block.
    pub async fn write(&mut self, block: &GeneratedBlock) {
        match self {
            ChainWriter::Memory(source) => {
                source.commit_rows(&block.rows()).expect("committed");
            }
            ChainWriter::Tarantool { writer, address } => writer
                .write_block_retrying(address, block, WRITE_GIVE_UP)
                .await
                .expect("written"),
        }
    }

    /// Commits the fixture block at `height`, as Planetmint 2.5.3 wrote it.
    pub async fn write_fixture(&mut self, fixtures: &Planetmint253, height: u64) {
        match self {
            ChainWriter::Memory(source) => {
                let rows = fixtures.block_rows(height).expect("a fixture block");
                source.commit_rows(&rows).expect("committed");
            }
            ChainWriter::Tarantool { writer, .. } => {
                fixtures.write_block(writer, height).await.expect("written")
            }
        }
    }

    /// Commits every fixture block, in height order.
    pub async fn write_fixtures(&mut self, fixtures: &Planetmint253) {
        for height in fixtures.heights() {
            self.write_fixture(fixtures, height).await;
        }
    }
}

/// Commits `blocks` one after another into `store`, `pause` apart, publishing the last height
/// committed.
pub fn spawn_writer(
    store: Store,
    blocks: Vec<GeneratedBlock>,
    pause: Duration,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::watch::Receiver<u64>,
) {
    let (progress, watch) = tokio::sync::watch::channel(0u64);
    let task = tokio::spawn(async move {
        let mut writer = store.writer().await;
        for block in &blocks {
            writer.write(block).await;
            let _ = progress.send(block.height);
            tokio::time::sleep(pause).await;
        }
    });
    (task, watch)
}

/// Commits `blocks` in order to the node's source, reading `/metrics` after every tenth,
/// until the counter `name{labels}` reaches `at_least`; returns how many blocks were written
/// (all of them when it never did).
///
/// With `follower` (the highest height a subscriber that reads everything has received), the
/// chain goes at a pace that subscriber can follow: a block is committed once it has received
/// the one [`PACE_SLACK_BLOCKS`] + 1 below; the test fails if it gets nothing new for
/// [`PACE_WITHIN`].
pub async fn write_until_metric(
    harness: &impl NodeUnderTest,
    blocks: &[GeneratedBlock],
    name: &str,
    labels: &str,
    at_least: f64,
    mut follower: Option<&mut tokio::sync::watch::Receiver<u64>>,
) -> usize {
    let api = harness.node().api_addr.to_string();
    let mut writer = harness.writer().await;
    for (written, block) in (1usize..).zip(blocks) {
        if let Some(follower) = follower.as_deref_mut() {
            let want = block.height.saturating_sub(PACE_SLACK_BLOCKS + 1);
            tokio::time::timeout(PACE_WITHIN, follower.wait_for(|got| *got >= want))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "the reading subscriber got nothing new for {PACE_WITHIN:?} (it should \
                         have block {want} before block {} is committed)",
                        block.height
                    )
                })
                .expect("the reading subscriber is running");
        }
        writer.write(block).await;
        if written.is_multiple_of(10) {
            let (_, text) = http_get(&api, "/metrics").await;
            if metric(&text, name, labels) >= at_least {
                return written;
            }
        }
    }
    blocks.len()
}

/// A well-behaved subscriber and a steady writer, running while a test does something hostile;
/// `finish` checks the subscriber received every committed event, in order.
pub struct Bystander {
    writer: tokio::task::JoinHandle<Vec<GeneratedBlock>>,
    reader: tokio::task::JoinHandle<Vec<Value>>,
    stop: tokio_util::sync::CancellationToken,
    /// Tells the reader how many events to wait for, once the writer has stopped.
    target: tokio::sync::watch::Sender<Option<usize>>,
    /// How many blocks the writer has committed so far.
    written: tokio::sync::watch::Receiver<usize>,
}

impl Bystander {
    /// Subscribes to `valid_transactions` and starts committing blocks of the chain `seed`.
    pub async fn start(harness: &impl NodeUnderTest, seed: u64) -> Self {
        let url = format!(
            "{}/api/v1/streams/valid_transactions",
            harness.streams_base()
        );
        let mut ws = UrlStream::connect(&url).await.ws;
        let stop = tokio_util::sync::CancellationToken::new();
        let store = harness.store();
        let (progress, written) = tokio::sync::watch::channel(0usize);
        let writer = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut writer = store.writer().await;
                let mut chain = ChainGenerator::new(seed, 1, 6);
                let mut written = Vec::new();
                while !stop.is_cancelled() {
                    let block = chain.block(2);
                    writer.write(&block).await;
                    written.push(block);
                    let _ = progress.send(written.len());
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                written
            })
        };
        let (target_tx, mut target) = tokio::sync::watch::channel(None::<usize>);
        let reader = tokio::spawn(async move {
            let mut events = Vec::new();
            let push = |events: &mut Vec<Value>, message: Option<Result<Message, _>>| match message
            {
                Some(Ok(Message::Text(text))) => {
                    events.push(serde_json::from_str(text.as_str()).expect("JSON"))
                }
                Some(Ok(_)) => {}
                other => panic!("the bystander's stream broke: {other:?}"),
            };
            // Until the writer has stopped and said how many events it committed...
            let want = loop {
                tokio::select! {
                    m = ws.next() => push(&mut events, m),
                    _ = target.changed() => break target.borrow().unwrap_or(0),
                }
            };
            // ...then until they are all here (or surely will not come), and a little more,
            // so that anything extra shows too.
            let deadline = tokio::time::Instant::now() + DRAIN_WITHIN;
            while events.len() < want {
                match tokio::time::timeout_at(deadline, ws.next()).await {
                    Ok(m) => push(&mut events, m),
                    Err(_) => return events,
                }
            }
            while let Ok(m) = tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
                push(&mut events, m);
            }
            events
        });
        Self {
            writer,
            reader,
            stop,
            target: target_tx,
            written,
        }
    }

    /// Stops writing and checks every written event reached the bystander, in order.
    pub async fn finish(mut self) {
        // A hostile step can be over before the writer's first commit: wait for it, so the
        // check below is about something.
        tokio::time::timeout(Duration::from_secs(30), self.written.wait_for(|n| *n > 0))
            .await
            .expect("the bystander's writer committed a block in time")
            .expect("the writer is running");
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.stop.cancel();
        let written = self.writer.await.expect("writer");
        let expected = expected_events(&written);
        let _ = self.target.send(Some(expected.len()));
        let received = self.reader.await.expect("reader");
        assert!(!expected.is_empty());
        assert_eq!(
            received.len(),
            expected.len(),
            "the well-behaved subscriber got every event"
        );
        assert_eq!(received, expected);
    }
}
