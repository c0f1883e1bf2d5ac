//! The limit baseline behind `limitserver`: a minimal WebSocket server that writes blocks of
//! pre-encoded text frames from memory to every subscriber as fast as the sockets take them.
//!
//! It shows what loopback, the machine and the load client allow, with no server work left:
//! every block's frames are encoded before the run into one buffer; when the block is due its
//! transaction ids are stamped in place with the commit time ([`crate::commit_time`]), the
//! buffer is frozen into one `Bytes` shared by every connection, and each connection writes it
//! with one `write_all`. Messages are byte for byte the shape and size of planetmint-streams'
//! `valid_transactions` messages (serialized with the model's own `TransactionEvent`).
//!
//! The handshake is a minimal RFC 6455 server handshake (any path, query ignored). Client
//! frames are read only to notice a close; pings are not answered and none are sent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use planetmint_streams_broadcaster::frame::{encode_frame, OPCODE_TEXT};
use planetmint_streams_model::event::TransactionEvent;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{broadcast, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::commit_time::{self, CommitClock, ID_LEN, TIME_DIGITS};
use crate::loopback::is_loopback;
use crate::wsframe::{parse_head, OPCODE_CLOSE};

/// Longest a request head may be.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Time allowed for a client's handshake request.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest accepted run.
pub const MAX_RUN: Duration = Duration::from_secs(3600);
/// Most blocks one run may hold in memory.
pub const MAX_BLOCKS: u64 = 1_000_000;
/// Most transactions per block.
pub const MAX_TXS: usize = 100_000;
/// Most messages (blocks x txs) one run pre-encodes (about 250 bytes each).
pub const MAX_MESSAGES: u64 = 5_000_000;

/// A run of the limit server.
#[derive(Debug, Clone)]
pub struct LimitConfig {
    /// Where to listen (must be loopback).
    pub bind: SocketAddr,
    /// Start writing once this many subscribers are connected (0: at once).
    pub subscribers: usize,
    /// Blocks to write.
    pub blocks: u64,
    /// Transactions (messages) per block.
    pub txs: usize,
    /// Blocks per second; 0 writes them back to back.
    pub rate: f64,
    /// Height of the first block.
    pub first_height: u64,
    /// Pause between the trigger and the first block.
    pub start_delay: Duration,
    /// The server exits after this long whatever happens.
    pub max_run: Duration,
    /// Connections beyond this are refused.
    pub max_connections: usize,
    /// Written with the bound address (useful with port 0).
    pub addr_file: Option<PathBuf>,
}

/// What the server did (one JSON line).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LimitReport {
    /// `"limitserver"`.
    pub tool: &'static str,
    /// Bound address.
    pub addr: String,
    /// Why it stopped: `done` (all blocks written, all clients gone), `max_run`, `signal`.
    pub ended_by: String,
    /// Most connections open at once.
    pub connections_peak: usize,
    /// Failed or refused handshakes.
    pub handshake_failures: u64,
    /// Connections open when writing started.
    pub connections_at_start: usize,
    /// Blocks written (handed to every connection).
    pub blocks: u64,
    /// Messages per block.
    pub txs_per_block: usize,
    /// Bytes of one message's frame (the first).
    pub message_frame_bytes: usize,
    /// Bytes of one block's frames (the first).
    pub block_bytes: usize,
    /// Target rate (0: back to back).
    pub rate: f64,
    /// From the first block to the last handed over.
    pub publish_s: f64,
    /// Blocks a slow connection skipped because it lagged more than the whole run behind.
    pub lagged_blocks: u64,
}

/// A block's frames with the places where each transaction's id digits go.
#[derive(Debug, Clone)]
pub struct BlockTemplate {
    /// Height.
    pub height: u64,
    /// All frames back to back, ids zeroed.
    pub frames: Vec<u8>,
    /// For each transaction, the offsets of its ids' 16 time digits.
    pub stamps: Vec<Vec<usize>>,
}

/// An asset id for the TRANSFER-like messages (any 64 hex that is not an encoding).
const TRANSFER_ASSET: &str = "5f2d8b0c1e9a47d3b6c2e8f14a7d9b3c0e5f6a1b2c3d4e5f60718293a4b5c6d7";

impl BlockTemplate {
    /// Encodes block `height` of `txs` messages: even ones CREATE-like (`asset_id` is the
    /// transaction's own id), odd ones TRANSFER-like (an earlier asset), as our server sends.
    pub fn new(height: u64, txs: usize) -> Self {
        let zero = commit_time::encode(0);
        let mut frames = Vec::with_capacity(txs * 260);
        let mut stamps = Vec::with_capacity(txs);
        for i in 0..txs {
            let asset = if i % 2 == 0 {
                zero.as_str()
            } else {
                TRANSFER_ASSET
            };
            let event = TransactionEvent {
                transaction_id: zero.as_str().into(),
                asset_id: asset.into(),
                asset_ids: vec![asset.into()],
                height,
                transaction: None,
            };
            let json = serde_json::to_vec(&event).unwrap_or_default();
            let start = frames.len();
            encode_frame(OPCODE_TEXT, &json, &mut frames);
            let offsets = frames[start..]
                .windows(ID_LEN)
                .enumerate()
                .filter(|(_, w)| w.iter().all(|&b| b == b'0'))
                .map(|(at, _)| start + at + ID_LEN - TIME_DIGITS)
                .collect();
            stamps.push(offsets);
        }
        Self {
            height,
            frames,
            stamps,
        }
    }

    /// Stamps every transaction with the next commit time and freezes the buffer.
    pub fn stamp(mut self, clock: &mut CommitClock) -> Bytes {
        for offsets in &self.stamps {
            let nanos = clock.stamp();
            for &at in offsets {
                commit_time::write_time_digits(nanos, &mut self.frames[at..at + TIME_DIGITS]);
            }
        }
        Bytes::from(self.frames)
    }
}

/// Why a handshake was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not `GET ... HTTP/1.1`.
    NotGet,
    /// No `Upgrade: websocket`.
    NotUpgrade,
    /// No `Sec-WebSocket-Key`.
    NoKey,
}

/// The 101 response to a complete request head, or why not.
pub fn handshake_response(head: &str) -> Result<String, HandshakeError> {
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or_default();
    if !request.starts_with("GET ") || !request.ends_with(" HTTP/1.1") {
        return Err(HandshakeError::NotGet);
    }
    let mut upgrade = false;
    let mut key = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("upgrade") && value.eq_ignore_ascii_case("websocket") {
            upgrade = true;
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            key = Some(value);
        }
    }
    if !upgrade {
        return Err(HandshakeError::NotUpgrade);
    }
    let key = key.ok_or(HandshakeError::NoKey)?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    Ok(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    ))
}

struct Shared {
    connected: AtomicUsize,
    peak: AtomicUsize,
    changed: Notify,
    handshake_failures: AtomicU64,
    lagged: AtomicU64,
    blocks: broadcast::Sender<Bytes>,
    shutdown: CancellationToken,
}

impl Shared {
    fn connection_changed(&self) {
        self.changed.notify_waiters();
    }
}

async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while head.len() < MAX_REQUEST_HEAD {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(end);
            return String::from_utf8(head).ok();
        }
    }
    None
}

/// Reads (and drops) client frames until the client sends a close, the socket ends, or the
/// client breaks the framing. Holds no buffer while the client is quiet.
async fn read_client(mut read: OwnedReadHalf, closed: CancellationToken) {
    let mut chunk = [0u8; 256];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = tokio::select! {
            n = read.read(&mut chunk) => n,
            _ = closed.cancelled() => return,
        };
        let n = match n {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        loop {
            match parse_head(&pending) {
                Some(head) if pending.len() >= head.total_len() => {
                    if head.opcode == OPCODE_CLOSE {
                        closed.cancel();
                        return;
                    }
                    pending.drain(..head.total_len());
                }
                _ => break,
            }
        }
        if pending.len() > 1 << 20 {
            break;
        }
        if pending.is_empty() {
            pending = Vec::new();
        }
    }
    closed.cancel();
}

async fn connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let head = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_head(&mut stream)).await;
    let response = match head.ok().flatten().as_deref().map(handshake_response) {
        Some(Ok(response)) => response,
        _ => {
            shared.handshake_failures.fetch_add(1, Ordering::Relaxed);
            let _ = stream
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            return;
        }
    };
    // Subscribe before counting the connection, so the trigger never starts without it.
    let mut blocks = shared.blocks.subscribe();
    if stream.write_all(response.as_bytes()).await.is_err() {
        shared.handshake_failures.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let now = shared.connected.fetch_add(1, Ordering::SeqCst) + 1;
    shared.peak.fetch_max(now, Ordering::SeqCst);
    shared.connection_changed();

    let (read, mut write) = stream.into_split();
    let closed = shared.shutdown.child_token();
    let reader = tokio::spawn(read_client(read, closed.clone()));
    write_blocks(&mut blocks, &mut write, &closed, &shared).await;
    // Close frame: 1001 when the server stops, 1000 in answer to the client's close.
    let code: u16 = if shared.shutdown.is_cancelled() {
        1001
    } else {
        1000
    };
    let mut close = vec![0x88, 2];
    close.extend_from_slice(&code.to_be_bytes());
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = write.write_all(&close).await;
        let _ = write.shutdown().await;
    })
    .await;
    closed.cancel();
    let _ = reader.await;
    shared.connected.fetch_sub(1, Ordering::SeqCst);
    shared.connection_changed();
}

/// Writes every block to one connection, one `write_all` per block, until the client closes
/// or the server stops.
async fn write_blocks(
    blocks: &mut broadcast::Receiver<Bytes>,
    write: &mut OwnedWriteHalf,
    closed: &CancellationToken,
    shared: &Shared,
) {
    let mut sender_gone = false;
    loop {
        let next = tokio::select! {
            next = blocks.recv(), if !sender_gone => next,
            _ = closed.cancelled() => return,
        };
        match next {
            Ok(block) => {
                tokio::select! {
                    written = write.write_all(&block) => if written.is_err() { return },
                    _ = closed.cancelled() => return,
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                shared.lagged.fetch_add(n, Ordering::Relaxed);
            }
            Err(broadcast::error::RecvError::Closed) => sender_gone = true,
        }
    }
}

fn validate(config: &LimitConfig) -> anyhow::Result<()> {
    anyhow::ensure!(
        is_loopback(config.bind.ip()),
        "{} is not a loopback address: the limit server only listens on 127.0.0.0/8 or ::1",
        config.bind
    );
    anyhow::ensure!(config.blocks <= MAX_BLOCKS, "at most {MAX_BLOCKS} blocks");
    anyhow::ensure!(
        (1..=MAX_TXS).contains(&config.txs),
        "txs must be 1..={MAX_TXS}"
    );
    anyhow::ensure!(
        config.blocks.saturating_mul(config.txs as u64) <= MAX_MESSAGES,
        "at most {MAX_MESSAGES} messages (blocks x txs) are held in memory"
    );
    anyhow::ensure!(
        config.rate >= 0.0 && config.rate.is_finite(),
        "rate must be 0 (back to back) or positive"
    );
    anyhow::ensure!(
        !config.max_run.is_zero() && config.max_run <= MAX_RUN,
        "max run must be between 1 ms and {}s",
        MAX_RUN.as_secs()
    );
    Ok(())
}

/// Listens, waits for the subscribers, writes the blocks, and returns once they are all
/// written and every client has gone, or at `max_run`, or when `stop` is cancelled.
pub async fn serve(config: LimitConfig, stop: CancellationToken) -> anyhow::Result<LimitReport> {
    validate(&config)?;
    // Pre-encode every block before listening: once the address is out, the server is ready.
    let templates: Vec<BlockTemplate> = (0..config.blocks)
        .map(|i| BlockTemplate::new(config.first_height + i, config.txs))
        .collect();
    let socket = if config.bind.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(config.bind)?;
    let listener: TcpListener = socket.listen(4096)?;
    let addr = listener.local_addr()?;
    if let Some(path) = &config.addr_file {
        std::fs::write(path, format!("{addr}\n"))?;
    }
    eprintln!(
        "limitserver: listening on ws://{addr}/ ; {} blocks x {} txs at {} once {} subscribers are connected",
        config.blocks,
        config.txs,
        if config.rate > 0.0 { format!("{} blocks/s", config.rate) } else { "full speed".into() },
        config.subscribers
    );
    let mut report = LimitReport {
        tool: "limitserver",
        addr: addr.to_string(),
        txs_per_block: config.txs,
        rate: config.rate,
        ..LimitReport::default()
    };
    if let Some(first) = templates.first() {
        report.block_bytes = first.frames.len();
        report.message_frame_bytes = first.frames.len() / config.txs;
    }
    let capacity = usize::try_from(config.blocks).unwrap_or(usize::MAX).max(1);
    let (sender, _) = broadcast::channel(capacity);
    let shared = Arc::new(Shared {
        connected: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        changed: Notify::new(),
        handshake_failures: AtomicU64::new(0),
        lagged: AtomicU64::new(0),
        blocks: sender,
        shutdown: CancellationToken::new(),
    });

    let accept = {
        let shared = shared.clone();
        let max = config.max_connections;
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = shared.shutdown.cancelled() => return,
                };
                match accepted {
                    Ok((stream, _)) => {
                        if shared.connected.load(Ordering::SeqCst) >= max {
                            shared.handshake_failures.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(connection(stream, shared.clone()));
                    }
                    // Out of descriptors and the like: pause instead of spinning.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        })
    };

    let deadline = Instant::now() + config.max_run;
    let ended_by = tokio::select! {
        ended = publish(&config, templates, &shared, &mut report) => ended,
        _ = tokio::time::sleep_until(deadline) => "max_run",
        _ = stop.cancelled() => "signal",
    };
    report.ended_by = ended_by.to_owned();
    report.connections_peak = shared.peak.load(Ordering::SeqCst);
    report.handshake_failures = shared.handshake_failures.load(Ordering::Relaxed);
    report.lagged_blocks = shared.lagged.load(Ordering::Relaxed);
    shared.shutdown.cancel();
    let _ = accept.await;
    // Give connections a moment to send their close frames.
    let drained = Instant::now() + Duration::from_secs(2);
    while shared.connected.load(Ordering::SeqCst) > 0 && Instant::now() < drained {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(report)
}

/// Waits for the subscribers, writes the blocks, then waits for every client to leave.
async fn publish(
    config: &LimitConfig,
    templates: Vec<BlockTemplate>,
    shared: &Shared,
    report: &mut LimitReport,
) -> &'static str {
    loop {
        let changed = shared.changed.notified();
        if shared.connected.load(Ordering::SeqCst) >= config.subscribers {
            break;
        }
        changed.await;
    }
    tokio::time::sleep(config.start_delay).await;
    report.connections_at_start = shared.connected.load(Ordering::SeqCst);
    eprintln!(
        "limitserver: {} connected, writing {} blocks",
        report.connections_at_start, config.blocks
    );
    let mut clock = CommitClock::new();
    let started = Instant::now();
    let period = (config.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / config.rate));
    for (i, template) in templates.into_iter().enumerate() {
        if let Some(period) = period {
            tokio::time::sleep_until(started + period.mul_f64(i as f64)).await;
        }
        // No receiver (everyone left) is not an error: the block is simply not delivered.
        let _ = shared.blocks.send(template.stamp(&mut clock));
        report.blocks += 1;
        if period.is_none() && i % 64 == 63 {
            // Let the writers run between bursts on a small runtime.
            tokio::task::yield_now().await;
        }
    }
    report.publish_s = started.elapsed().as_secs_f64();
    eprintln!(
        "limitserver: {} blocks handed over in {:.3}s; waiting for the clients to leave",
        report.blocks, report.publish_s
    );
    loop {
        let changed = shared.changed.notified();
        if shared.connected.load(Ordering::SeqCst) == 0 {
            return "done";
        }
        changed.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Received;

    #[test]
    fn stamped_blocks_are_our_messages_with_commit_time_ids() {
        let template = BlockTemplate::new(42, 3);
        let size = template.frames.len();
        let mut clock = CommitClock::new();
        let bytes = template.stamp(&mut clock);
        assert_eq!(bytes.len(), size, "stamping keeps the size");
        let mut received = Received::new(Some(3), 10);
        let mut rest = &bytes[..];
        let mut ids = Vec::new();
        let mut events = Vec::new();
        while !rest.is_empty() {
            let head = parse_head(rest).expect("a whole frame");
            let len = head.total_len();
            assert_eq!(
                (head.opcode, head.fin, head.mask),
                (OPCODE_TEXT, true, None)
            );
            let json = std::str::from_utf8(&rest[head.header_len..len]).expect("utf8");
            let event: TransactionEvent<'_> = serde_json::from_str(json).expect("event");
            assert_eq!(event.height, 42);
            assert_eq!(
                event.asset_ids,
                vec![planetmint_streams_model::event::AssetIdsItem::Id(
                    event.asset_id.clone()
                )]
            );
            ids.push(event.transaction_id.to_string());
            received.on_text(json, commit_time::now_nanos());
            events.push(event);
            rest = &rest[len..];
        }
        assert_eq!(ids.len(), 3);
        assert_eq!(events[0].asset_id, events[0].transaction_id, "CREATE-like");
        assert_ne!(
            events[1].asset_id, events[1].transaction_id,
            "TRANSFER-like"
        );
        assert_eq!(events[0].transaction_id.len(), events[1].asset_id.len());
        assert_eq!(received.foreign_ids, 0, "every id decodes");
        let verdict = received.verdict(Some(3));
        assert_eq!(
            (verdict.unique, verdict.lost, verdict.out_of_order),
            (3, 0, 0)
        );
    }

    #[test]
    fn handshake_answers_with_the_accept_key() {
        let head = "GET /api/v1/streams/valid_transactions HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13";
        let response = handshake_response(head).expect("accepted");
        assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert_eq!(
            handshake_response("POST / HTTP/1.1\r\nUpgrade: websocket"),
            Err(HandshakeError::NotGet)
        );
        assert_eq!(
            handshake_response("GET / HTTP/1.1\r\nSec-WebSocket-Key: a"),
            Err(HandshakeError::NotUpgrade)
        );
    }
}
