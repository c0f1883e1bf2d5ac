//! The publisher: every event of both streams into JetStream, once each, in chain order.
//!
//! **Where it starts.** Not from a local file: from JetStream. On every (re)start, and after
//! any failure, it reads the last message of each stream ([`Positions`]): its
//! `Planetmint-Height` (and, for transactions, `Planetmint-Transaction-Id`) say which event
//! it was, so publishing continues with the next one. A stream that holds nothing yet starts
//! at `nats.start_height` (default: all stored history).
//!
//! **Exactly once.** Each message carries `Nats-Expected-Last-Sequence`: JetStream stores it
//! only if the stream's last sequence is the one the publisher expects, so the message that
//! becomes sequence `n + 1` is always the event that follows the one at `n` in chain order,
//! whoever publishes it. Two nodes publishing at once both send it; one is stored, the other
//! is refused ("wrong last sequence") and that node re-reads where the stream stands. A
//! publish whose acknowledgement was lost (NATS restarted, a timeout) is never sent blindly
//! again: the publisher re-reads the stream first, and `Nats-Msg-Id` (unique per event)
//! makes JetStream drop a copy within `nats.duplicate_window` anyway.
//!
//! **Never slowing the WebSocket fan-out.** The follower hands blocks to [`LiveSink`], whose
//! `publish` only tries to put the block on a bounded queue. When the queue is full, or NATS
//! is slow or down, blocks are skipped there and the publisher catches up later from the
//! [`BlockSource`] (history reads), so its lag grows and shrinks while the broadcaster never
//! waits.
//!
//! Publishes are pipelined (up to `nats.max_in_flight` unacknowledged); a live block counts as
//! done once JetStream has acknowledged each of its events.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::Context;
use bytes::Bytes;
use planetmint_streams_model::backoff::Backoff;
use planetmint_streams_model::event::{block_event_json, transaction_event_json};
use planetmint_streams_model::vocabulary::StreamKind;
use planetmint_streams_model::{BlockSink, BlockSource, CommittedBlock};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::NatsConfig;
use crate::metrics::{reason, JetStreamMetrics};
use crate::names::{
    block_msg_id, transaction_msg_id, StreamNames, HEIGHT_HEADER, TRANSACTION_ID_HEADER,
};
use crate::streams::ensure_stream;

/// A block from the follower, with the height of the block it handed on before it (so the
/// publisher knows whether anything was skipped in between).
#[derive(Debug)]
struct LiveBlock {
    previous: u64,
    block: Arc<CommittedBlock>,
}

/// What the publisher shares with the rest of the node.
pub(crate) struct Shared {
    /// `[nats]`.
    pub config: NatsConfig,
    /// Transactions then blocks.
    pub names: [StreamNames; 2],
    /// The tier's metrics.
    pub metrics: JetStreamMetrics,
    /// The highest height the follower handed on.
    pub head: AtomicU64,
    /// The connection, once made (the seek endpoint uses it too).
    pub context: Mutex<Option<Context>>,
}

impl Shared {
    pub(crate) fn context(&self) -> Option<Context> {
        self.context.lock().ok().and_then(|guard| guard.clone())
    }

    fn set_context(&self, context: Option<Context>) {
        if let Ok(mut guard) = self.context.lock() {
            *guard = context;
        }
    }

    fn note_head(&self, height: u64) {
        self.head.fetch_max(height, Ordering::Relaxed);
    }
}

/// The publisher's end of the follower: a [`BlockSink`] that never waits.
pub struct LiveSink {
    queue: mpsc::Sender<LiveBlock>,
    previous: AtomicU64,
    shared: Arc<Shared>,
}

impl BlockSink for LiveSink {
    fn start_after(&self, height: u64) {
        self.previous.store(height, Ordering::Relaxed);
        self.shared.note_head(height);
    }

    fn publish(&self, block: Arc<CommittedBlock>) {
        let previous = self.previous.swap(block.height, Ordering::Relaxed);
        self.shared.note_head(block.height);
        if let Err(mpsc::error::TrySendError::Full(_)) =
            self.queue.try_send(LiveBlock { previous, block })
        {
            self.shared.metrics.live_dropped_blocks.inc();
        }
    }
}

/// Where a stream stands: what its last message was, and its sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StreamPosition {
    /// JetStream's last sequence of the stream (0: never held a message).
    last_sequence: u64,
    /// The last event it holds.
    last: Last,
}

/// The last event a stream holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Last {
    /// Every event of every block up to this height (and none above).
    Height(u64),
    /// Transactions: the events up to this transaction of the block at `height`.
    Transaction { height: u64, id: String },
}

impl StreamPosition {
    /// Every event at or below this height is in the stream.
    fn complete_through(&self) -> u64 {
        match &self.last {
            Last::Height(height) => *height,
            Last::Transaction { height, .. } => height.saturating_sub(1),
        }
    }
}

/// Where both streams stand.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Positions {
    transactions: StreamPosition,
    blocks: StreamPosition,
}

impl Positions {
    fn get_mut(&mut self, kind: StreamKind) -> &mut StreamPosition {
        match kind {
            StreamKind::ValidTransactions => &mut self.transactions,
            StreamKind::ValidBlocks => &mut self.blocks,
        }
    }

    /// Records that every event of every block up to `height` is in both streams (after all
    /// blocks up to it were handled: blocks without an event of a stream, empty ones and
    /// init_chain rows, move nothing in it).
    fn complete_through(&mut self, height: u64) {
        for kind in StreamKind::ALL {
            let position = self.get_mut(kind);
            if position.complete_through() < height {
                position.last = Last::Height(height);
            }
        }
    }

    /// Every event of every block at or below this height is in both streams.
    fn done(&self) -> u64 {
        self.transactions
            .complete_through()
            .min(self.blocks.complete_through())
    }
}

/// One message to publish.
#[derive(Debug, Clone)]
struct Outgoing {
    kind: StreamKind,
    height: u64,
    transaction_id: Option<String>,
    payload: Bytes,
}

impl Outgoing {
    fn last(&self) -> Last {
        match &self.transaction_id {
            Some(id) => Last::Transaction {
                height: self.height,
                id: id.clone(),
            },
            None => Last::Height(self.height),
        }
    }
}

/// The events of `block` not yet in the streams, transactions first.
fn events_after(block: &CommittedBlock, positions: &Positions) -> Result<Vec<Outgoing>, Failure> {
    let mut out = Vec::new();
    if !block.is_announced() {
        // Planetmint publishes nothing for the rows init_chain stores.
        return Ok(out);
    }
    let height = block.height;
    let skip = match &positions.transactions.last {
        Last::Height(done) if height <= *done => block.transactions.len(),
        Last::Height(_) => 0,
        Last::Transaction { height: at, .. } if height < *at => block.transactions.len(),
        Last::Transaction { height: at, id } if height == *at => {
            match block.transactions.iter().position(|tx| &tx.id == id) {
                Some(index) => index + 1,
                None => {
                    return Err(Failure::new(
                        reason::REFUSED,
                        format!("JetStream holds transaction {id} at height {height}, which the block stored at that height does not hold (another chain's stream?)"),
                    ))
                }
            }
        }
        Last::Transaction { .. } => 0,
    };
    for tx in block.transactions.iter().skip(skip) {
        out.push(Outgoing {
            kind: StreamKind::ValidTransactions,
            height,
            transaction_id: Some(tx.id.clone()),
            payload: Bytes::from(transaction_event_json(height, tx)),
        });
    }
    if height > positions.blocks.complete_through() {
        out.push(Outgoing {
            kind: StreamKind::ValidBlocks,
            height,
            transaction_id: None,
            payload: Bytes::from(block_event_json(block)),
        });
    }
    Ok(out)
}

/// Why publishing stopped; the publisher counts it under `reason`, then re-reads where the
/// streams stand and goes on.
#[derive(Debug)]
pub(crate) struct Failure {
    reason: &'static str,
    message: String,
}

impl Failure {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    fn publish(err: &async_nats::jetstream::context::PublishError) -> Self {
        let reason = match err.kind() {
            PublishErrorKind::WrongLastSequence => reason::WRONG_LAST_SEQUENCE,
            PublishErrorKind::TimedOut => reason::TIMEOUT,
            PublishErrorKind::BrokenPipe | PublishErrorKind::MaxAckPending => reason::UNAVAILABLE,
            PublishErrorKind::StreamNotFound => reason::STREAM,
            _ => reason::REFUSED,
        };
        Self::new(reason, err.to_string())
    }
}

/// A publish sent, waiting for its acknowledgement.
struct InFlight {
    ack: PublishAckFuture,
    kind: StreamKind,
    sequence: u64,
    last: Last,
    committed_at: Option<SystemTime>,
}

/// Publishes both streams; see the module documentation.
pub struct Publisher {
    shared: Arc<Shared>,
    source: Arc<dyn BlockSource>,
    live: mpsc::Receiver<LiveBlock>,
    idle_check: Duration,
}

/// A new publisher and the sink the follower feeds it through.
pub(crate) fn publisher(
    shared: Arc<Shared>,
    source: Arc<dyn BlockSource>,
) -> (Publisher, Arc<LiveSink>) {
    let (queue, live) = mpsc::channel(shared.config.queue_blocks);
    let sink = Arc::new(LiveSink {
        queue,
        previous: AtomicU64::new(0),
        shared: shared.clone(),
    });
    (
        Publisher {
            shared,
            source,
            live,
            idle_check: crate::config::DEFAULT_IDLE_CHECK,
        },
        sink,
    )
}

/// The connection options `[nats]` describes.
pub(crate) async fn connect_options(
    config: &NatsConfig,
    name: &str,
) -> Result<async_nats::ConnectOptions, Failure> {
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(config.request_timeout)
        .request_timeout(Some(config.request_timeout))
        .require_tls(config.require_tls);
    let (min, max) = (config.reconnect_min, config.reconnect_max);
    options = options.reconnect_delay_callback(move |attempts| {
        let factor = 1u32 << attempts.min(16) as u32;
        min.saturating_mul(factor).min(max)
    });
    if let Some(creds) = &config.credentials_file {
        options = options.credentials_file(creds).await.map_err(|e| {
            Failure::new(
                reason::UNAVAILABLE,
                format!("nats.credentials_file: {}: {e}", creds.display()),
            )
        })?;
    }
    if let Some(ca) = &config.tls_ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options)
}

/// A JetStream context on a new connection to `nats.url`.
pub(crate) async fn connect(config: &NatsConfig, name: &str) -> Result<Context, Failure> {
    let options = connect_options(config, name).await?;
    let servers: Vec<async_nats::ServerAddr> = config
        .server_urls()
        .iter()
        .filter_map(|url| url.parse().ok())
        .collect();
    let client = options
        .connect(servers)
        .await
        .map_err(|e| Failure::new(reason::UNAVAILABLE, format!("connecting to NATS: {e}")))?;
    Ok(async_nats::jetstream::ContextBuilder::new()
        .timeout(config.request_timeout)
        .max_ack_inflight(config.max_in_flight.saturating_mul(2))
        .backpressure_on_inflight(true)
        .build(client))
}

impl Publisher {
    /// Runs until `shutdown` is cancelled: connects (retrying), sets up the streams, then
    /// publishes; after any failure it backs off, re-reads where the streams stand and goes on.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let config = self.shared.config.clone();
        let mut backoff = Backoff::new(config.reconnect_min, config.reconnect_max);
        let mut context: Option<Context> = None;
        loop {
            let attempt = async {
                let ctx = match &context {
                    Some(ctx) => ctx.clone(),
                    None => {
                        let ctx = connect(&config, "planetmint-streams publisher").await?;
                        info!(url = %config.url, "connected to NATS");
                        self.shared.set_context(Some(ctx.clone()));
                        context = Some(ctx.clone());
                        ctx
                    }
                };
                for names in &self.shared.names {
                    ensure_stream(&ctx, &config, names)
                        .await
                        .map_err(|e| Failure::new(reason::STREAM, e.to_string()))?;
                }
                self.shared.metrics.up.set(1);
                self.publish(&ctx, &mut backoff).await
            };
            let failure = tokio::select! {
                _ = shutdown.cancelled() => break,
                result = attempt => match result {
                    // The follower is gone: the node is stopping.
                    Ok(()) => break,
                    Err(failure) => failure,
                },
            };
            self.shared.metrics.error(failure.reason);
            let delay = if failure.reason == reason::WRONG_LAST_SEQUENCE {
                // Another node published first: nothing is wrong, re-read and go on (a short
                // random pause so two nodes do not keep colliding).
                debug!(error = %failure.message, "another publisher got there first; re-reading where the streams stand");
                Duration::from_millis(u64::from(jitter_ms()))
            } else {
                // A source failure (Tarantool down) says nothing about NATS.
                if failure.reason != reason::SOURCE {
                    self.shared.metrics.up.set(0);
                }
                warn!(reason = failure.reason, error = %failure.message, "JetStream publishing stopped; retrying");
                backoff.next_delay()
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        self.shared.metrics.up.set(0);
        if let Some(ctx) = context {
            // Acknowledgements already received are in; flush what was sent.
            let _ = tokio::time::timeout(Duration::from_secs(2), ctx.client().flush()).await;
        }
        info!("JetStream publisher stopped");
    }

    /// Reads where both streams stand, then publishes until something fails.
    async fn publish(&mut self, ctx: &Context, backoff: &mut Backoff) -> Result<(), Failure> {
        self.shared.metrics.resyncs.inc();
        let mut positions = self.positions(ctx).await?;
        let mut pipeline = Pipeline::new(ctx.clone(), self.shared.clone());
        info!(
            published_height = positions.done(),
            transactions_sequence = positions.transactions.last_sequence,
            blocks_sequence = positions.blocks.last_sequence,
            "JetStream publishing resumes after the last event the streams hold"
        );
        self.report(&positions);
        let mut caught_up_once = false;
        loop {
            let head = self.shared.head.load(Ordering::Relaxed);
            if head > positions.done() || !caught_up_once {
                let upto = match self.source.bounds().await {
                    Ok(Some(bounds)) => bounds.highest.max(head),
                    Ok(None) => head,
                    Err(e) => return Err(Failure::new(reason::SOURCE, e.chain().to_string())),
                };
                self.shared.note_head(upto);
                self.catch_up(&mut pipeline, &mut positions, upto).await?;
                caught_up_once = true;
                backoff.reset();
            }
            let next = tokio::time::timeout(self.idle_check, self.live.recv()).await;
            match next {
                Ok(Some(live)) => {
                    let done = positions.done();
                    if live.block.height <= done {
                        continue;
                    }
                    if live.previous == done {
                        pipeline
                            .block(&live.block, &mut positions, live.block.committed_at)
                            .await?;
                        pipeline.settle(&mut positions).await?;
                        positions.complete_through(live.block.height);
                        self.report(&positions);
                    } else {
                        self.catch_up(&mut pipeline, &mut positions, live.block.height)
                            .await?;
                    }
                }
                Ok(None) => return Ok(()),
                Err(_idle) => caught_up_once = false,
            }
        }
    }

    /// Publishes every block after `positions.done()` up to `upto`, read from the source.
    async fn catch_up(
        &self,
        pipeline: &mut Pipeline,
        positions: &mut Positions,
        upto: u64,
    ) -> Result<(), Failure> {
        let batch = self.shared.config.batch_blocks;
        while positions.done() < upto {
            let after = positions.done();
            let blocks = self
                .source
                .fetch_between(after, upto, batch)
                .await
                .and_then(|fetched| fetched.decode())
                .map_err(|e| Failure::new(reason::SOURCE, e.chain().to_string()))?;
            let Some(last) = blocks.last().map(|b| b.height) else {
                // Nothing stored in (after, upto] yet: a replica behind, or the head moved
                // back. The next live block or idle check tries again.
                debug!(after, upto, "no block to catch up with yet");
                return Ok(());
            };
            self.shared
                .metrics
                .catchup_blocks
                .inc_by(blocks.len() as u64);
            for block in &blocks {
                pipeline.block(block, positions, None).await?;
            }
            pipeline.settle(positions).await?;
            positions.complete_through(last);
            self.report(positions);
        }
        Ok(())
    }

    fn report(&self, positions: &Positions) {
        let head = self.shared.head.load(Ordering::Relaxed);
        self.shared.metrics.heights(positions.done(), head);
    }

    /// Where both streams stand, read from JetStream.
    async fn positions(&self, ctx: &Context) -> Result<Positions, Failure> {
        let [transactions, blocks] = &self.shared.names;
        Ok(Positions {
            transactions: self.position(ctx, transactions).await?,
            blocks: self.position(ctx, blocks).await?,
        })
    }

    async fn position(
        &self,
        ctx: &Context,
        names: &StreamNames,
    ) -> Result<StreamPosition, Failure> {
        let stream_error = |e: &dyn std::fmt::Display| {
            Failure::new(reason::STREAM, format!("stream {}: {e}", names.stream))
        };
        let mut stream = ctx
            .get_stream(&names.stream)
            .await
            .map_err(|e| stream_error(&e))?;
        let state = stream
            .info()
            .await
            .map_err(|e| stream_error(&e))?
            .state
            .clone();
        if state.messages == 0 {
            let start = self.start_after(state.last_sequence, names).await?;
            return Ok(StreamPosition {
                last_sequence: state.last_sequence,
                last: Last::Height(start),
            });
        }
        let message = stream
            .get_raw_message(state.last_sequence)
            .await
            .map_err(|e| stream_error(&e))?;
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .map(|value| value.as_str().to_owned())
        };
        let height = header(HEIGHT_HEADER)
            .and_then(|h| h.parse::<u64>().ok())
            .ok_or_else(|| {
                Failure::new(
                    reason::STREAM,
                    format!(
                        "the last message of stream {} (sequence {}) has no {HEIGHT_HEADER} header: it was not published by planetmint-streams",
                        names.stream, state.last_sequence
                    ),
                )
            })?;
        let last = match (names.kind, header(TRANSACTION_ID_HEADER)) {
            (StreamKind::ValidTransactions, Some(id)) => Last::Transaction { height, id },
            (StreamKind::ValidTransactions, None) => {
                return Err(Failure::new(
                    reason::STREAM,
                    format!(
                        "the last message of stream {} has no {TRANSACTION_ID_HEADER} header",
                        names.stream
                    ),
                ))
            }
            (StreamKind::ValidBlocks, _) => Last::Height(height),
        };
        Ok(StreamPosition {
            last_sequence: state.last_sequence,
            last,
        })
    }

    /// Where an empty stream starts: just before `nats.start_height`, else (new stream) before
    /// all stored history; a stream whose messages all aged out resumes at the source's head.
    async fn start_after(&self, last_sequence: u64, names: &StreamNames) -> Result<u64, Failure> {
        if let Some(start) = self.shared.config.start_height {
            return Ok(start.saturating_sub(1));
        }
        if last_sequence == 0 {
            return Ok(0);
        }
        let head = match self.source.bounds().await {
            Ok(bounds) => bounds.map(|b| b.highest).unwrap_or(0),
            Err(e) => return Err(Failure::new(reason::SOURCE, e.chain().to_string())),
        };
        error!(
            stream = %names.stream,
            last_sequence,
            resume_after = head,
            "every message of the stream aged out (nats.max_age), so the last height published is unknown; publishing resumes at the current head (set nats.start_height to publish from an earlier height)"
        );
        Ok(head)
    }
}

/// A short random pause, 0 to 49 ms.
fn jitter_ms() -> u32 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 50)
        .unwrap_or(0)
}

/// Publishes with optimistic concurrency, up to `nats.max_in_flight` awaiting their
/// acknowledgements.
struct Pipeline {
    ctx: Context,
    shared: Arc<Shared>,
    in_flight: VecDeque<InFlight>,
    /// The sequence the next message of each stream will get.
    next: Option<[u64; 2]>,
}

fn index(kind: StreamKind) -> usize {
    match kind {
        StreamKind::ValidTransactions => 0,
        StreamKind::ValidBlocks => 1,
    }
}

impl Pipeline {
    fn new(ctx: Context, shared: Arc<Shared>) -> Self {
        Self {
            ctx,
            shared,
            in_flight: VecDeque::new(),
            next: None,
        }
    }

    /// Sends the events of `block` not yet in the streams.
    async fn block(
        &mut self,
        block: &CommittedBlock,
        positions: &mut Positions,
        committed_at: Option<SystemTime>,
    ) -> Result<(), Failure> {
        let next = *self.next.get_or_insert([
            positions.transactions.last_sequence,
            positions.blocks.last_sequence,
        ]);
        // Judge what is new against what was sent, not only what was acknowledged.
        let mut sent = positions.clone();
        sent.transactions.last_sequence = next[0];
        sent.blocks.last_sequence = next[1];
        if let Some(last) = self
            .in_flight
            .iter()
            .rev()
            .find(|f| f.kind == StreamKind::ValidTransactions)
        {
            sent.transactions.last = last.last.clone();
        }
        if let Some(last) = self
            .in_flight
            .iter()
            .rev()
            .find(|f| f.kind == StreamKind::ValidBlocks)
        {
            sent.blocks.last = last.last.clone();
        }
        let events = events_after(block, &sent)?;
        let count = events.len();
        for (i, event) in events.into_iter().enumerate() {
            let stamp = if i + 1 == count { committed_at } else { None };
            self.send(event, positions, stamp).await?;
        }
        Ok(())
    }

    async fn send(
        &mut self,
        event: Outgoing,
        positions: &mut Positions,
        committed_at: Option<SystemTime>,
    ) -> Result<(), Failure> {
        if self.in_flight.len() >= self.shared.config.max_in_flight {
            self.settle_one(positions).await?;
        }
        let slot = index(event.kind);
        let next = self.next.get_or_insert([
            positions.transactions.last_sequence,
            positions.blocks.last_sequence,
        ]);
        let expected = next[slot];
        let names = &self.shared.names[slot];
        let (msg_id, message) = match &event.transaction_id {
            Some(id) => (
                transaction_msg_id(event.height, id),
                PublishMessage::build().header(TRANSACTION_ID_HEADER, id.as_str()),
            ),
            None => (block_msg_id(event.height), PublishMessage::build()),
        };
        let message = message
            .payload(event.payload.clone())
            .message_id(msg_id)
            .expected_last_sequence(expected)
            .header(HEIGHT_HEADER, event.height.to_string().as_str());
        let ack = self
            .ctx
            .send_publish(names.subject.clone(), message)
            .await
            .map_err(|e| Failure::publish(&e))?;
        next[slot] = expected + 1;
        self.in_flight.push_back(InFlight {
            ack,
            kind: event.kind,
            sequence: expected + 1,
            last: event.last(),
            committed_at,
        });
        Ok(())
    }

    /// Waits for the oldest acknowledgement and records what it confirms.
    async fn settle_one(&mut self, positions: &mut Positions) -> Result<(), Failure> {
        let Some(in_flight) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let result = in_flight.ack.await;
        let ack = match result {
            Ok(ack) => ack,
            Err(err) => {
                self.abandon();
                return Err(Failure::publish(&err));
            }
        };
        if ack.sequence != in_flight.sequence {
            self.abandon();
            return Err(Failure::new(
                reason::WRONG_LAST_SEQUENCE,
                format!(
                    "JetStream stored the event at sequence {} where {} was expected",
                    ack.sequence, in_flight.sequence
                ),
            ));
        }
        let counter = if ack.duplicate {
            &self.shared.metrics.already_stored_events
        } else {
            &self.shared.metrics.published_events
        };
        counter.with_label_values(&[in_flight.kind.name()]).inc();
        let position = positions.get_mut(in_flight.kind);
        position.last_sequence = ack.sequence;
        position.last = in_flight.last;
        if let Some(committed) = in_flight.committed_at {
            if let Ok(elapsed) = SystemTime::now().duration_since(committed) {
                self.shared
                    .metrics
                    .commit_to_ack
                    .observe(elapsed.as_secs_f64());
            }
        }
        Ok(())
    }

    /// Waits for every acknowledgement.
    async fn settle(&mut self, positions: &mut Positions) -> Result<(), Failure> {
        while !self.in_flight.is_empty() {
            self.settle_one(positions).await?;
        }
        Ok(())
    }

    /// Forgets what is in flight (after a failure the streams are read again).
    fn abandon(&mut self) {
        self.in_flight.clear();
        self.next = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use planetmint_streams_model::CommittedTransaction;

    fn block(height: u64, txs: &[&str]) -> CommittedBlock {
        CommittedBlock {
            height,
            hash: format!("H{height}"),
            transactions: txs
                .iter()
                .map(|id| CommittedTransaction {
                    id: (*id).to_owned(),
                    operation: "CREATE".into(),
                    asset_id: (*id).to_owned(),
                    asset_ids: Vec::new(),
                    output_public_keys: Vec::new(),
                    input_owners: Vec::new(),
                })
                .collect(),
            chain_start: false,
            rows: None,
            committed_at: None,
        }
    }

    fn at(transactions: Last, blocks: u64) -> Positions {
        Positions {
            transactions: StreamPosition {
                last_sequence: 0,
                last: transactions,
            },
            blocks: StreamPosition {
                last_sequence: 0,
                last: Last::Height(blocks),
            },
        }
    }

    fn kinds(events: &[Outgoing]) -> Vec<(StreamKind, u64, Option<String>)> {
        events
            .iter()
            .map(|e| (e.kind, e.height, e.transaction_id.clone()))
            .collect()
    }

    #[test]
    fn a_new_block_gives_its_transactions_then_itself() {
        let events = events_after(&block(5, &["a", "b"]), &at(Last::Height(4), 4)).expect("events");
        assert_eq!(
            kinds(&events),
            vec![
                (StreamKind::ValidTransactions, 5, Some("a".into())),
                (StreamKind::ValidTransactions, 5, Some("b".into())),
                (StreamKind::ValidBlocks, 5, None),
            ]
        );
        let payload: serde_json::Value = serde_json::from_slice(&events[1].payload).expect("json");
        assert_eq!(payload["transaction_id"], "b");
        assert_eq!(payload["height"], 5);
    }

    #[test]
    fn a_block_half_published_continues_after_the_last_transaction_held() {
        let positions = at(
            Last::Transaction {
                height: 5,
                id: "a".into(),
            },
            4,
        );
        assert_eq!(positions.done(), 4);
        let events = events_after(&block(5, &["a", "b", "c"]), &positions).expect("events");
        assert_eq!(
            kinds(&events),
            vec![
                (StreamKind::ValidTransactions, 5, Some("b".into())),
                (StreamKind::ValidTransactions, 5, Some("c".into())),
                (StreamKind::ValidBlocks, 5, None),
            ]
        );
        // The block event is in, the transactions were not all: only the rest goes out.
        let positions = at(
            Last::Transaction {
                height: 5,
                id: "b".into(),
            },
            5,
        );
        let events = events_after(&block(5, &["a", "b", "c"]), &positions).expect("events");
        assert_eq!(
            kinds(&events),
            vec![(StreamKind::ValidTransactions, 5, Some("c".into()))]
        );
        // Nothing of an older block goes out again.
        assert!(events_after(&block(4, &["z"]), &positions)
            .expect("events")
            .is_empty());
    }

    #[test]
    fn done_is_the_height_both_streams_hold_whole() {
        let mut positions = at(
            Last::Transaction {
                height: 9,
                id: "t".into(),
            },
            12,
        );
        // Block 9 may have more transactions: only up to 8 is known complete.
        assert_eq!(positions.done(), 8);
        positions.complete_through(10);
        assert_eq!(positions.transactions.last, Last::Height(10));
        assert_eq!(positions.blocks.last, Last::Height(12), "never moves back");
        assert_eq!(positions.done(), 10);
    }

    #[test]
    fn a_transaction_the_block_does_not_hold_stops_publishing() {
        let positions = at(
            Last::Transaction {
                height: 5,
                id: "x".into(),
            },
            4,
        );
        let failure = events_after(&block(5, &["a"]), &positions).expect_err("foreign");
        assert_eq!(failure.reason, reason::REFUSED);
    }

    #[test]
    fn init_chain_rows_publish_nothing_and_empty_blocks_only_a_block_event() {
        let mut genesis = block(1, &[]);
        genesis.chain_start = true;
        assert!(events_after(&genesis, &at(Last::Height(0), 0))
            .expect("events")
            .is_empty());
        let events = events_after(&block(2, &[]), &at(Last::Height(1), 1)).expect("events");
        assert_eq!(kinds(&events), vec![(StreamKind::ValidBlocks, 2, None)]);
    }
}
