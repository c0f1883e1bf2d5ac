//! The load client behind `wsload`: N WebSocket subscribers (plus K that never read) opened at
//! a fixed rate, then either measured (every message parsed, latency from the commit time in
//! its id) or held idle; bounded in count and time, loopback only. For an `http://` URL the
//! subscribers read the stream as Server-Sent Events instead ([`crate::sse`]): the same
//! messages, measured the same way.
//!
//! Phases: connect (ramped, at most `connect_concurrency` handshakes at once), then the ready
//! signal (`ready_file`), then the run, which ends at the first of: every subscriber has its
//! `expect` events, nothing arrived for `quiet` after the first event, `duration` passed, or
//! every subscriber was disconnected. Idle mode holds for `duration`. Then subscribers close,
//! and the never-reading ones are drained for a bounded time to see whether the server closed
//! them (and with which code).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::commit_time::now_nanos;
use crate::loopback::{Scheme, WsTarget};
use crate::sse::SseStream;
use crate::stats::{self, Latency, Received};
use crate::system::{cpu_seconds, vm_rss_kib};
use crate::wsframe::{close_code, parse_head, OPCODE_CLOSE, OPCODE_TEXT};

/// Most connections one run may open.
pub const MAX_CONNECTIONS: usize = 60_000;
/// Longest run (connect phase excluded).
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

type Ws = WebSocketStream<TcpStream>;

/// What the subscribers do once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Read and parse every message; latency, throughput, loss.
    Measure,
    /// Hold the connections open (answering pings) and count how many stay open.
    Idle,
}

/// A run of the load client.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Where to connect (already checked to be loopback).
    pub target: WsTarget,
    /// Measure or idle.
    pub mode: Mode,
    /// Subscribers that read.
    pub subscribers: usize,
    /// Subscribers that connect and never read.
    pub stalled: usize,
    /// New connections per second.
    pub connect_rate: f64,
    /// Most handshakes in flight at once.
    pub connect_concurrency: usize,
    /// Limit for one TCP connect plus handshake.
    pub connect_timeout: Duration,
    /// Events each reading subscriber should get.
    pub expect: Option<u64>,
    /// Longest run after the connect phase (idle: how long to hold).
    pub duration: Duration,
    /// Measure: end once nothing arrived for this long after the first event.
    pub quiet: Duration,
    /// Spread connections over this many source addresses `source_base`, the next, ... (0:
    /// kernel's choice).
    pub source_ips: usize,
    /// The first source address (127.0.0.1 unless another is asked for, e.g. a bystander on
    /// 127.0.0.2 beside load from 127.0.0.1).
    pub source_base: Ipv4Addr,
    /// WebSocket read buffer per connection.
    pub read_buffer: usize,
    /// Most latency/id samples kept per subscriber.
    pub max_samples: usize,
    /// Server process whose RSS to sample.
    pub server_pid: Option<u32>,
    /// Wait after connecting before the "connected" RSS reading.
    pub settle: Duration,
    /// Written (JSON) when every connection is open: the signal to start writing blocks.
    pub ready_file: Option<PathBuf>,
    /// How long to read the never-reading subscribers at the end to see how they ended.
    pub stalled_drain: Duration,
    /// Per-connection limit for the closing handshake.
    pub close_timeout: Duration,
    /// Name of the run in the report.
    pub label: String,
    /// Include every subscriber's unique event count in the report.
    pub per_subscriber: bool,
}

/// Server memory, in KiB, from `/proc/PID/status` `VmRSS`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerRss {
    /// Before the first connection.
    pub before_kib: u64,
    /// After every connection was open and `settle` passed.
    pub connected_kib: u64,
    /// Highest reading during the run (every 100 ms).
    pub peak_kib: u64,
    /// At the end of the run, before closing.
    pub end_kib: u64,
    /// `(connected - before) / connections`, in bytes.
    pub per_connection_bytes: f64,
}

/// Server CPU time (user + system, `/proc/PID/stat`), in seconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerCpu {
    /// Before the first connection.
    pub before_s: f64,
    /// Once every connection was open (after `settle`): the connect phase cost `connected_s - before_s`.
    pub connected_s: f64,
    /// At the end of the run, before closing.
    pub end_s: f64,
    /// `end_s - connected_s`: what the run itself (the deliveries) cost.
    pub run_s: f64,
    /// `run_s / events` (events received by the reading subscribers), in microseconds.
    pub per_event_us: f64,
}

/// Min, mean and max over subscribers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Spread {
    /// Smallest.
    pub min: u64,
    /// Mean.
    pub mean: f64,
    /// Largest.
    pub max: u64,
}

impl Spread {
    /// The spread of `values` (zeros when empty).
    pub fn of(values: &[u64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        Self {
            min: values.iter().copied().min().unwrap_or(0),
            mean: values.iter().sum::<u64>() as f64 / values.len() as f64,
            max: values.iter().copied().max().unwrap_or(0),
        }
    }
}

/// The machine-readable result of a run (one JSON line).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `"wsload"`.
    pub tool: &'static str,
    /// The run's name.
    pub label: String,
    /// Measure or idle.
    pub mode: Mode,
    /// Target URL.
    pub url: String,
    /// Reading subscribers asked for.
    pub subscribers: usize,
    /// Reading subscribers connected.
    pub connected: usize,
    /// Never-reading subscribers asked for.
    pub stalled: usize,
    /// Never-reading subscribers connected.
    pub stalled_connected: usize,
    /// Connections that failed (both kinds).
    pub connect_failed: usize,
    /// The distinct connection errors (at most 5).
    pub connect_errors: Vec<String>,
    /// Length of the connect phase.
    pub connect_s: f64,
    /// Events expected per reading subscriber.
    pub expect: Option<u64>,
    /// Why the run ended: `complete`, `quiet`, `duration`, `all_closed`, `hold`.
    pub ended_by: String,
    /// Length of the run (ready signal to end).
    pub run_s: f64,
    /// Events received by the reading subscribers.
    pub events: u64,
    /// WebSocket messages received by the reading subscribers.
    pub messages: u64,
    /// First to last event arrival over all reading subscribers.
    pub window_s: f64,
    /// `events / window_s`.
    pub events_per_s: f64,
    /// From the first reading subscriber's handshake to the last event: the window for
    /// replays (`from_height`), where the server works before the first event arrives.
    pub since_connect_s: f64,
    /// `events / since_connect_s`.
    pub events_per_s_since_connect: f64,
    /// From the earliest commit time (id) of any event to the last event: the window for
    /// fan-out, covering the server's whole path from the first commit.
    pub since_first_commit_s: f64,
    /// `events / since_first_commit_s`.
    pub events_per_s_since_first_commit: f64,
    /// Commit-to-arrival latency over every event with a commit-time id.
    pub latency: Latency,
    /// `batch=block` messages: arrival minus the earliest commit time among the block's
    /// events, one sample per block message (absent when none arrived).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_latency: Option<Latency>,
    /// Reading subscribers with every expected event (none lost).
    pub complete: usize,
    /// Expected events missing, summed over subscribers.
    pub lost: u64,
    /// Extra copies of events, summed.
    pub duplicates: u64,
    /// Events delivered after a later-committed one, summed.
    pub out_of_order: u64,
    /// Events with a height below one seen before, summed.
    pub height_regressions: u64,
    /// Text messages that were not JSON.
    pub parse_errors: u64,
    /// JSON messages of no known shape.
    pub unrecognized: u64,
    /// Events whose id is not a commit-time encoding (no latency for them).
    pub foreign_ids: u64,
    /// Events that arrived "before" their commit time (clock stepped).
    pub negative_latency: u64,
    /// Some subscriber hit `max_samples`: latency and duplicates cover only the samples kept.
    pub samples_truncated: bool,
    /// Unique events per reading subscriber.
    pub per_subscriber_events: Spread,
    /// Reading subscribers the server disconnected before the end.
    pub closed_by_server: usize,
    /// Their close codes, or how the socket ended without one (`eof`, `io_connectionreset`, ...).
    pub close_codes: BTreeMap<String, usize>,
    /// Reading subscribers still open when the run ended.
    pub open_at_end: usize,
    /// Never-reading subscribers the server closed (seen when they were drained at the end).
    pub stalled_closed_by_server: usize,
    /// Their close codes.
    pub stalled_close_codes: BTreeMap<String, usize>,
    /// Events the never-reading subscribers had waiting when drained.
    pub stalled_events: u64,
    /// Server memory, when `server_pid` was given.
    pub server_rss: Option<ServerRss>,
    /// Server CPU time, when `server_pid` was given.
    pub server_cpu: Option<ServerCpu>,
    /// Unique events of each reading subscriber, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<Vec<u64>>,
}

/// A failure that stops the run before it starts.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A parameter is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The server's memory cannot be read.
    #[error("cannot read the RSS of server process {pid}: {source}")]
    ServerPid {
        /// The PID given.
        pid: u32,
        /// Why.
        source: std::io::Error,
    },
    /// Writing the ready file failed.
    #[error("cannot write the ready file {path}: {source}")]
    ReadyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

struct Shared {
    /// Latest event arrival (ns since epoch), updated at most every few ms per subscriber.
    last_activity: AtomicU64,
    /// Reading subscribers that reached `expect`.
    done: AtomicUsize,
    /// Reading subscribers whose connection is open.
    open: AtomicUsize,
    /// Connection attempts finished (either kind, success or not).
    attempted: AtomicUsize,
    attempted_changed: Notify,
    stop: CancellationToken,
}

/// How a reading subscriber's connection ended.
#[derive(Debug, Default)]
struct SubscriberEnd {
    connect_error: Option<String>,
    /// When the handshake completed (ns since epoch).
    connected_ns: u64,
    /// The server closed it (close code, or how the socket ended without one).
    closed_by_server: Option<String>,
    received: Received,
}

fn validate(config: &LoadConfig) -> Result<(), LoadError> {
    let total = config.subscribers + config.stalled;
    if total == 0 || total > MAX_CONNECTIONS {
        return Err(LoadError::Invalid(format!(
            "subscribers + stalled must be between 1 and {MAX_CONNECTIONS} (got {total})"
        )));
    }
    if !(config.connect_rate > 0.0 && config.connect_rate.is_finite()) {
        return Err(LoadError::Invalid("connect rate must be positive".into()));
    }
    if config.duration.is_zero() || config.duration > MAX_DURATION {
        return Err(LoadError::Invalid(format!(
            "duration must be between 1 ms and {}s",
            MAX_DURATION.as_secs()
        )));
    }
    if config.source_ips > 1000 {
        return Err(LoadError::Invalid("at most 1000 source addresses".into()));
    }
    if config.source_ips > 0 && !config.target.addr.is_ipv4() {
        return Err(LoadError::Invalid(
            "source addresses 127.0.0.x need an IPv4 target".into(),
        ));
    }
    if config.target.scheme == Scheme::Http && config.stalled > 0 {
        return Err(LoadError::Invalid(
            "never-reading subscribers are WebSocket only (ws:// URL)".into(),
        ));
    }
    Ok(())
}

/// The `index`-th source address: `base`, the next, ... spread over `count` (127.0.0.1,
/// 127.0.0.2, ... from 127.0.0.1).
pub fn source_ip(index: usize, count: usize, base: Ipv4Addr) -> Option<IpAddr> {
    if count == 0 {
        return None;
    }
    let offset = u32::try_from(index % count).unwrap_or(0);
    Some(IpAddr::V4(Ipv4Addr::from(
        u32::from(base).wrapping_add(offset),
    )))
}

/// A TCP connection to `target` from `source` (the kernel's choice when `None`), with
/// `TCP_NODELAY`.
pub async fn connect_tcp(target: &WsTarget, source: Option<IpAddr>) -> Result<TcpStream, String> {
    let socket = if target.addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| format!("socket: {e}"))?;
    if let Some(ip) = source {
        socket
            .set_reuseaddr(true)
            .map_err(|e| format!("reuseaddr: {e}"))?;
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("bind {ip}: {e}"))?;
    }
    let stream = socket
        .connect(target.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    Ok(stream)
}

/// A WebSocket to `target` (a `ws://` URL) from `source`, within `limit` for the TCP connect
/// and the handshake together.
pub async fn open(
    target: &WsTarget,
    source: Option<IpAddr>,
    ws_config: WebSocketConfig,
    limit: Duration,
) -> Result<Ws, String> {
    let attempt = async {
        let stream = connect_tcp(target, source).await?;
        let (ws, _response) = tokio_tungstenite::client_async_with_config(
            target.url.as_str(),
            stream,
            Some(ws_config),
        )
        .await
        .map_err(|e| format!("handshake: {e}"))?;
        Ok(ws)
    };
    tokio::time::timeout(limit, attempt)
        .await
        .unwrap_or_else(|_| Err("timed out".to_owned()))
}

/// A short name for how a socket ended without a close frame (a key of `close_codes`).
fn socket_ending(err: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error;
    match err {
        Error::ConnectionClosed | Error::AlreadyClosed => "closed".to_owned(),
        Error::Io(io) => format!("io_{:?}", io.kind()).to_lowercase(),
        Error::Protocol(p) => format!("protocol: {p}"),
        other => format!("error: {other}"),
    }
}

fn frame_code(frame: Option<&tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> String {
    frame.map_or_else(|| "no_code".to_owned(), |f| u16::from(f.code).to_string())
}

/// A reading subscriber's connection: a WebSocket, or a Server-Sent Events response.
enum Reader {
    Ws(Box<Ws>),
    Sse(Box<SseStream>),
}

/// The text of one message.
enum Text {
    Ws(Utf8Bytes),
    Sse(String),
}

impl Text {
    fn as_str(&self) -> &str {
        match self {
            Text::Ws(text) => text.as_str(),
            Text::Sse(text) => text,
        }
    }
}

/// What a reader got next.
enum Inbound {
    /// A message (a WebSocket text message, an SSE event's data).
    Text(Text),
    /// A binary message (none expected).
    Binary,
    /// Pings, pongs, keep-alives.
    Nothing,
    /// The server ended it: the close code, SSE's `close <reason>`, or how the socket ended.
    Closed(String),
}

impl Reader {
    async fn open(
        target: &WsTarget,
        source: Option<IpAddr>,
        ws_config: WebSocketConfig,
        limit: Duration,
    ) -> Result<Self, String> {
        match target.scheme {
            Scheme::Ws => Ok(Reader::Ws(Box::new(
                open(target, source, ws_config, limit).await?,
            ))),
            Scheme::Http => {
                let attempt = async {
                    let stream = connect_tcp(target, source).await?;
                    SseStream::open(stream, target)
                        .await
                        .map_err(|e| format!("request: {e}"))
                };
                let sse = tokio::time::timeout(limit, attempt)
                    .await
                    .unwrap_or_else(|_| Err("timed out".to_owned()))?;
                Ok(Reader::Sse(Box::new(sse)))
            }
        }
    }

    async fn next(&mut self) -> Inbound {
        match self {
            Reader::Ws(ws) => match ws.next().await {
                Some(Ok(Message::Text(text))) => Inbound::Text(Text::Ws(text)),
                Some(Ok(Message::Binary(_))) => Inbound::Binary,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                    Inbound::Nothing
                }
                Some(Ok(Message::Close(frame))) => Inbound::Closed(frame_code(frame.as_ref())),
                Some(Err(err)) => Inbound::Closed(socket_ending(&err)),
                None => Inbound::Closed("eof".to_owned()),
            },
            Reader::Sse(sse) => match sse.next_event().await {
                Ok(Some(event)) if event.event == "close" => {
                    let reason = serde_json::from_str::<serde_json::Value>(&event.data)
                        .ok()
                        .and_then(|v| v["reason"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    Inbound::Closed(format!("close {reason}"))
                }
                Ok(Some(event)) => Inbound::Text(Text::Sse(event.data)),
                Ok(None) => Inbound::Closed("eof".to_owned()),
                Err(err) => Inbound::Closed(format!("sse: {err}")),
            },
        }
    }

    /// Ends the connection politely, within `limit`.
    async fn close(self, limit: Duration) {
        if let Reader::Ws(mut ws) = self {
            let _ = tokio::time::timeout(limit, async {
                if ws.close(None).await.is_ok() {
                    while let Some(Ok(_)) = ws.next().await {}
                }
            })
            .await;
        }
    }
}

/// One reading subscriber: connect, then read until stopped or disconnected.
async fn subscriber(
    index: usize,
    config: Arc<LoadConfig>,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    ws_config: WebSocketConfig,
) -> SubscriberEnd {
    let mut end = SubscriberEnd {
        received: Received::new(config.expect, config.max_samples),
        ..SubscriberEnd::default()
    };
    let opened = {
        let _permit = permits.acquire().await;
        Reader::open(
            &config.target,
            source_ip(index, config.source_ips, config.source_base),
            ws_config,
            config.connect_timeout,
        )
        .await
    };
    let mut reader = match opened {
        Ok(ws) => ws,
        Err(err) => {
            end.connect_error = Some(err);
            shared.attempted.fetch_add(1, Ordering::SeqCst);
            shared.attempted_changed.notify_waiters();
            return end;
        }
    };
    end.connected_ns = now_nanos();
    shared.open.fetch_add(1, Ordering::SeqCst);
    shared.attempted.fetch_add(1, Ordering::SeqCst);
    shared.attempted_changed.notify_waiters();

    let expect = config.expect.unwrap_or(u64::MAX);
    let mut done = false;
    let mut published_activity = 0u64;
    let stop = shared.stop.clone();
    loop {
        let message = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            message = reader.next() => message,
        };
        match message {
            Inbound::Text(text) => {
                let now = now_nanos();
                end.received.on_text(text.as_str(), now);
                if now.saturating_sub(published_activity) > 5_000_000 {
                    published_activity = now;
                    shared.last_activity.fetch_max(now, Ordering::Relaxed);
                }
                if !done && end.received.events >= expect {
                    done = true;
                    shared.last_activity.fetch_max(now, Ordering::Relaxed);
                    shared.done.fetch_add(1, Ordering::SeqCst);
                }
            }
            Inbound::Binary => end.received.binary += 1,
            Inbound::Nothing => {}
            Inbound::Closed(how) => {
                end.closed_by_server = Some(how);
                break;
            }
        }
    }
    if end.received.last_ns > 0 {
        shared
            .last_activity
            .fetch_max(end.received.last_ns, Ordering::Relaxed);
    }
    shared.open.fetch_sub(1, Ordering::SeqCst);
    if end.closed_by_server.is_none() {
        // Polite close, bounded: send ours, read until the server's (or the end).
        reader.close(config.close_timeout).await;
    }
    end
}

/// One never-reading subscriber: connect and hand the socket back untouched.
async fn stalled(
    index: usize,
    config: Arc<LoadConfig>,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    ws_config: WebSocketConfig,
) -> Result<Ws, String> {
    let opened = {
        let _permit = permits.acquire().await;
        open(
            &config.target,
            source_ip(index, config.source_ips, config.source_base),
            ws_config,
            config.connect_timeout,
        )
        .await
    };
    shared.attempted.fetch_add(1, Ordering::SeqCst);
    shared.attempted_changed.notify_waiters();
    opened
}

/// Reads a never-reading subscriber's backlog for at most `limit`: its events and how it ended
/// (`Some(code)` when the server closed it). Reads the raw socket (see [`crate::wsframe`]).
async fn drain(ws: Ws, limit: Duration) -> (Received, Option<String>) {
    let mut stream = ws.into_inner();
    let mut received = Received::new(None, 0);
    let deadline = Instant::now() + limit;
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let closed = loop {
        // Take every whole frame in the buffer.
        let mut used = 0;
        while let Some(head) = parse_head(&buf[used..]) {
            let end = used + head.total_len();
            if buf.len() < end {
                break;
            }
            let payload = &buf[used + head.header_len..end];
            match head.opcode {
                OPCODE_TEXT => match std::str::from_utf8(payload) {
                    Ok(text) => received.on_text(text, now_nanos()),
                    Err(_) => received.parse_errors += 1,
                },
                OPCODE_CLOSE => {
                    return (
                        received,
                        Some(close_code(payload).map_or("no_code".to_owned(), |c| c.to_string())),
                    );
                }
                _ => {}
            }
            used = end;
        }
        buf.drain(..used);
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => break None,
            Ok(Ok(0)) => break Some("eof".to_owned()),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(err)) => break Some(format!("io_{:?}", err.kind()).to_lowercase()),
        }
    };
    (received, closed)
}

fn write_ready_file(path: &PathBuf, connected: usize, stalled: usize) -> Result<(), LoadError> {
    let body = serde_json::json!({"connected": connected, "stalled_connected": stalled});
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{body}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| LoadError::ReadyFile {
            path: path.clone(),
            source,
        })
}

fn rss(pid: Option<u32>) -> u64 {
    pid.and_then(|p| vm_rss_kib(p).ok()).unwrap_or(0)
}

/// Runs the load as configured and reports. Progress goes to stderr.
pub async fn run(config: LoadConfig) -> Result<Report, LoadError> {
    validate(&config)?;
    let config = Arc::new(config);
    let shared = Arc::new(Shared {
        last_activity: AtomicU64::new(0),
        done: AtomicUsize::new(0),
        open: AtomicUsize::new(0),
        attempted: AtomicUsize::new(0),
        attempted_changed: Notify::new(),
        stop: CancellationToken::new(),
    });
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(config.read_buffer)
        .write_buffer_size(0);
    let permits = Arc::new(Semaphore::new(config.connect_concurrency.max(1)));
    let total = config.subscribers + config.stalled;
    let mut server_rss = match config.server_pid {
        Some(pid) => Some(ServerRss {
            before_kib: vm_rss_kib(pid).map_err(|source| LoadError::ServerPid { pid, source })?,
            ..ServerRss::default()
        }),
        None => None,
    };
    let mut server_cpu = config.server_pid.map(|pid| ServerCpu {
        before_s: cpu_seconds(pid).unwrap_or(0.0),
        ..ServerCpu::default()
    });

    // Connect phase: one task per connection, started on a fixed schedule. The never-reading
    // ones are spread evenly among the others.
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / config.connect_rate);
    let mut readers = Vec::with_capacity(config.subscribers);
    let mut stalls = Vec::with_capacity(config.stalled);
    let stall_every = total.checked_div(config.stalled).unwrap_or(usize::MAX);
    for index in 0..total {
        tokio::time::sleep_until(started + interval.mul_f64(index as f64)).await;
        let is_stalled = stalls.len() < config.stalled
            && (index % stall_every == stall_every - 1
                || total - index <= config.stalled - stalls.len());
        let (config, shared, permits) = (config.clone(), shared.clone(), permits.clone());
        if is_stalled {
            stalls.push(tokio::spawn(stalled(
                index, config, shared, permits, ws_config,
            )));
        } else {
            readers.push(tokio::spawn(subscriber(
                index, config, shared, permits, ws_config,
            )));
        }
    }
    let connect_deadline = Instant::now() + config.connect_timeout + Duration::from_secs(1);
    loop {
        let changed = shared.attempted_changed.notified();
        if shared.attempted.load(Ordering::SeqCst) >= total || Instant::now() >= connect_deadline {
            break;
        }
        let _ = tokio::time::timeout_at(connect_deadline, changed).await;
    }
    let mut stalled_streams = Vec::new();
    let mut connect_errors: BTreeMap<String, usize> = BTreeMap::new();
    for handle in stalls {
        match handle.await {
            Ok(Ok(ws)) => stalled_streams.push(ws),
            Ok(Err(err)) => *connect_errors.entry(err).or_default() += 1,
            Err(join) => *connect_errors.entry(join.to_string()).or_default() += 1,
        }
    }
    let connected = shared.open.load(Ordering::SeqCst);
    let connect_s = started.elapsed().as_secs_f64();
    eprintln!(
        "wsload[{}]: {} of {} subscribers and {} of {} never-reading connected in {:.2}s",
        config.label,
        connected,
        config.subscribers,
        stalled_streams.len(),
        config.stalled,
        connect_s
    );
    if let Some(rss_report) = server_rss.as_mut() {
        tokio::time::sleep(config.settle).await;
        rss_report.connected_kib = rss(config.server_pid);
        rss_report.peak_kib = rss_report.connected_kib.max(rss_report.before_kib);
        let connections = (connected + stalled_streams.len()).max(1) as f64;
        rss_report.per_connection_bytes =
            (rss_report.connected_kib as f64 - rss_report.before_kib as f64) * 1024.0 / connections;
    }
    if let (Some(cpu), Some(pid)) = (server_cpu.as_mut(), config.server_pid) {
        cpu.connected_s = cpu_seconds(pid).unwrap_or(0.0);
    }
    if let Some(path) = &config.ready_file {
        write_ready_file(path, connected, stalled_streams.len())?;
    }

    // Run phase.
    let run_started = Instant::now();
    let deadline = run_started + config.duration;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let ended_by = loop {
        tick.tick().await;
        if let Some(rss_report) = server_rss.as_mut() {
            rss_report.peak_kib = rss_report.peak_kib.max(rss(config.server_pid));
        }
        let now = Instant::now();
        if now >= deadline {
            break if config.mode == Mode::Idle {
                "hold"
            } else {
                "duration"
            };
        }
        if shared.open.load(Ordering::SeqCst) == 0 {
            break "all_closed";
        }
        if config.mode == Mode::Measure {
            if config.expect.is_some() && shared.done.load(Ordering::SeqCst) >= connected {
                break "complete";
            }
            let last = shared.last_activity.load(Ordering::Relaxed);
            if last > 0 && now_nanos().saturating_sub(last) >= config.quiet.as_nanos() as u64 {
                break "quiet";
            }
        }
    };
    let run_s = run_started.elapsed().as_secs_f64();
    let open_at_end = shared.open.load(Ordering::SeqCst);
    if let Some(rss_report) = server_rss.as_mut() {
        rss_report.end_kib = rss(config.server_pid);
        rss_report.peak_kib = rss_report.peak_kib.max(rss_report.end_kib);
    }
    if let (Some(cpu), Some(pid)) = (server_cpu.as_mut(), config.server_pid) {
        cpu.end_s = cpu_seconds(pid).unwrap_or(0.0);
        cpu.run_s = (cpu.end_s - cpu.connected_s).max(0.0);
    }
    shared.stop.cancel();

    // Never-reading subscribers: what the server left in their sockets, and whether it closed them.
    let drains = futures_util::future::join_all(
        stalled_streams
            .into_iter()
            .map(|ws| drain(ws, config.stalled_drain)),
    )
    .await;
    let stalled_connected = drains.len();
    let mut stalled_close_codes: BTreeMap<String, usize> = BTreeMap::new();
    let mut stalled_events = 0;
    for (received, closed) in &drains {
        stalled_events += received.events;
        if let Some(code) = closed {
            *stalled_close_codes.entry(code.clone()).or_default() += 1;
        }
    }

    // Gather the readers.
    let mut ends = Vec::with_capacity(readers.len());
    for handle in readers {
        match handle.await {
            Ok(end) => ends.push(end),
            Err(join) => *connect_errors.entry(join.to_string()).or_default() += 1,
        }
    }
    let mut report = Report {
        tool: "wsload",
        label: config.label.clone(),
        mode: config.mode,
        url: config.target.url.clone(),
        subscribers: config.subscribers,
        connected,
        stalled: config.stalled,
        stalled_connected,
        connect_failed: 0,
        connect_errors: Vec::new(),
        connect_s,
        expect: config.expect,
        ended_by: ended_by.to_owned(),
        run_s,
        events: 0,
        messages: 0,
        window_s: 0.0,
        events_per_s: 0.0,
        since_connect_s: 0.0,
        events_per_s_since_connect: 0.0,
        since_first_commit_s: 0.0,
        events_per_s_since_first_commit: 0.0,
        latency: Latency::default(),
        block_latency: None,
        complete: 0,
        lost: 0,
        duplicates: 0,
        out_of_order: 0,
        height_regressions: 0,
        parse_errors: 0,
        unrecognized: 0,
        foreign_ids: 0,
        negative_latency: 0,
        samples_truncated: false,
        per_subscriber_events: Spread::default(),
        closed_by_server: 0,
        close_codes: BTreeMap::new(),
        open_at_end,
        stalled_closed_by_server: stalled_close_codes.values().sum(),
        stalled_close_codes,
        stalled_events,
        server_rss,
        server_cpu,
        received: None,
    };
    let mut latencies = Vec::new();
    let mut block_latencies = Vec::new();
    let mut uniques = Vec::with_capacity(ends.len());
    let (mut first, mut last, mut connected_at) = (u64::MAX, 0u64, u64::MAX);
    let mut first_commit = u64::MAX;
    for mut end in ends {
        if let Some(err) = end.connect_error.take() {
            *connect_errors.entry(err).or_default() += 1;
            continue;
        }
        connected_at = connected_at.min(end.connected_ns);
        first_commit = first_commit.min(end.received.min_commit_ns);
        if let Some(code) = end.closed_by_server.take() {
            report.closed_by_server += 1;
            *report.close_codes.entry(code).or_default() += 1;
        }
        let r = &mut end.received;
        let verdict = r.verdict(config.expect);
        report.events += r.events;
        report.messages += r.messages;
        report.lost += verdict.lost;
        report.duplicates += verdict.duplicates;
        report.out_of_order += verdict.out_of_order;
        report.height_regressions += r.height_regressions;
        report.parse_errors += r.parse_errors;
        report.unrecognized += r.unrecognized;
        report.foreign_ids += r.foreign_ids;
        report.negative_latency += r.negative_latency;
        report.samples_truncated |= r.truncated;
        if config.expect.is_some_and(|e| verdict.unique >= e) {
            report.complete += 1;
        }
        uniques.push(verdict.unique);
        if let Some(f) = r.first_ns {
            first = first.min(f);
            last = last.max(r.last_ns);
        }
        latencies.append(&mut r.take_latencies());
        block_latencies.append(&mut r.take_block_latencies());
    }
    report.connect_failed = connect_errors.values().sum();
    report.connect_errors = stats::error_lines(connect_errors);
    if let Some((seconds, rate)) = stats::throughput(report.events, first, last) {
        (report.window_s, report.events_per_s) = (seconds, rate);
    }
    if let Some((seconds, rate)) = stats::throughput(report.events, first_commit, last) {
        (
            report.since_first_commit_s,
            report.events_per_s_since_first_commit,
        ) = (seconds, rate);
    }
    if let Some((seconds, rate)) = stats::throughput(report.events, connected_at, last) {
        (report.since_connect_s, report.events_per_s_since_connect) = (seconds, rate);
    }
    report.latency = Latency::from_nanos(&mut latencies);
    if !block_latencies.is_empty() {
        report.block_latency = Some(Latency::from_nanos(&mut block_latencies));
    }
    if let Some(cpu) = report.server_cpu.as_mut() {
        if report.events > 0 {
            cpu.per_event_us = cpu.run_s * 1e6 / report.events as f64;
        }
    }
    report.per_subscriber_events = Spread::of(&uniques);
    if config.per_subscriber {
        report.received = Some(uniques);
    }
    Ok(report)
}

/// The report for people (the JSON line is for scripts).
pub fn summary(r: &Report) -> String {
    let mut out = format!(
        "wsload[{label}] {mode:?} {url}\n\
         connections: {conn}/{subs} reading, {sc}/{st} never-reading, {failed} failed, connect phase {cs:.2}s\n",
        label = r.label,
        mode = r.mode,
        url = r.url,
        conn = r.connected,
        subs = r.subscribers,
        sc = r.stalled_connected,
        st = r.stalled,
        failed = r.connect_failed,
        cs = r.connect_s,
    );
    for err in &r.connect_errors {
        out.push_str(&format!("  connect error: {err}\n"));
    }
    out.push_str(&format!(
        "run: {:.2}s, ended by {}; open at end {}, closed by server {} {:?}\n",
        r.run_s, r.ended_by, r.open_at_end, r.closed_by_server, r.close_codes
    ));
    if r.mode == Mode::Measure {
        out.push_str(&format!(
            "delivered: {} events in {} messages over {:.3}s = {:.0} events/s (since first commit: {:.3}s = {:.0}/s; since connect: {:.3}s = {:.0}/s)\n",
            r.events, r.messages, r.window_s, r.events_per_s, r.since_first_commit_s, r.events_per_s_since_first_commit, r.since_connect_s, r.events_per_s_since_connect
        ));
        let l = &r.latency;
        out.push_str(&format!(
            "latency (commit to arrival, ms): p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (n={})\n",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.samples
        ));
        if let Some(l) = &r.block_latency {
            out.push_str(&format!(
                "block latency (first commit of the block to its message, ms): p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  (n={})\n",
                l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.samples
            ));
        }
        out.push_str(&format!(
            "per subscriber: events min {} mean {:.1} max {}; complete {}/{} (expect {}); lost {}, duplicates {}, out of order {}\n",
            r.per_subscriber_events.min,
            r.per_subscriber_events.mean,
            r.per_subscriber_events.max,
            r.complete,
            r.connected,
            r.expect.map_or("-".to_owned(), |e| e.to_string()),
            r.lost,
            r.duplicates,
            r.out_of_order
        ));
        if r.parse_errors + r.unrecognized + r.foreign_ids + r.negative_latency > 0
            || r.samples_truncated
        {
            out.push_str(&format!(
                "anomalies: parse errors {}, unrecognized {}, foreign ids {}, negative latency {}, samples truncated {}\n",
                r.parse_errors, r.unrecognized, r.foreign_ids, r.negative_latency, r.samples_truncated
            ));
        }
    }
    if r.stalled > 0 {
        out.push_str(&format!(
            "never-reading: {} closed by server {:?}, {} events left in their sockets\n",
            r.stalled_closed_by_server, r.stalled_close_codes, r.stalled_events
        ));
    }
    if let Some(rss) = &r.server_rss {
        out.push_str(&format!(
            "server RSS (KiB): before {} connected {} peak {} end {}; {:.0} bytes per connection\n",
            rss.before_kib, rss.connected_kib, rss.peak_kib, rss.end_kib, rss.per_connection_bytes
        ));
    }
    if let Some(cpu) = &r.server_cpu {
        out.push_str(&format!(
            "server CPU (s): connect phase {:.2}, run {:.2}; {:.3} us per delivered event\n",
            cpu.connected_s - cpu.before_s,
            cpu.run_s,
            cpu.per_event_us
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_cycle_over_127_0_0_x() {
        let first = Ipv4Addr::new(127, 0, 0, 1);
        assert_eq!(source_ip(5, 0, first), None);
        assert_eq!(
            source_ip(0, 3, first),
            Some("127.0.0.1".parse().expect("ip"))
        );
        assert_eq!(
            source_ip(4, 3, first),
            Some("127.0.0.2".parse().expect("ip"))
        );
        assert_eq!(
            source_ip(299, 300, first),
            Some("127.0.1.44".parse().expect("ip"))
        );
        let bystander = Ipv4Addr::new(127, 0, 0, 2);
        assert_eq!(
            source_ip(7, 1, bystander),
            Some("127.0.0.2".parse().expect("ip"))
        );
    }
}
