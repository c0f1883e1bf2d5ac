//! The client behind `rpcload`: N subscriptions to `valid_transactions` carried by N URL
//! connections, by JSON-RPC connections (`/api/v1/streams`, any number of subscriptions each)
//! or by the N members of one stream-sea consumer group, and what they cost the server
//! (loopback only).
//!
//! Runs, one per invocation:
//! - **read** (default): every event counted until `expect` arrived (over all subscriptions),
//!   nothing came for `quiet`, or `duration` passed; unique transaction ids over all of them
//!   (loss and duplicates across connections), events per connection, events/s, the server's
//!   RSS and CPU per delivered event.
//! - **unread**: every subscription confirmed, then nothing is read again (the client's
//!   receive buffers fill, then the server's queues); held for `duration` while the server's
//!   RSS is sampled, then every connection is closed at once. With `probe_source`, a prober on
//!   another address opens a JSON-RPC connection and subscribes, again and again, before and
//!   after that close: how long a newcomer waits while the server drops every subscription.
//! - **flood**: one connection sends a text frame that never ends followed by empty
//!   continuation frames, as fast as the socket takes them, for the given time; the server's
//!   CPU before and after.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use planetmint_streams_broadcaster::http::{stream_path, STREAMS_PATH};
use planetmint_streams_model::vocabulary::StreamKind;
use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::load::{open, source_ip, Spread};
use crate::loopback;
use crate::system::{cpu_seconds, vm_rss_kib};

/// Most subscriptions one run may open (4 addresses at the default per-address cap).
pub const MAX_SUBSCRIPTIONS: usize = 65_536;
/// Most connections one run may open.
pub const MAX_CONNECTIONS: usize = 4_096;
/// How often the server's RSS is sampled for the peak.
const RSS_SAMPLE: Duration = Duration::from_millis(100);
/// Connections opened (and their subscriptions confirmed) at once.
const OPEN_CONCURRENCY: usize = 32;
/// Longest wait for one connection's subscriptions to be confirmed.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// The consumer group every member of a `group` run joins (an RFC 4122 version 4 UUID).
pub const GROUP_ID: &str = "6f0d3c8e-2b7a-4e51-9c3d-8a1f5e2b7c40";
/// Pause between two probes.
const PROBE_PAUSE: Duration = Duration::from_millis(20);
/// Longest a single probe may take before it counts as failed.
const PROBE_LIMIT: Duration = Duration::from_secs(30);

type Ws = WebSocketStream<TcpStream>;

/// How the subscriptions are carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Carrier {
    /// One URL connection per subscription.
    Url,
    /// JSON-RPC connections, the subscriptions spread evenly over them.
    Rpc,
    /// One stream-sea connection per subscription, all members of one consumer group.
    Group,
}

/// What each subscription asks for besides the shared options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Subscription i of n takes `partition=i/n`: together every transaction once.
    Partition,
    /// Every subscription asks for the same (each gets every transaction it filters for).
    None,
}

/// What a run does once its subscriptions are open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    /// Count every event.
    Read,
    /// Never read again; hold, then close every connection at once.
    Unread,
    /// One connection sends empty continuation frames for this long.
    Flood(Duration),
}

/// A run of the channel client.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// The node's stream port, `ws://127.0.0.1:PORT`.
    pub base: String,
    /// How the subscriptions are carried.
    pub carrier: Carrier,
    /// Subscriptions in all.
    pub subscriptions: usize,
    /// JSON-RPC connections carrying them (`rpc` only; 1 by default).
    pub connections: usize,
    /// Partitioned or all the same.
    pub split: Split,
    /// More options for every subscription, as a URL query string (`batch=block&include=transaction`).
    pub query: String,
    /// Subscription i filters `public_key` = the (i mod K)-th key of [`public_key`] (0: none).
    pub public_keys: usize,
    /// Connection j comes from 127.0.0.(1 + j mod K) (0: the kernel's choice).
    pub source_ips: usize,
    /// Events expected over all subscriptions (read phase).
    pub expect: Option<u64>,
    /// The server whose RSS and CPU are read.
    pub server_pid: u32,
    /// Written once every subscription is confirmed.
    pub ready_file: Option<PathBuf>,
    /// Wait after subscribing before the "connected" readings; after closing, before "after".
    pub settle: Duration,
    /// Read phase: end once nothing arrived for this long after the first event.
    pub quiet: Duration,
    /// Read phase: longest run; unread phase: how long to hold.
    pub duration: Duration,
    /// What to do once subscribed.
    pub phase: Phase,
    /// Unread phase: probe new connections from this address around the close.
    pub probe_source: Option<Ipv4Addr>,
    /// How long to probe after the close (before it: 2 s).
    pub probe_after: Duration,
    /// Name of the run in the report.
    pub label: String,
}

/// A run that cannot start or failed on the way.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// A parameter is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The target is not loopback or not a URL.
    #[error(transparent)]
    Target(#[from] loopback::TargetError),
    /// Opening or subscribing failed.
    #[error("connection {index}: {reason}")]
    Subscribe {
        /// Which connection.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The server's /proc entries cannot be read.
    #[error("cannot read /proc of server process {pid}: {source}")]
    Server {
        /// The PID.
        pid: u32,
        /// Why.
        source: std::io::Error,
    },
    /// The ready file cannot be written.
    #[error("cannot write {path}: {source}")]
    ReadyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The flood's socket failed before it started.
    #[error("flood: {0}")]
    Flood(String),
}

/// One connection to open: where from, which URL, what to send, how many answers to await.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionPlan {
    /// The URL of its handshake.
    pub url: String,
    /// The source address.
    pub source: Option<IpAddr>,
    /// Text messages sent right after the handshake.
    pub requests: Vec<String>,
    /// Answers that confirm its subscriptions (URL streams: none).
    pub answers: usize,
}

/// The `index`-th of the shared public keys: 32 bytes of `index + 1`, base58.
pub fn public_key(index: usize) -> String {
    let byte = u8::try_from(index % 255 + 1).unwrap_or(1);
    bs58::encode([byte; 32]).into_string()
}

/// The URL query options of subscription `i` of `n` (without `?`).
fn options(config: &ChannelConfig, i: usize) -> Vec<(String, String)> {
    let mut options = Vec::new();
    if config.split == Split::Partition {
        options.push((
            "partition".to_owned(),
            format!("{i}/{}", config.subscriptions),
        ));
    }
    if config.public_keys > 0 {
        options.push(("public_key".to_owned(), public_key(i % config.public_keys)));
    }
    for pair in config.query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        options.push((key.to_owned(), value.to_owned()));
    }
    options
}

fn query_string(options: &[(String, String)]) -> String {
    options
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A JSON-RPC `subscribe` request for `valid_transactions` with these URL options: filters
/// as arrays, `from_height` as a number, the rest as strings.
pub fn rpc_subscribe(id: usize, options: &[(String, String)]) -> String {
    let mut params = Map::new();
    params.insert(
        "stream".to_owned(),
        json!(StreamKind::ValidTransactions.name()),
    );
    for (key, value) in options {
        match key.as_str() {
            "public_key" | "asset_id" | "operation" => {
                let entry = params.entry(key.clone()).or_insert_with(|| json!([]));
                if let Some(list) = entry.as_array_mut() {
                    list.push(json!(value));
                }
            }
            "from_height" => {
                params.insert(
                    key.clone(),
                    value
                        .parse::<u64>()
                        .map_or_else(|_| json!(value), |h| json!(h)),
                );
            }
            _ => {
                params.insert(key.clone(), json!(value));
            }
        }
    }
    json!({"jsonrpc": "2.0", "id": id, "method": "subscribe", "params": params}).to_string()
}

/// stream-sea's first message: basic credentials (any authenticate in open mode).
pub fn streamsea_authenticate(id: usize) -> String {
    json!({"id": id, "action": "authenticate",
           "payload": {"type": "basic", "clientId": "rpcload", "clientSecret": "rpcload"}})
    .to_string()
}

/// stream-sea's `subscribe` of `valid_transactions` (with the URL options) in `group`.
pub fn streamsea_subscribe(id: usize, options: &[(String, String)], group: Option<&str>) -> String {
    let mut payload = StreamKind::ValidTransactions.name().to_owned();
    if !options.is_empty() {
        payload.push('?');
        payload.push_str(&query_string(options));
    }
    let mut message = json!({"id": id, "action": "subscribe", "payload": payload});
    if let Some(group) = group {
        message["groupId"] = json!(group);
    }
    message.to_string()
}

/// The connections a run opens.
pub fn plan(config: &ChannelConfig) -> Result<Vec<ConnectionPlan>, ChannelError> {
    let n = config.subscriptions;
    if n == 0 || n > MAX_SUBSCRIPTIONS {
        return Err(ChannelError::Invalid(format!(
            "subscriptions must be 1 to {MAX_SUBSCRIPTIONS}"
        )));
    }
    let connections = match config.carrier {
        Carrier::Rpc => config.connections.max(1),
        Carrier::Url | Carrier::Group => n,
    };
    if connections > MAX_CONNECTIONS || connections > n {
        return Err(ChannelError::Invalid(format!(
            "connections must be 1 to min(subscriptions, {MAX_CONNECTIONS})"
        )));
    }
    if config.carrier == Carrier::Group && config.split == Split::Partition {
        return Err(ChannelError::Invalid(
            "a consumer group splits the stream itself: use --split none".into(),
        ));
    }
    let base = config.base.trim_end_matches('/');
    let source = |j: usize| source_ip(j, config.source_ips, Ipv4Addr::new(127, 0, 0, 1));
    let mut plans = Vec::with_capacity(connections);
    match config.carrier {
        Carrier::Url => {
            for i in 0..n {
                let query = query_string(&options(config, i));
                let mut url = format!("{base}{}", stream_path(StreamKind::ValidTransactions));
                if !query.is_empty() {
                    url.push('?');
                    url.push_str(&query);
                }
                plans.push(ConnectionPlan {
                    url,
                    source: source(i),
                    requests: Vec::new(),
                    answers: 0,
                });
            }
        }
        Carrier::Rpc => {
            for j in 0..connections {
                let requests: Vec<String> = (j..n)
                    .step_by(connections)
                    .map(|i| rpc_subscribe(i, &options(config, i)))
                    .collect();
                plans.push(ConnectionPlan {
                    url: format!("{base}{STREAMS_PATH}"),
                    source: source(j),
                    answers: requests.len(),
                    requests,
                });
            }
        }
        Carrier::Group => {
            for i in 0..n {
                plans.push(ConnectionPlan {
                    url: format!("{base}{STREAMS_PATH}"),
                    source: source(i),
                    requests: vec![
                        streamsea_authenticate(1),
                        streamsea_subscribe(2, &options(config, i), Some(GROUP_ID)),
                    ],
                    answers: 2,
                });
            }
        }
    }
    for plan in &plans {
        loopback::ws_target(&plan.url)?;
    }
    Ok(plans)
}

/// What one message from the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// An answer to a request: accepted, or refused with the reason.
    Answer(Result<(), String>),
    /// Transaction ids delivered (one, or a `batch=block` message's).
    Events(Vec<String>),
    /// Anything else (a `closing` notice, ...).
    Other,
}

fn ids_of(event: &Value) -> Vec<String> {
    if let Some(id) = event["transaction_id"].as_str() {
        return vec![id.to_owned()];
    }
    event["transactions"]
        .as_array()
        .map(|txs| {
            txs.iter()
                .filter_map(|tx| tx["transaction_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads one server message as the carrier's protocol says.
pub fn classify(carrier: Carrier, text: &str) -> Inbound {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return Inbound::Other;
    };
    match carrier {
        Carrier::Url => Inbound::Events(ids_of(&value)),
        Carrier::Rpc => {
            if value.get("id").is_some_and(|id| !id.is_null()) {
                match value.get("error") {
                    Some(error) => Inbound::Answer(Err(error.to_string())),
                    None => Inbound::Answer(Ok(())),
                }
            } else if value["method"] == "subscription" {
                Inbound::Events(ids_of(&value["params"]["result"]))
            } else {
                Inbound::Other
            }
        }
        Carrier::Group => match value.get("success") {
            Some(Value::Bool(true)) => Inbound::Answer(Ok(())),
            Some(_) => Inbound::Answer(Err(value["payload"].to_string())),
            None if value["action"] == "subscription" => Inbound::Events(ids_of(&value["payload"])),
            None => Inbound::Other,
        },
    }
}

/// Opens one planned connection and waits until every subscription on it is confirmed.
async fn open_planned(
    index: usize,
    plan: ConnectionPlan,
    carrier: Carrier,
) -> Result<Ws, ChannelError> {
    let fail = |reason: String| ChannelError::Subscribe { index, reason };
    let target = loopback::ws_target(&plan.url)?;
    let config = WebSocketConfig::default().write_buffer_size(0);
    let mut ws = open(&target, plan.source, config, Duration::from_secs(30))
        .await
        .map_err(fail)?;
    for request in plan.requests {
        ws.feed(Message::Text(request.into()))
            .await
            .map_err(|e| fail(e.to_string()))?;
    }
    ws.flush().await.map_err(|e| fail(e.to_string()))?;
    let mut answered = 0;
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    while answered < plan.answers {
        let message = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| fail(format!("{answered} of {} answers in time", plan.answers)))?
            .ok_or_else(|| fail("closed while subscribing".into()))?
            .map_err(|e| fail(e.to_string()))?;
        let Message::Text(text) = message else {
            continue;
        };
        match classify(carrier, text.as_str()) {
            Inbound::Answer(Ok(())) => answered += 1,
            Inbound::Answer(Err(error)) => return Err(fail(format!("refused: {error}"))),
            Inbound::Events(_) | Inbound::Other => {}
        }
    }
    Ok(ws)
}

/// Server memory (KiB, `VmRSS`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rss {
    /// Before connecting.
    pub before_kib: u64,
    /// Every subscription confirmed, after `settle`.
    pub connected_kib: u64,
    /// Highest reading (every 100 ms) while subscribed.
    pub peak_kib: u64,
    /// At the end of the run, before closing.
    pub end_kib: u64,
    /// `settle` after every connection was closed.
    pub after_kib: u64,
    /// `connected - before`.
    pub connected_over_before_kib: u64,
    /// `peak - before`.
    pub peak_over_before_kib: u64,
}

/// Server CPU (user + system seconds).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cpu {
    /// Opening and subscribing.
    pub connect_s: f64,
    /// From the ready signal to the end of the run.
    pub run_s: f64,
    /// `run_s` per delivered event, microseconds.
    pub per_event_us: f64,
}

/// One probe: a new JSON-RPC connection from another address, subscribing.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeSample {
    /// When it started, seconds relative to the close (negative: before it).
    pub at_s: f64,
    /// TCP connect plus the WebSocket handshake, ms.
    pub handshake_ms: f64,
    /// Connect to the `subscribe` answer, ms.
    pub subscribed_ms: f64,
    /// Why it failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The probes around the close.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProbeReport {
    /// Probes started before the close.
    pub before: usize,
    /// Longest connect-to-answer before the close, ms.
    pub before_max_ms: f64,
    /// Probes started after the close.
    pub after: usize,
    /// Longest connect-to-answer of a probe started after the close, ms.
    pub after_max_ms: f64,
    /// Longest handshake alone after the close, ms.
    pub after_max_handshake_ms: f64,
    /// Median connect-to-answer after the close, ms.
    pub after_p50_ms: f64,
    /// Probes that failed.
    pub failed: usize,
    /// Every probe.
    pub samples: Vec<ProbeSample>,
}

/// The flood's outcome.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FloodReport {
    /// Seconds the client sent.
    pub seconds: f64,
    /// Empty continuation frames written to the socket.
    pub frames: u64,
    /// Bytes written.
    pub bytes: u64,
    /// The server's CPU over the flood, seconds.
    pub server_cpu_s: f64,
    /// The same, plus `settle` after the client stopped sending.
    pub server_cpu_with_settle_s: f64,
    /// How the client's writing ended (`time`, or the socket's error).
    pub ended_by: String,
}

/// The machine-readable result (one JSON line).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChannelReport {
    /// `"rpcload"`.
    pub tool: &'static str,
    /// The run's name.
    pub label: String,
    /// How the subscriptions were carried.
    pub carrier: Option<Carrier>,
    /// `read`, `unread` or `flood`.
    pub phase: &'static str,
    /// Subscriptions opened.
    pub subscriptions: usize,
    /// Connections carrying them.
    pub connections: usize,
    /// Events expected over all subscriptions.
    pub expected: Option<u64>,
    /// Events received.
    pub events: u64,
    /// Distinct transaction ids.
    pub unique: u64,
    /// `expected - unique`.
    pub lost: u64,
    /// `events - unique`.
    pub duplicates: u64,
    /// Events per connection.
    pub per_connection_events: Spread,
    /// Connections the server ended during a read run.
    pub closed_by_server: usize,
    /// Opening and subscribing, seconds.
    pub connect_s: f64,
    /// First to last event, seconds.
    pub delivery_s: f64,
    /// `events / delivery_s`.
    pub events_per_s: f64,
    /// Server memory.
    pub server_rss: Rss,
    /// Server CPU.
    pub server_cpu: Cpu,
    /// Unread runs with a probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeReport>,
    /// Flood runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flood: Option<FloodReport>,
}

fn proc_error(pid: u32) -> impl Fn(std::io::Error) -> ChannelError {
    move |source| ChannelError::Server { pid, source }
}

/// Samples the server's RSS every 100 ms into `peak` until aborted.
fn sample_peak(pid: u32, peak: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RSS_SAMPLE).await;
            if let Ok(rss) = vm_rss_kib(pid) {
                peak.fetch_max(rss, Ordering::Relaxed);
            }
        }
    })
}

/// Runs as configured.
pub async fn run(config: ChannelConfig) -> Result<ChannelReport, ChannelError> {
    let pid = config.server_pid;
    let mut report = ChannelReport {
        tool: "rpcload",
        label: config.label.clone(),
        carrier: Some(config.carrier),
        expected: config.expect,
        ..ChannelReport::default()
    };
    report.server_rss.before_kib = vm_rss_kib(pid).map_err(proc_error(pid))?;
    if let Phase::Flood(length) = config.phase {
        report.phase = "flood";
        report.flood = Some(flood(&config, length).await?);
        report.server_rss.end_kib = vm_rss_kib(pid).map_err(proc_error(pid))?;
        return Ok(report);
    }
    let plans = plan(&config)?;
    report.subscriptions = config.subscriptions;
    report.connections = plans.len();
    let cpu_before = cpu_seconds(pid).map_err(proc_error(pid))?;
    let started = Instant::now();
    let carrier = config.carrier;
    let mut opened: Vec<(usize, Ws)> = futures_util::stream::iter(plans.into_iter().enumerate())
        .map(|(index, plan)| async move {
            open_planned(index, plan, carrier)
                .await
                .map(|ws| (index, ws))
        })
        .buffer_unordered(OPEN_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    opened.sort_by_key(|(index, _)| *index);
    report.connect_s = started.elapsed().as_secs_f64();
    eprintln!(
        "rpcload[{}]: {} subscriptions confirmed on {} connections in {:.2} s",
        config.label, config.subscriptions, report.connections, report.connect_s
    );
    tokio::time::sleep(config.settle).await;
    report.server_rss.connected_kib = vm_rss_kib(pid).map_err(proc_error(pid))?;
    let cpu_start = cpu_seconds(pid).map_err(proc_error(pid))?;
    report.server_cpu.connect_s = cpu_start - cpu_before;
    let peak = Arc::new(AtomicU64::new(report.server_rss.connected_kib));
    let sampler = sample_peak(pid, peak.clone());
    if let Some(path) = &config.ready_file {
        std::fs::write(path, "ready\n").map_err(|source| ChannelError::ReadyFile {
            path: path.clone(),
            source,
        })?;
    }
    let connections: Vec<Ws> = opened.into_iter().map(|(_, ws)| ws).collect();
    match config.phase {
        Phase::Unread => {
            report.phase = "unread";
            tokio::time::sleep(config.duration).await;
            report.server_rss.end_kib = vm_rss_kib(pid).map_err(proc_error(pid))?;
            report.server_cpu.run_s = cpu_seconds(pid).map_err(proc_error(pid))? - cpu_start;
            report.probe = close_all(&config, connections).await;
        }
        Phase::Read | Phase::Flood(_) => {
            report.phase = "read";
            read_all(&config, connections, &mut report).await;
            report.server_cpu.run_s = cpu_seconds(pid).map_err(proc_error(pid))? - cpu_start;
            report.server_rss.end_kib = vm_rss_kib(pid).map_err(proc_error(pid))?;
            if report.events > 0 {
                report.server_cpu.per_event_us =
                    report.server_cpu.run_s * 1e6 / report.events as f64;
            }
        }
    }
    sampler.abort();
    let rss = &mut report.server_rss;
    rss.peak_kib = peak.load(Ordering::Relaxed).max(rss.end_kib);
    tokio::time::sleep(config.settle).await;
    rss.after_kib = vm_rss_kib(pid).map_err(proc_error(pid))?;
    rss.connected_over_before_kib = rss.connected_kib.saturating_sub(rss.before_kib);
    rss.peak_over_before_kib = rss.peak_kib.saturating_sub(rss.before_kib);
    Ok(report)
}

/// The read phase: counts every event of every connection.
async fn read_all(config: &ChannelConfig, connections: Vec<Ws>, report: &mut ChannelReport) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Option<Vec<String>>)>();
    let carrier = config.carrier;
    let tasks: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(index, mut ws)| {
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(Ok(message)) = ws.next().await {
                    if let Message::Text(text) = message {
                        if let Inbound::Events(ids) = classify(carrier, text.as_str()) {
                            if tx.send((index, Some(ids))).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = tx.send((index, None));
            })
        })
        .collect();
    drop(tx);
    let mut per_connection = vec![0u64; tasks.len()];
    let mut unique: HashSet<String> = HashSet::new();
    let started = Instant::now();
    let deadline = started + config.duration;
    let (mut first, mut last) = (None::<Instant>, started);
    let expect = config.expect.unwrap_or(u64::MAX);
    while report.events < expect {
        let until = match first {
            Some(_) => (last + config.quiet).min(deadline),
            None => deadline,
        };
        match tokio::time::timeout_at(until, rx.recv()).await {
            Ok(Some((index, Some(ids)))) => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                report.events += ids.len() as u64;
                per_connection[index] += ids.len() as u64;
                unique.extend(ids);
            }
            Ok(Some((_, None))) => report.closed_by_server += 1,
            Ok(None) | Err(_) => break,
        }
    }
    for task in &tasks {
        task.abort();
    }
    report.unique = unique.len() as u64;
    report.lost = config.expect.map_or(0, |e| e.saturating_sub(report.unique));
    report.duplicates = report.events - report.unique;
    report.per_connection_events = Spread::of(&per_connection);
    if let Some(f) = first {
        report.delivery_s = last.duration_since(f).as_secs_f64();
        if report.delivery_s > 0.0 {
            report.events_per_s = report.events as f64 / report.delivery_s;
        }
    }
}

/// One probe: connect from `source`, subscribe to `valid_blocks` over JSON-RPC, await the answer.
async fn probe_once(base: &str, source: Ipv4Addr) -> (f64, f64, Option<String>) {
    let started = Instant::now();
    let ms = |since: Instant| since.elapsed().as_secs_f64() * 1e3;
    let attempt = async {
        let target =
            loopback::ws_target(&format!("{base}{STREAMS_PATH}")).map_err(|e| e.to_string())?;
        let mut ws = open(
            &target,
            Some(IpAddr::V4(source)),
            WebSocketConfig::default(),
            PROBE_LIMIT,
        )
        .await?;
        let handshake = ms(started);
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": "subscribe",
                             "params": {"stream": StreamKind::ValidBlocks.name()}});
        ws.send(Message::Text(request.to_string().into()))
            .await
            .map_err(|e| e.to_string())?;
        while let Some(message) = ws.next().await {
            if let Message::Text(text) = message.map_err(|e| e.to_string())? {
                match classify(Carrier::Rpc, text.as_str()) {
                    Inbound::Answer(Ok(())) => return Ok(handshake),
                    Inbound::Answer(Err(error)) => return Err(format!("refused: {error}")),
                    _ => {}
                }
            }
        }
        Err("closed before the answer".to_owned())
    };
    match tokio::time::timeout(PROBE_LIMIT, attempt).await {
        Ok(Ok(handshake)) => (handshake, ms(started), None),
        Ok(Err(error)) => (ms(started), ms(started), Some(error)),
        Err(_) => (ms(started), ms(started), Some("timed out".to_owned())),
    }
}

/// Closes every connection at once; with a probe source, probes from 2 s before to
/// `probe_after` after.
async fn close_all(config: &ChannelConfig, connections: Vec<Ws>) -> Option<ProbeReport> {
    let Some(source) = config.probe_source else {
        drop(connections);
        return None;
    };
    let base = config.base.trim_end_matches('/').to_owned();
    let close_at = Instant::now() + Duration::from_secs(2);
    let end = close_at + config.probe_after;
    let prober = tokio::spawn(async move {
        let mut samples = Vec::new();
        while Instant::now() < end {
            let at = Instant::now();
            let at_s = if at >= close_at {
                at.duration_since(close_at).as_secs_f64()
            } else {
                -close_at.duration_since(at).as_secs_f64()
            };
            let (handshake_ms, subscribed_ms, error) = probe_once(&base, source).await;
            samples.push(ProbeSample {
                at_s,
                handshake_ms,
                subscribed_ms,
                error,
            });
            tokio::time::sleep(PROBE_PAUSE).await;
        }
        samples
    });
    tokio::time::sleep_until(close_at).await;
    // Every socket closed in the same instant (unread data makes it a reset).
    drop(connections);
    let samples = prober.await.unwrap_or_default();
    let mut report = ProbeReport::default();
    let mut after: Vec<f64> = Vec::new();
    for sample in &samples {
        if sample.error.is_some() {
            report.failed += 1;
        }
        if sample.at_s < 0.0 {
            report.before += 1;
            report.before_max_ms = report.before_max_ms.max(sample.subscribed_ms);
        } else {
            report.after += 1;
            report.after_max_ms = report.after_max_ms.max(sample.subscribed_ms);
            report.after_max_handshake_ms = report.after_max_handshake_ms.max(sample.handshake_ms);
            after.push(sample.subscribed_ms);
        }
    }
    after.sort_by(f64::total_cmp);
    if !after.is_empty() {
        report.after_p50_ms = after[(after.len() - 1) / 2];
    }
    report.samples = samples;
    Some(report)
}

/// The first frame of the flood: a masked text frame (FIN clear) carrying `[`.
pub const FLOOD_OPENING: [u8; 7] = [0x01, 0x81, 1, 2, 3, 4, b'[' ^ 1];
/// One empty continuation frame (FIN clear, masked, no payload).
pub const EMPTY_CONTINUATION: [u8; 6] = [0x00, 0x80, 1, 2, 3, 4];

/// The flood: one connection of the carrier's kind, a text message that never ends.
async fn flood(config: &ChannelConfig, length: Duration) -> Result<FloodReport, ChannelError> {
    let base = config.base.trim_end_matches('/');
    let url = match config.carrier {
        Carrier::Url => format!("{base}{}", stream_path(StreamKind::ValidTransactions)),
        Carrier::Rpc | Carrier::Group => format!("{base}{STREAMS_PATH}"),
    };
    let target = loopback::ws_target(&url)?;
    let source = source_ip(0, config.source_ips, Ipv4Addr::new(127, 0, 0, 1));
    let ws = open(
        &target,
        source,
        WebSocketConfig::default(),
        Duration::from_secs(10),
    )
    .await
    .map_err(ChannelError::Flood)?;
    let mut stream = ws.into_inner();
    let pid = config.server_pid;
    let burst: Vec<u8> = EMPTY_CONTINUATION.repeat(64 * 1024 / EMPTY_CONTINUATION.len());
    let mut report = FloodReport {
        ended_by: "time".to_owned(),
        ..FloodReport::default()
    };
    let cpu_before = cpu_seconds(pid).map_err(proc_error(pid))?;
    let started = Instant::now();
    let deadline = started + length;
    stream
        .write_all(&FLOOD_OPENING)
        .await
        .map_err(|e| ChannelError::Flood(e.to_string()))?;
    let mut offset = 0;
    while Instant::now() < deadline {
        match tokio::time::timeout_at(deadline, stream.write(&burst[offset..])).await {
            Err(_) => break,
            Ok(Ok(0)) => {
                report.ended_by = "closed".to_owned();
                break;
            }
            Ok(Ok(written)) => {
                report.bytes += written as u64;
                offset = (offset + written) % EMPTY_CONTINUATION.len();
            }
            Ok(Err(err)) => {
                report.ended_by = format!("io_{:?}", err.kind()).to_lowercase();
                break;
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.server_cpu_s = cpu_seconds(pid).map_err(proc_error(pid))? - cpu_before;
    report.frames = report.bytes / EMPTY_CONTINUATION.len() as u64;
    tokio::time::sleep(config.settle).await;
    report.server_cpu_with_settle_s = cpu_seconds(pid).map_err(proc_error(pid))? - cpu_before;
    drop(stream);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(carrier: Carrier, n: usize) -> ChannelConfig {
        ChannelConfig {
            base: "ws://127.0.0.1:9985".into(),
            carrier,
            subscriptions: n,
            connections: 1,
            split: Split::Partition,
            query: String::new(),
            public_keys: 0,
            source_ips: 0,
            expect: None,
            server_pid: 1,
            ready_file: None,
            settle: Duration::ZERO,
            quiet: Duration::from_secs(1),
            duration: Duration::from_secs(1),
            phase: Phase::Read,
            probe_source: None,
            probe_after: Duration::ZERO,
            label: "t".into(),
        }
    }

    #[test]
    fn url_connections_carry_one_partition_each() {
        let mut c = config(Carrier::Url, 3);
        c.query = "batch=block&include=transaction".into();
        let plans = plan(&c).expect("plan");
        assert_eq!(plans.len(), 3);
        assert_eq!(
            plans[2].url,
            "ws://127.0.0.1:9985/api/v1/streams/valid_transactions?partition=2/3&batch=block&include=transaction"
        );
        assert_eq!(plans[2].answers, 0);
    }

    #[test]
    fn rpc_subscriptions_spread_over_connections_and_addresses() {
        let mut c = config(Carrier::Rpc, 10);
        c.connections = 4;
        c.split = Split::None;
        c.public_keys = 4;
        c.source_ips = 2;
        let plans = plan(&c).expect("plan");
        let counts: Vec<usize> = plans.iter().map(|p| p.answers).collect();
        assert_eq!(counts, vec![3, 3, 2, 2]);
        assert_eq!(plans[1].source, Some("127.0.0.2".parse().expect("ip")));
        assert_eq!(plans[2].source, Some("127.0.0.1".parse().expect("ip")));
        assert!(plans
            .iter()
            .all(|p| p.url == "ws://127.0.0.1:9985/api/v1/streams"));
        let request: Value = serde_json::from_str(&plans[1].requests[0]).expect("json");
        assert_eq!(request["method"], "subscribe");
        assert_eq!(request["params"]["stream"], "valid_transactions");
        assert_eq!(request["params"]["public_key"], json!([public_key(1)]));
        assert!(request["params"].get("partition").is_none());
        assert_ne!(public_key(0), public_key(1));
        assert_eq!(
            bs58::decode(public_key(3))
                .into_vec()
                .expect("base58")
                .len(),
            32
        );
    }

    #[test]
    fn rpc_params_take_the_url_options_types() {
        let options = vec![
            ("from_height".to_owned(), "12".to_owned()),
            ("batch".to_owned(), "block".to_owned()),
            ("operation".to_owned(), "CREATE".to_owned()),
            ("partition".to_owned(), "1/4".to_owned()),
        ];
        let request: Value = serde_json::from_str(&rpc_subscribe(7, &options)).expect("json");
        assert_eq!(request["id"], 7);
        assert_eq!(request["params"]["from_height"], 12);
        assert_eq!(request["params"]["batch"], "block");
        assert_eq!(request["params"]["operation"], json!(["CREATE"]));
        assert_eq!(request["params"]["partition"], "1/4");
    }

    #[test]
    fn group_members_authenticate_then_join_one_group() {
        let mut c = config(Carrier::Group, 2);
        assert!(plan(&c).is_err(), "partition with a group is refused");
        c.split = Split::None;
        let plans = plan(&c).expect("plan");
        assert_eq!(plans.len(), 2);
        let auth: Value = serde_json::from_str(&plans[0].requests[0]).expect("json");
        assert_eq!(auth["action"], "authenticate");
        assert_eq!(auth["payload"]["type"], "basic");
        let sub: Value = serde_json::from_str(&plans[1].requests[1]).expect("json");
        assert_eq!(sub["action"], "subscribe");
        assert_eq!(sub["payload"], "valid_transactions");
        assert_eq!(sub["groupId"], GROUP_ID);
        assert_eq!(plans[1].answers, 2);
    }

    #[test]
    fn messages_are_read_as_each_protocol_sends_them() {
        let tx = r#"{"transaction_id":"aa","asset_id":"aa","asset_ids":["aa"],"height":3}"#;
        assert_eq!(
            classify(Carrier::Url, tx),
            Inbound::Events(vec!["aa".into()])
        );
        let batch =
            r#"{"height":3,"transactions":[{"transaction_id":"a"},{"transaction_id":"b"}]}"#;
        assert_eq!(
            classify(Carrier::Url, batch),
            Inbound::Events(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            classify(Carrier::Rpc, r#"{"jsonrpc":"2.0","id":4,"result":"4"}"#),
            Inbound::Answer(Ok(()))
        );
        assert!(matches!(
            classify(
                Carrier::Rpc,
                r#"{"jsonrpc":"2.0","id":4,"error":{"code":-32002}}"#
            ),
            Inbound::Answer(Err(_))
        ));
        let note = format!(
            r#"{{"jsonrpc":"2.0","method":"subscription","params":{{"subscription":"1","result":{tx}}}}}"#
        );
        assert_eq!(
            classify(Carrier::Rpc, &note),
            Inbound::Events(vec!["aa".into()])
        );
        assert_eq!(
            classify(
                Carrier::Rpc,
                r#"{"jsonrpc":"2.0","method":"closing","params":{}}"#
            ),
            Inbound::Other
        );
        assert_eq!(
            classify(
                Carrier::Group,
                r#"{"id":2,"action":"subscription","success":true,"streamName":"valid_transactions","payload":2}"#
            ),
            Inbound::Answer(Ok(()))
        );
        assert!(matches!(
            classify(
                Carrier::Group,
                r#"{"id":1,"action":"authenticate","success":false,"payload":{"error":"x"}}"#
            ),
            Inbound::Answer(Err(_))
        ));
        let delivery = format!(
            r#"{{"id":2,"action":"subscription","streamName":"valid_transactions","payload":{tx}}}"#
        );
        assert_eq!(
            classify(Carrier::Group, &delivery),
            Inbound::Events(vec!["aa".into()])
        );
        assert_eq!(classify(Carrier::Group, "not json"), Inbound::Other);
    }

    #[test]
    fn flood_frames_are_what_rfc_6455_calls_them() {
        use crate::wsframe::{parse_head, OPCODE_TEXT};
        let opening = parse_head(&FLOOD_OPENING).expect("head");
        assert_eq!(
            (
                opening.fin,
                opening.opcode,
                opening.payload_len,
                opening.total_len()
            ),
            (false, OPCODE_TEXT, 1, FLOOD_OPENING.len())
        );
        let empty = parse_head(&EMPTY_CONTINUATION).expect("head");
        assert_eq!(
            (
                empty.fin,
                empty.opcode,
                empty.payload_len,
                empty.total_len()
            ),
            (false, 0, 0, EMPTY_CONTINUATION.len())
        );
        assert!(empty.mask.is_some(), "client frames are masked");
    }
}
