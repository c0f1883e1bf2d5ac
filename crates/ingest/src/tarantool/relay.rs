//! A loopback relay in front of Tarantool that makes tarantool-rs work with servers older
//! than 2.10, and tells us when the connection to Tarantool comes and goes.
//!
//! tarantool-rs 0.0.10 sends an `IPROTO_ID` request when it connects; Tarantool < 2.10 does not
//! know it ("Unknown request type 73") and the client gives up. The relay reads the server's
//! greeting, and when the server predates `IPROTO_ID` it answers that request itself (an empty
//! feature list) instead of forwarding it. Everything else passes through unchanged, frame by
//! frame. tarantool-rs also reconnects silently; the relay is where reconnects become visible:
//! it counts them, logs them and paces them with backoff. See docs/adr/0001-tarantool-client.md.
//!
//! The relay listens on a loopback port, which any local process could connect to and so reach
//! Tarantool from this host (past a firewall that only lets the node in) and disturb the
//! session count. It therefore serves only connections made by this process: on Linux the
//! connecting socket must be one of our own file descriptors ([`own_connection`]); anything
//! else is closed before a byte is relayed. See docs/adr/0004-relay-accepts-only-its-own-process.md.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use planetmint_streams_model::backoff::Backoff;

/// Size of the greeting every Tarantool sends first (two 64-byte lines).
pub const GREETING_SIZE: usize = 128;
/// `IPROTO_ID`, introduced in Tarantool 2.10.
const IPROTO_ID: u64 = 0x49;
/// Largest request frame the relay accepts from the local client (our own process).
const MAX_REQUEST_FRAME: usize = 64 * 1024 * 1024;

/// A Tarantool version from the greeting, e.g. `2.6.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
}

impl ServerVersion {
    /// Reads the version from a greeting's first line: `Tarantool 2.6.0 (Binary) <uuid>`.
    pub fn from_greeting(greeting: &[u8]) -> Option<Self> {
        let line = greeting.split(|&b| b == b'\n').next()?;
        let line = std::str::from_utf8(line).ok()?;
        let mut words = line.split_whitespace();
        if words.next()? != "Tarantool" {
            return None;
        }
        let version = words.next()?;
        let mut parts = version
            .split(['.', '-'])
            .map(|part| part.parse::<u32>().ok());
        Some(Self {
            major: parts.next()??,
            minor: parts.next()??,
            patch: parts.next().flatten().unwrap_or(0),
        })
    }

    /// Whether the server understands `IPROTO_ID` (Tarantool >= 2.10).
    pub fn knows_iproto_id(&self) -> bool {
        (self.major, self.minor) >= (2, 10)
    }
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// What the relay knows about the connection to Tarantool, shared with the source.
#[derive(Debug, Default)]
pub struct RelayState {
    /// Successful connections to Tarantool so far; a change means a new server session
    /// (server-side state such as our Lua functions may be gone).
    sessions: AtomicU64,
    /// Whether the last attempt to reach Tarantool succeeded.
    reachable: AtomicBool,
    /// Failed connection attempts since the last success.
    failures: AtomicU64,
    /// Connections refused because another process made them.
    refused: AtomicU64,
    version: Mutex<Option<ServerVersion>>,
}

impl RelayState {
    /// Number of server sessions opened so far.
    pub fn sessions(&self) -> u64 {
        self.sessions.load(Ordering::Acquire)
    }

    /// Whether the last connection attempt succeeded.
    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Acquire)
    }

    /// Connections refused so far because they did not come from this process.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Acquire)
    }

    /// The server's version, once known.
    pub fn version(&self) -> Option<ServerVersion> {
        *self.version.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running relay; stops when dropped.
#[derive(Debug)]
pub struct Relay {
    local_addr: SocketAddr,
    state: Arc<RelayState>,
    stop: CancellationToken,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// How the relay reaches Tarantool.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Tarantool's IPROTO address, `host:port`.
    pub upstream: String,
    /// Limit for one TCP connect plus greeting.
    pub connect_timeout: Duration,
    /// First and longest pause between failed attempts.
    pub backoff: (Duration, Duration),
}

impl Relay {
    /// Starts listening on a loopback port; connections to it are relayed to `config.upstream`.
    pub async fn start(config: RelayConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let local_addr = listener.local_addr()?;
        let state = Arc::new(RelayState::default());
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            config,
            state: state.clone(),
            backoff: Mutex::new(Pacing::default()),
        });
        let accept_stop = stop.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = accept_stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                match accepted {
                    Ok((local, peer)) => {
                        let shared = shared.clone();
                        let stop = accept_stop.child_token();
                        tokio::spawn(async move {
                            if !admit(local_addr, peer, &shared.state).await {
                                return;
                            }
                            tokio::select! {
                                _ = stop.cancelled() => {}
                                _ = relay_connection(local, shared) => {}
                            }
                        });
                    }
                    Err(err) => {
                        warn!(error = %err, "tarantool relay: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Ok(Self {
            local_addr,
            state,
            stop,
        })
    }

    /// The loopback address tarantool-rs should connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Shared connection state.
    pub fn state(&self) -> &Arc<RelayState> {
        &self.state
    }
}

/// Whether the connection from `peer` to the relay at `relay` was made by this process; a
/// refusal is counted and logged (the first, then every 100th, so a local process cannot flood
/// the log).
async fn admit(relay: SocketAddr, peer: SocketAddr, state: &RelayState) -> bool {
    let verdict = tokio::task::spawn_blocking(move || own_connection(relay, peer))
        .await
        .unwrap_or_else(|err| Err(std::io::Error::other(err)));
    let reason = match verdict {
        Ok(true) => return true,
        Ok(false) => "the connection was made by another process".to_owned(),
        Err(err) => format!("cannot tell which process made the connection: {err}"),
    };
    let refused = state.refused.fetch_add(1, Ordering::AcqRel) + 1;
    if refused == 1 || refused.is_multiple_of(100) {
        warn!(%peer, refused, reason, "tarantool relay: connection refused; only this node's own client may use the relay");
    }
    false
}

/// Whether the TCP connection from `peer` to `relay` (both loopback) was opened by this
/// process: the kernel's socket table names the inode of the socket at `peer`, and that
/// socket must be one of our open file descriptors. Sockets of other processes, also of the
/// same user, are not ours.
#[cfg(target_os = "linux")]
pub fn own_connection(relay: SocketAddr, peer: SocketAddr) -> std::io::Result<bool> {
    let (SocketAddr::V4(relay), SocketAddr::V4(peer)) = (relay, peer) else {
        return Ok(false);
    };
    let table = std::fs::read_to_string("/proc/self/net/tcp")?;
    let Some(inode) = socket_inode(&table, peer, relay) else {
        return Ok(false);
    };
    let wanted = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Ok(entry) = entry else { continue };
        if std::fs::read_link(entry.path())
            .is_ok_and(|target| target.as_os_str() == wanted.as_str())
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Elsewhere there is no portable way to find who made a loopback connection: the relay
/// serves any local process (as the ADR says).
#[cfg(not(target_os = "linux"))]
pub fn own_connection(_relay: SocketAddr, _peer: SocketAddr) -> std::io::Result<bool> {
    Ok(true)
}

/// The inode of the socket connected from `local` to `remote` in a `/proc/net/tcp` table.
/// Addresses there are the raw network-order word printed as a host-order hex number, ports
/// plain hex.
fn socket_inode(
    table: &str,
    local: std::net::SocketAddrV4,
    remote: std::net::SocketAddrV4,
) -> Option<u64> {
    let parse = |field: &str| -> Option<std::net::SocketAddrV4> {
        let (ip, port) = field.split_once(':')?;
        let ip = u32::from_str_radix(ip, 16).ok()?;
        let port = u16::from_str_radix(port, 16).ok()?;
        Some(std::net::SocketAddrV4::new(ip.to_ne_bytes().into(), port))
    };
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (from, to, inode) = (fields.get(1)?, fields.get(2)?, fields.get(9)?);
        (parse(from)? == local && parse(to)? == remote)
            .then(|| inode.parse::<u64>().ok())
            .flatten()
            .filter(|&inode| inode != 0)
    })
}

#[derive(Debug, Default)]
struct Pacing {
    backoff: Option<Backoff>,
    next_attempt: Option<Instant>,
    last_logged: Option<Instant>,
}

struct Shared {
    config: RelayConfig,
    state: Arc<RelayState>,
    backoff: Mutex<Pacing>,
}

impl Shared {
    fn pacing(&self) -> std::sync::MutexGuard<'_, Pacing> {
        self.backoff.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connects to Tarantool and reads its greeting, retrying with backoff until it works.
    async fn open_upstream(&self) -> (TcpStream, [u8; GREETING_SIZE]) {
        loop {
            let wait = self
                .pacing()
                .next_attempt
                .map(|at| at.saturating_duration_since(Instant::now()));
            if let Some(wait) = wait.filter(|w| !w.is_zero()) {
                tokio::time::sleep(wait).await;
            }
            let attempt = tokio::time::timeout(self.config.connect_timeout, async {
                let mut stream = TcpStream::connect(&self.config.upstream).await?;
                stream.set_nodelay(true)?;
                let mut greeting = [0u8; GREETING_SIZE];
                stream.read_exact(&mut greeting).await?;
                Ok::<_, std::io::Error>((stream, greeting))
            })
            .await
            .unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no greeting in time",
                ))
            });
            match attempt {
                Ok(connected) => {
                    self.on_connected(&connected.1);
                    return connected;
                }
                Err(err) => self.on_failed(&err),
            }
        }
    }

    fn on_connected(&self, greeting: &[u8]) {
        let version = ServerVersion::from_greeting(greeting);
        *self.state.version.lock().unwrap_or_else(|p| p.into_inner()) = version;
        let failures = self.state.failures.swap(0, Ordering::AcqRel);
        let was_reachable = self.state.reachable.swap(true, Ordering::AcqRel);
        let session = self.state.sessions.fetch_add(1, Ordering::AcqRel) + 1;
        *self.pacing() = Pacing::default();
        let version = version.map_or_else(|| "unknown".to_owned(), |v| v.to_string());
        if session == 1 || !was_reachable {
            info!(
                upstream = %self.config.upstream,
                tarantool_version = %version,
                failed_attempts = failures,
                "connected to Tarantool"
            );
        } else {
            debug!(upstream = %self.config.upstream, session, "new Tarantool session");
        }
    }

    fn on_failed(&self, err: &std::io::Error) {
        let failures = self.state.failures.fetch_add(1, Ordering::AcqRel) + 1;
        let was_reachable = self.state.reachable.swap(false, Ordering::AcqRel);
        let mut pacing = self.pacing();
        let (min, max) = self.config.backoff;
        let delay = pacing
            .backoff
            .get_or_insert_with(|| Backoff::new(min, max))
            .next_delay();
        let now = Instant::now();
        pacing.next_attempt = Some(now + delay);
        // First failure, then at most every 30 s: an outage must be visible, not flood the log.
        let log_now = was_reachable
            || failures == 1
            || pacing
                .last_logged
                .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(30));
        if log_now {
            pacing.last_logged = Some(now);
            warn!(
                upstream = %self.config.upstream,
                error = %err,
                failed_attempts = failures,
                retry_in_ms = delay.as_millis() as u64,
                "cannot reach Tarantool; retrying with backoff"
            );
        } else {
            debug!(upstream = %self.config.upstream, error = %err, failures, "Tarantool still unreachable");
        }
    }
}

async fn relay_connection(mut local: TcpStream, shared: Arc<Shared>) {
    let _ = local.set_nodelay(true);
    // The client says nothing before the greeting, so readable-with-nothing means it left:
    // stop trying on its behalf.
    let mut probe = [0u8; 1];
    let opened = tokio::select! {
        opened = shared.open_upstream() => opened,
        _ = local.peek(&mut probe) => return,
    };
    let (upstream, greeting) = opened;
    let answer_id_locally =
        ServerVersion::from_greeting(&greeting).is_some_and(|v| !v.knows_iproto_id());
    if local.write_all(&greeting).await.is_err() {
        return;
    }
    let (local_rd, local_wr) = local.into_split();
    let (upstream_rd, upstream_wr) = upstream.into_split();
    let (inject_tx, inject_rx) = mpsc::channel::<Vec<u8>>(4);
    tokio::select! {
        _ = requests(local_rd, upstream_wr, inject_tx, answer_id_locally) => {}
        _ = responses(upstream_rd, local_wr, inject_rx) => {}
    }
    if !shared.state.reachable() {
        return;
    }
    debug!(upstream = %shared.config.upstream, "Tarantool session closed");
}

/// Length of the MessagePack unsigned integer at the start of `buf`:
/// `Some((value, encoded_len))`, or `None` if more bytes are needed.
/// An error is returned for anything that is not an unsigned integer.
pub fn read_frame_length(buf: &[u8]) -> Result<Option<(u64, usize)>, &'static str> {
    let Some(&marker) = buf.first() else {
        return Ok(None);
    };
    let width = match marker {
        0x00..=0x7f => return Ok(Some((u64::from(marker), 1))),
        0xcc => 1,
        0xcd => 2,
        0xce => 4,
        0xcf => 8,
        _ => return Err("frame does not start with a MessagePack unsigned length"),
    };
    if buf.len() < 1 + width {
        return Ok(None);
    }
    let value = buf[1..=width]
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    Ok(Some((value, 1 + width)))
}

/// Request type and sync of a request frame body (header map first).
fn request_type_and_sync(mut body: &[u8]) -> Option<(u64, u64)> {
    let len = rmp::decode::read_map_len(&mut body).ok()?;
    let (mut kind, mut sync) = (None, None);
    for _ in 0..len {
        let key: u64 = rmp::decode::read_int(&mut body).ok()?;
        match key {
            0x00 => kind = rmp::decode::read_int(&mut body).ok(),
            0x01 => sync = rmp::decode::read_int(&mut body).ok(),
            _ => {
                rmpv::decode::read_value(&mut body).ok()?;
            }
        }
    }
    Some((kind?, sync?))
}

/// The reply a pre-2.10 server would give if it knew `IPROTO_ID`: OK, protocol version 0,
/// no features.
fn iproto_id_reply(sync: u64) -> Vec<u8> {
    let mut body = Vec::with_capacity(24);
    // Header: {CODE: 0, SYNC: sync, SCHEMA_VERSION: 0}
    let _ = rmp::encode::write_map_len(&mut body, 3);
    let _ = rmp::encode::write_pfix(&mut body, 0x00);
    let _ = rmp::encode::write_uint(&mut body, 0);
    let _ = rmp::encode::write_pfix(&mut body, 0x01);
    let _ = rmp::encode::write_uint(&mut body, sync);
    let _ = rmp::encode::write_pfix(&mut body, 0x05);
    let _ = rmp::encode::write_uint(&mut body, 0);
    // Body: {VERSION: 0, FEATURES: []}
    let _ = rmp::encode::write_map_len(&mut body, 2);
    let _ = rmp::encode::write_pfix(&mut body, 0x54);
    let _ = rmp::encode::write_uint(&mut body, 0);
    let _ = rmp::encode::write_pfix(&mut body, 0x55);
    let _ = rmp::encode::write_array_len(&mut body, 0);
    let mut frame = Vec::with_capacity(body.len() + 5);
    frame.push(0xce);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Client to Tarantool: whole request frames, with `IPROTO_ID` answered locally when the
/// server predates it.
async fn requests(
    mut local: OwnedReadHalf,
    mut upstream: OwnedWriteHalf,
    inject: mpsc::Sender<Vec<u8>>,
    answer_id_locally: bool,
) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        match local.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut forward_upto = 0;
        loop {
            let rest = &buf[forward_upto..];
            let (len, prefix) = match read_frame_length(rest) {
                Ok(Some(found)) => found,
                Ok(None) => break,
                Err(_) => return,
            };
            let len = len as usize;
            if len > MAX_REQUEST_FRAME {
                return;
            }
            if rest.len() < prefix + len {
                break;
            }
            let body = &rest[prefix..prefix + len];
            let is_id = answer_id_locally
                && request_type_and_sync(body).is_some_and(|(kind, _)| kind == IPROTO_ID);
            if is_id {
                // Flush what precedes it, answer it, drop it from the stream.
                if forward_upto > 0 && upstream.write_all(&buf[..forward_upto]).await.is_err() {
                    return;
                }
                let sync = request_type_and_sync(body).map_or(0, |(_, sync)| sync);
                buf.advance(forward_upto + prefix + len);
                forward_upto = 0;
                if inject.send(iproto_id_reply(sync)).await.is_err() {
                    return;
                }
                continue;
            }
            forward_upto += prefix + len;
        }
        if forward_upto > 0 {
            if upstream.write_all(&buf[..forward_upto]).await.is_err() {
                return;
            }
            buf.advance(forward_upto);
        }
    }
}

/// Tarantool to client: bytes pass through as they come; locally made replies are written
/// only between two whole response frames.
async fn responses(
    mut upstream: OwnedReadHalf,
    mut local: OwnedWriteHalf,
    mut inject: mpsc::Receiver<Vec<u8>>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // Bytes of the current response frame still to pass through, and a partial length prefix.
    let mut remaining: u64 = 0;
    let mut prefix: Vec<u8> = Vec::with_capacity(9);
    let mut pending: Vec<Vec<u8>> = Vec::new();
    let mut inject_open = true;
    loop {
        let at_boundary = remaining == 0 && prefix.is_empty();
        if at_boundary {
            for reply in pending.drain(..) {
                if local.write_all(&reply).await.is_err() {
                    return;
                }
            }
        }
        tokio::select! {
            reply = inject.recv(), if inject_open => match reply {
                Some(reply) => pending.push(reply),
                None => inject_open = false,
            },
            read = upstream.read_buf(&mut buf) => {
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                // Track frame boundaries through the chunk.
                let mut pos = 0;
                while pos < buf.len() {
                    if remaining > 0 {
                        let take = remaining.min((buf.len() - pos) as u64);
                        remaining -= take;
                        pos += take as usize;
                        continue;
                    }
                    prefix.push(buf[pos]);
                    pos += 1;
                    match read_frame_length(&prefix) {
                        Ok(Some((len, _))) => {
                            prefix.clear();
                            remaining = len;
                        }
                        Ok(None) => {}
                        Err(_) => return,
                    }
                }
                if local.write_all(&buf).await.is_err() {
                    return;
                }
                buf.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for Tarantool 2.6: sends a greeting to each connection and counts them.
    async fn greeting_server() -> (String, Arc<AtomicU64>) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::AcqRel);
                let mut greeting = b"Tarantool 2.6.0 (Binary) 7d9a0c4e".to_vec();
                greeting.resize(GREETING_SIZE, b' ');
                tokio::spawn(async move {
                    let _ = stream.write_all(&greeting).await;
                    let mut sink = [0u8; 64];
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                });
            }
        });
        (addr, accepted)
    }

    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_relay_serves_this_process_and_closes_on_any_other() {
        let (upstream, accepted) = greeting_server().await;
        let relay = Relay::start(RelayConfig {
            upstream,
            connect_timeout: Duration::from_secs(3),
            backoff: (Duration::from_millis(10), Duration::from_millis(100)),
        })
        .await
        .expect("relay");
        let port = relay.local_addr().port();

        // Another process (a shell) connects and reads what it gets until the relay closes.
        let output = tokio::time::timeout(
            Duration::from_secs(20),
            tokio::process::Command::new("bash")
                .arg("-c")
                .arg(format!(
                    "exec 3<>/dev/tcp/127.0.0.1/{port} && head -c {GREETING_SIZE} <&3 | wc -c"
                ))
                .output(),
        )
        .await
        .expect("the relay closes a foreign connection")
        .expect("bash runs");
        assert!(output.status.success(), "{output:?}");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            "0",
            "another process gets nothing relayed"
        );
        assert_eq!(relay.state().refused(), 1);
        assert_eq!(
            accepted.load(Ordering::Acquire),
            0,
            "nothing reached Tarantool"
        );

        // This process is served: the greeting comes through.
        let mut own = TcpStream::connect(relay.local_addr())
            .await
            .expect("connect");
        let mut greeting = [0u8; GREETING_SIZE];
        tokio::time::timeout(Duration::from_secs(10), own.read_exact(&mut greeting))
            .await
            .expect("in time")
            .expect("greeting");
        assert!(greeting.starts_with(b"Tarantool 2.6.0"));
        assert_eq!(relay.state().refused(), 1);
        assert_eq!(accepted.load(Ordering::Acquire), 1);
    }

    #[test]
    fn socket_inodes_are_found_by_both_ends() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:D431 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 20 4 30 10 -1\n\
   1: 0100007F:9C40 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1 0000000000000000 20 4 30 10 -1\n";
        let client: std::net::SocketAddrV4 = "127.0.0.1:54321".parse().expect("addr");
        let relay: std::net::SocketAddrV4 = "127.0.0.1:40000".parse().expect("addr");
        if cfg!(target_endian = "little") {
            assert_eq!(socket_inode(table, client, relay), Some(4242));
            assert_eq!(socket_inode(table, relay, client), Some(4343));
        }
        let other: std::net::SocketAddrV4 = "127.0.0.1:54322".parse().expect("addr");
        assert_eq!(socket_inode(table, other, relay), None);
    }

    #[test]
    fn versions_come_from_the_greeting() {
        let mut greeting =
            b"Tarantool 2.6.0 (Binary) 7d9a0c4e-1a2b-4c3d-8e9f-0123456789ab".to_vec();
        greeting.resize(64, b' ');
        let v = ServerVersion::from_greeting(&greeting).expect("parsed");
        assert_eq!((v.major, v.minor, v.patch), (2, 6, 0));
        assert!(!v.knows_iproto_id());
        let v = ServerVersion::from_greeting(b"Tarantool 2.10.4 (Binary) x\n").expect("parsed");
        assert!(v.knows_iproto_id());
        let v =
            ServerVersion::from_greeting(b"Tarantool 3.0.0-entrypoint (Binary) x").expect("parsed");
        assert!(v.knows_iproto_id());
        assert!(ServerVersion::from_greeting(b"Redis 7").is_none());
    }

    #[test]
    fn frame_lengths_of_every_width() {
        assert_eq!(read_frame_length(&[0x05]), Ok(Some((5, 1))));
        assert_eq!(read_frame_length(&[0xcc, 200]), Ok(Some((200, 2))));
        assert_eq!(read_frame_length(&[0xcd, 1, 0]), Ok(Some((256, 3))));
        assert_eq!(read_frame_length(&[0xce, 0, 1, 0, 0]), Ok(Some((65536, 5))));
        assert_eq!(
            read_frame_length(&[0xcf, 0, 0, 0, 0, 0, 0, 1, 0]),
            Ok(Some((256, 9)))
        );
        assert_eq!(read_frame_length(&[0xce, 0, 1]), Ok(None));
        assert_eq!(read_frame_length(&[]), Ok(None));
        assert!(read_frame_length(&[0xa1]).is_err());
    }

    #[test]
    fn the_local_id_reply_is_a_well_formed_ok_response() {
        let frame = iproto_id_reply(7);
        let (len, prefix) = read_frame_length(&frame).expect("ok").expect("complete");
        assert_eq!(prefix + len as usize, frame.len());
        let mut body = &frame[prefix..];
        let header = rmpv::decode::read_value(&mut body).expect("header");
        let fields: Vec<(u64, u64)> = header
            .as_map()
            .expect("map")
            .iter()
            .map(|(k, v)| (k.as_u64().unwrap_or(99), v.as_u64().unwrap_or(99)))
            .collect();
        assert_eq!(fields, vec![(0, 0), (1, 7), (5, 0)]);
        let reply = rmpv::decode::read_value(&mut body).expect("body");
        assert!(reply.as_map().is_some());
        assert!(body.is_empty());
    }

    #[test]
    fn request_headers_give_type_and_sync() {
        let mut frame = Vec::new();
        let _ = rmp::encode::write_map_len(&mut frame, 2);
        let _ = rmp::encode::write_pfix(&mut frame, 0x00);
        let _ = rmp::encode::write_uint(&mut frame, IPROTO_ID);
        let _ = rmp::encode::write_pfix(&mut frame, 0x01);
        let _ = rmp::encode::write_uint(&mut frame, 42);
        assert_eq!(request_type_and_sync(&frame), Some((IPROTO_ID, 42)));
        assert_eq!(request_type_and_sync(&[0xc0]), None);
    }
}
