//! `jsload`: N JetStream consumers of a planetmint-streams stream in NATS (the JetStream tier),
//! measured like `wsload` measures WebSocket subscribers: every message's payload is the URL
//! stream's JSON, its transaction ids carry their commit time ([`crate::commit_time`]), so the
//! same [`Received`] bookkeeping gives commit-to-consumer latency, loss, duplicates and order.
//!
//! Consumers are ordered pull consumers (in order, no server-side acknowledgements: the
//! closest to a WebSocket subscriber) or durable pull consumers acknowledging each message
//! (`--kind durable`). They are spread over `--connections` NATS connections.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use futures_util::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::commit_time::now_nanos;
use crate::load::Spread;
use crate::stats::{self, Latency, Received};
use crate::system;

/// Which JetStream consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Ordered pull consumers: in order, nothing acknowledged, recreated by the client on a gap.
    Ordered,
    /// Durable pull consumers, each message acknowledged.
    Durable,
}

/// Where consumers start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    /// Only messages stored after the consumer is created.
    New,
    /// The whole stream.
    All,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct JsLoadConfig {
    /// The run's name.
    pub label: String,
    /// NATS URL (loopback).
    pub nats_url: String,
    /// JetStream stream.
    pub stream: String,
    /// Consumers.
    pub consumers: usize,
    /// NATS connections they share.
    pub connections: usize,
    /// Ordered or durable.
    pub kind: Kind,
    /// Where they start.
    pub start: Start,
    /// Events each consumer should get (the run ends once all have them).
    pub expect: Option<u64>,
    /// Longest run after the consumers are created.
    pub duration: Duration,
    /// End once nothing arrived for this long after the first event.
    pub quiet: Duration,
    /// Latency samples kept per consumer.
    pub max_samples: usize,
    /// Consumers created at once.
    pub create_concurrency: usize,
    /// Written once every consumer exists (the writer starts then).
    pub ready_file: Option<PathBuf>,
    /// Processes whose CPU seconds are reported (name, PID), e.g. the node and nats-server.
    pub pids: Vec<(String, u32)>,
}

/// What a process named with `--pid` spent.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessCpu {
    /// User + system seconds from the ready signal to the end.
    pub run_s: f64,
    /// Of which per delivered event, in microseconds.
    pub per_event_us: f64,
    /// Its resident memory before the consumers were created (KiB).
    pub rss_before_kib: u64,
    /// Once every consumer existed (KiB).
    pub rss_created_kib: u64,
    /// `(rss_created - rss_before) / consumers`, in bytes.
    pub rss_per_consumer_bytes: f64,
}

/// The machine-readable result (one JSON line).
#[derive(Debug, Clone, Serialize)]
pub struct JsReport {
    /// `"jsload"`.
    pub tool: &'static str,
    /// The run's name.
    pub label: String,
    /// Ordered or durable.
    pub kind: Kind,
    /// Where they started.
    pub start: Start,
    /// Consumers asked for.
    pub consumers: usize,
    /// Consumers created.
    pub created: usize,
    /// NATS connections used.
    pub connections: usize,
    /// Time to create every consumer.
    pub create_s: f64,
    /// Distinct creation errors (at most 5).
    pub create_errors: Vec<String>,
    /// Events expected per consumer.
    pub expect: Option<u64>,
    /// `complete`, `quiet` or `duration`.
    pub ended_by: String,
    /// Ready signal to end.
    pub run_s: f64,
    /// Events received by all consumers.
    pub events: u64,
    /// First to last arrival.
    pub window_s: f64,
    /// `events / window_s`.
    pub events_per_s: f64,
    /// Earliest commit time (id) to the last arrival.
    pub since_first_commit_s: f64,
    /// `events / since_first_commit_s`.
    pub events_per_s_since_first_commit: f64,
    /// Commit-to-consumer latency.
    pub latency: Latency,
    /// Consumers with every expected event.
    pub complete: usize,
    /// Expected events missing, summed.
    pub lost: u64,
    /// Extra copies, summed.
    pub duplicates: u64,
    /// Events after a later-committed one, summed.
    pub out_of_order: u64,
    /// Payloads that were not JSON.
    pub parse_errors: u64,
    /// Unique events per consumer.
    pub per_consumer_events: Spread,
    /// CPU of the processes named with `--pid`.
    pub cpu: BTreeMap<String, ProcessCpu>,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum JsLoadError {
    /// NATS could not be reached.
    #[error("connecting to NATS at {url}: {message}")]
    Connect {
        /// The URL.
        url: String,
        /// What happened.
        message: String,
    },
    /// The ready file could not be written.
    #[error("writing the ready file: {0}")]
    Ready(std::io::Error),
}

/// What the consumers share while running.
struct Shared {
    last_arrival_ns: AtomicU64,
    first_arrival_ns: AtomicU64,
    complete: AtomicUsize,
    /// Consumers that exist on the server (their pulls are under way).
    created: AtomicUsize,
    /// Consumers whose creation failed.
    failed: AtomicUsize,
}

async fn consume(
    js: async_nats::jetstream::Context,
    config: Arc<JsLoadConfig>,
    index: usize,
    shared: Arc<Shared>,
    stop: CancellationToken,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<Received, String> {
    let result = open(&js, &config, index).await;
    // The next consumer may be created now.
    drop(permit);
    let mut messages = match result {
        Ok(messages) => messages,
        Err(err) => {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            return Err(err);
        }
    };
    shared.created.fetch_add(1, Ordering::Relaxed);
    Ok(receive(&mut messages, &config, shared, stop).await)
}

type Messages =
    futures_util::stream::BoxStream<'static, Result<async_nats::jetstream::Message, String>>;

/// Creates consumer `index` and starts pulling.
async fn open(
    js: &async_nats::jetstream::Context,
    config: &JsLoadConfig,
    index: usize,
) -> Result<Messages, String> {
    let stream = js
        .get_stream(&config.stream)
        .await
        .map_err(|e| e.to_string())?;
    let deliver_policy = match config.start {
        Start::New => DeliverPolicy::New,
        Start::All => DeliverPolicy::All,
    };
    Ok(match config.kind {
        Kind::Ordered => stream
            .create_consumer(pull::OrderedConfig {
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?
            .messages()
            .await
            .map_err(|e| e.to_string())?
            .map(|m| m.map_err(|e| e.to_string()))
            .boxed(),
        Kind::Durable => {
            let name = format!("jsload-{index}");
            let consumer: async_nats::jetstream::consumer::PullConsumer = stream
                .create_consumer(pull::Config {
                    durable_name: Some(name),
                    deliver_policy,
                    ack_policy: AckPolicy::Explicit,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            consumer
                .messages()
                .await
                .map_err(|e| e.to_string())?
                .map(|m| m.map_err(|e| e.to_string()))
                .boxed()
        }
    })
}

/// Reads messages until `stop`, or until `expect` events arrived.
async fn receive<M, E>(
    messages: &mut (impl futures_util::Stream<Item = Result<M, E>> + Unpin),
    config: &JsLoadConfig,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> Received
where
    M: JetStreamMessage,
{
    let mut received = Received::new(config.expect, config.max_samples);
    let mut done = false;
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => break,
            next = messages.next() => next,
        };
        let Some(Ok(message)) = next else {
            if next.is_none() {
                break;
            }
            continue;
        };
        let now = now_nanos();
        let _ =
            shared
                .first_arrival_ns
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        shared.last_arrival_ns.store(now, Ordering::Relaxed);
        match std::str::from_utf8(message.payload()) {
            Ok(text) => received.on_text(text, now),
            Err(_) => received.parse_errors += 1,
        }
        message.acknowledge(config.kind).await;
        if !done && config.expect.is_some_and(|e| received.events >= e) {
            done = true;
            shared.complete.fetch_add(1, Ordering::Relaxed);
        }
    }
    received
}

/// What a consumer does with a message besides reading it.
#[allow(async_fn_in_trait)]
pub trait JetStreamMessage {
    /// Its payload.
    fn payload(&self) -> &[u8];
    /// Acknowledges it when the consumer is durable.
    async fn acknowledge(&self, kind: Kind);
}

impl JetStreamMessage for async_nats::jetstream::Message {
    fn payload(&self) -> &[u8] {
        &self.message.payload
    }

    async fn acknowledge(&self, kind: Kind) {
        if kind == Kind::Durable {
            let _ = self.ack().await;
        }
    }
}

/// Runs the consumers as configured.
pub async fn run(config: JsLoadConfig) -> Result<JsReport, JsLoadError> {
    let config = Arc::new(config);
    let mut clients = Vec::new();
    for _ in 0..config.connections.max(1) {
        let client = async_nats::ConnectOptions::new()
            .subscription_capacity(65_536)
            .connect(&config.nats_url)
            .await
            .map_err(|e| JsLoadError::Connect {
                url: config.nats_url.clone(),
                message: e.to_string(),
            })?;
        clients.push(async_nats::jetstream::new(client));
    }
    let rss_before: Vec<u64> = config
        .pids
        .iter()
        .map(|(_, pid)| system::vm_rss_kib(*pid).unwrap_or(0))
        .collect();
    let shared = Arc::new(Shared {
        last_arrival_ns: AtomicU64::new(0),
        first_arrival_ns: AtomicU64::new(0),
        complete: AtomicUsize::new(0),
        created: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
    });
    let stop = CancellationToken::new();
    let started = Instant::now();
    let permits = Arc::new(tokio::sync::Semaphore::new(
        config.create_concurrency.max(1),
    ));
    let mut tasks = Vec::with_capacity(config.consumers);
    for index in 0..config.consumers {
        let js = clients[index % clients.len()].clone();
        let (config, shared, stop) = (config.clone(), shared.clone(), stop.clone());
        let permit = permits.clone().acquire_owned().await.ok();
        tasks.push(tokio::spawn(consume(
            js, config, index, shared, stop, permit,
        )));
    }
    let settled = |shared: &Shared| {
        shared.created.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed)
    };
    while settled(&shared) < config.consumers && started.elapsed() < Duration::from_secs(600) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let create_s = started.elapsed().as_secs_f64();
    // Let the server settle after the creations before reading its memory.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu_before: Vec<(String, u32, f64, u64, u64)> = config
        .pids
        .iter()
        .zip(&rss_before)
        .map(|((name, pid), rss)| {
            (
                name.clone(),
                *pid,
                system::cpu_seconds(*pid).unwrap_or(0.0),
                *rss,
                system::vm_rss_kib(*pid).unwrap_or(0),
            )
        })
        .collect();
    if let Some(path) = &config.ready_file {
        std::fs::write(path, b"ready").map_err(JsLoadError::Ready)?;
    }
    let run_started = Instant::now();
    let ended_by = loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if config.expect.is_some()
            && shared.complete.load(Ordering::Relaxed) >= shared.created.load(Ordering::Relaxed)
        {
            break "complete";
        }
        let last = shared.last_arrival_ns.load(Ordering::Relaxed);
        if last > 0 && now_nanos().saturating_sub(last) > config.quiet.as_nanos() as u64 {
            break "quiet";
        }
        if run_started.elapsed() > config.duration {
            break "duration";
        }
    };
    let run_s = run_started.elapsed().as_secs_f64();
    stop.cancel();
    let mut report = JsReport {
        tool: "jsload",
        label: config.label.clone(),
        kind: config.kind,
        start: config.start,
        consumers: config.consumers,
        created: shared.created.load(Ordering::Relaxed),
        connections: clients.len(),
        create_s,
        create_errors: Vec::new(),
        expect: config.expect,
        ended_by: ended_by.to_owned(),
        run_s,
        events: 0,
        window_s: 0.0,
        events_per_s: 0.0,
        since_first_commit_s: 0.0,
        events_per_s_since_first_commit: 0.0,
        latency: Latency::default(),
        complete: 0,
        lost: 0,
        duplicates: 0,
        out_of_order: 0,
        parse_errors: 0,
        per_consumer_events: Spread::default(),
        cpu: BTreeMap::new(),
    };
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut latencies = Vec::new();
    let mut uniques = Vec::new();
    let (mut first, mut last, mut first_commit) = (u64::MAX, 0u64, u64::MAX);
    for task in tasks {
        match task.await {
            Ok(Ok(mut received)) => {
                let verdict = received.verdict(config.expect);
                report.events += received.events;
                report.lost += verdict.lost;
                report.duplicates += verdict.duplicates;
                report.out_of_order += verdict.out_of_order;
                report.parse_errors += received.parse_errors;
                if config.expect.is_some_and(|e| verdict.unique >= e) {
                    report.complete += 1;
                }
                uniques.push(verdict.unique);
                if let Some(f) = received.first_ns {
                    first = first.min(f);
                    last = last.max(received.last_ns);
                }
                first_commit = first_commit.min(received.min_commit_ns);
                latencies.append(&mut received.take_latencies());
            }
            Ok(Err(err)) => *errors.entry(err).or_default() += 1,
            Err(err) => *errors.entry(err.to_string()).or_default() += 1,
        }
    }
    report.create_errors = stats::error_lines(errors);
    if let Some((seconds, rate)) = stats::throughput(report.events, first, last) {
        (report.window_s, report.events_per_s) = (seconds, rate);
    }
    if let Some((seconds, rate)) = stats::throughput(report.events, first_commit, last) {
        (
            report.since_first_commit_s,
            report.events_per_s_since_first_commit,
        ) = (seconds, rate);
    }
    report.latency = Latency::from_nanos(&mut latencies);
    report.per_consumer_events = Spread::of(&uniques);
    for (name, pid, before, rss_before_kib, rss_created_kib) in cpu_before {
        let after = system::cpu_seconds(pid).unwrap_or(before);
        let run_s = after - before;
        let per_event_us = if report.events > 0 {
            run_s * 1e6 / report.events as f64
        } else {
            0.0
        };
        let grown = rss_created_kib.saturating_sub(rss_before_kib) as f64 * 1024.0;
        report.cpu.insert(
            name,
            ProcessCpu {
                run_s,
                per_event_us,
                rss_before_kib,
                rss_created_kib,
                rss_per_consumer_bytes: grown / report.created.max(1) as f64,
            },
        );
    }
    Ok(report)
}

/// The report for people.
pub fn summary(r: &JsReport) -> String {
    format!(
        "jsload[{}]: {} {:?} consumers ({} created in {:.1}s over {} connections), {} events in {:.2}s ({:.0}/s; {:.0}/s from the first commit), latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms, complete {}/{}, lost {}, duplicates {}, out of order {}, ended by {}{}",
        r.label,
        r.consumers,
        r.kind,
        r.created,
        r.create_s,
        r.connections,
        r.events,
        r.window_s,
        r.events_per_s,
        r.events_per_s_since_first_commit,
        r.latency.p50_ms,
        r.latency.p99_ms,
        r.latency.max_ms,
        r.complete,
        r.consumers,
        r.lost,
        r.duplicates,
        r.out_of_order,
        r.ended_by,
        if r.create_errors.is_empty() {
            String::new()
        } else {
            format!("; errors: {}", r.create_errors.join("; "))
        }
    )
}
