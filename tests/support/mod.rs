//! Shared pieces of the end-to-end tests: a real Tarantool, a node started in-process on free
//! loopback ports, a raw HTTP client and WebSocket helpers.
#![allow(dead_code)]

pub mod browser;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use planetmint_streams::config::Config;
use planetmint_streams::RunningNode;
use planetmint_streams_devchain::process::TarantoolProcess;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub mod jetstream;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A configuration for tests: loopback ports chosen by the OS, short timers.
pub fn test_config(tarantool: &str) -> Config {
    let mut config = Config::default();
    config.tarantool.address = tarantool.to_owned();
    config.tarantool.reconnect_min = Duration::from_millis(20);
    config.tarantool.reconnect_max = Duration::from_millis(300);
    config.tarantool.request_timeout = Duration::from_secs(3);
    config.tarantool.long_poll = Duration::from_millis(500);
    config.streams.bind = "127.0.0.1:0".into();
    config.streams.advertised_host = "127.0.0.1".into();
    config.streams.workers = 2;
    config.streams.shutdown_grace = Duration::from_secs(3);
    config.api.bind = "127.0.0.1:0".into();
    config
}

/// A Tarantool with Planetmint's schema and a node reading it.
pub struct Harness {
    pub tarantool: TarantoolProcess,
    pub node: Option<RunningNode>,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let tarantool = TarantoolProcess::start().await.expect("tarantool starts");
        let mut config = test_config(&tarantool.address());
        adjust(&mut config);
        let node = planetmint_streams::start(config)
            .await
            .expect("node starts");
        let harness = Self {
            tarantool,
            node: Some(node),
        };
        harness.wait_started().await;
        harness
    }

    /// Waits until the node's ingest has reached Tarantool (works whatever the API speaks).
    pub async fn wait_started(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let status = &self.node().status;
        while !(status.is_started() && status.is_reachable()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the node never reached Tarantool"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn node(&self) -> &RunningNode {
        self.node.as_ref().expect("node running")
    }

    pub fn api(&self) -> String {
        format!("http://{}", self.node().api_addr)
    }

    pub fn streams_base(&self) -> String {
        format!("ws://{}", self.node().streams_addr)
    }

    /// Waits until `/ready` says 200.
    pub async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = http_get(&self.node().api_addr.to_string(), "/ready").await;
            if status == 200 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node never became ready: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `GET path` over a fresh connection; returns status and body.
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    http_request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// Sends a raw HTTP request; returns status and body. Reads until the body announced by
/// `Content-Length` is complete (or the connection ends), not until the server closes.
pub async fn http_request(addr: &str, request: &str) -> (u16, String) {
    http_request_bytes(addr, request.as_bytes()).await
}

/// Sends a raw HTTP request of any bytes (a gzip body); returns status and body.
pub async fn http_request_bytes(addr: &str, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut response = Vec::new();
    let mut chunk = [0u8; 8192];
    let complete = |response: &[u8]| {
        let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
            return false;
        };
        let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
        head.lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .is_some_and(|len| response.len() >= end + 4 + len)
    };
    while !complete(&response) {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
    }
    parse_http_response(&response)
}

/// The status and body of a raw HTTP response (status 0 when it has no status line).
pub fn parse_http_response(response: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `GET path` and parse the JSON body.
pub async fn get_json(addr: &str, path: &str) -> (u16, Value) {
    let (status, body) = http_get(addr, path).await;
    let json = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{path}: body is not JSON ({e}): {body}"));
    (status, json)
}

pub async fn connect(url: &str) -> Ws {
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .expect("connect in time")
    .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    ws
}

/// Validators for every message shape the streams publish, from the same Rust types the
/// catalogue's JSON Schemas are generated from.
fn message_validators() -> &'static [jsonschema::Validator] {
    use planetmint_streams_model::event::{BlockBatchEvent, BlockEvent, TransactionEvent};
    static VALIDATORS: std::sync::OnceLock<Vec<jsonschema::Validator>> = std::sync::OnceLock::new();
    VALIDATORS.get_or_init(|| {
        [
            serde_json::to_value(schemars::schema_for!(TransactionEvent<'static>)),
            serde_json::to_value(schemars::schema_for!(BlockEvent<'static>)),
            serde_json::to_value(schemars::schema_for!(BlockBatchEvent<'static>)),
        ]
        .into_iter()
        .map(|schema| {
            jsonschema::validator_for(&schema.expect("schema JSON")).expect("valid schema")
        })
        .collect()
    })
}

/// Panics unless `message` validates against one of the published message schemas.
pub fn assert_published_shape(message: &Value) {
    assert!(
        message_validators().iter().any(|v| v.is_valid(message)),
        "message does not match any published JSON Schema: {message}"
    );
}

/// Next text message as JSON, skipping pings/pongs; panics on close or timeout. Every
/// message is checked against the published JSON Schemas.
pub async fn next_json(ws: &mut Ws, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let message = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a message in time")
            .expect("stream open")
            .expect("no protocol error");
        match message {
            Message::Text(text) => {
                let message: Value = serde_json::from_str(text.as_str()).expect("JSON message");
                assert_published_shape(&message);
                return message;
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// The next JSON-RPC message on the channel (an answer or a notification; not a stream
/// message, so the stream schemas do not apply), skipping pings and pongs.
pub async fn rpc_next(ws: &mut Ws, within: Duration) -> Value {
    loop {
        let message = tokio::time::timeout(within, ws.next())
            .await
            .expect("a message in time")
            .expect("connection open")
            .expect("a frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).expect("JSON");
        }
    }
}

/// Sends `subscribe` with `params` (request id `id`) and returns the answer: `result` is the
/// subscription id, or `error` says why not.
pub async fn rpc_subscribe(ws: &mut Ws, id: u64, params: Value) -> Value {
    let request =
        serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "subscribe", "params": params});
    ws.send(Message::Text(request.to_string().into()))
        .await
        .expect("send");
    rpc_next(ws, Duration::from_secs(20)).await
}

/// The `result` of the next `n` notifications, each of which must be for `subscription`.
pub async fn rpc_results(ws: &mut Ws, subscription: &Value, n: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let notification = rpc_next(ws, Duration::from_secs(30)).await;
        assert_eq!(notification["method"], "subscription", "{notification}");
        assert_eq!(
            notification["params"]["subscription"], *subscription,
            "{notification}"
        );
        out.push(notification["params"]["result"].clone());
    }
    out
}

/// Reads `n` JSON messages.
pub async fn take_json(ws: &mut Ws, n: usize, within: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + within;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        out.push(next_json(ws, left).await);
    }
    out
}

/// Reads until the server's close frame; returns it (messages before it are collected).
pub async fn read_until_close(ws: &mut Ws, within: Duration) -> (Vec<Value>, Option<CloseFrame>) {
    let deadline = tokio::time::Instant::now() + within;
    let mut messages = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Text(text))) => {
                messages.push(serde_json::from_str(text.as_str()).expect("JSON"))
            }
            Some(Ok(Message::Close(frame))) => return (messages, frame),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (messages, None),
        }
    }
}

/// Asserts that nothing but pings arrives for `quiet`.
pub async fn assert_silent(ws: &mut Ws, quiet: Duration) {
    let deadline = tokio::time::Instant::now() + quiet;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(other) => panic!("expected silence, got {other:?}"),
        }
    }
}

pub async fn close(mut ws: Ws) {
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

pub async fn send_ping(ws: &mut Ws, payload: &[u8]) {
    ws.send(Message::Ping(payload.to_vec().into()))
        .await
        .expect("send ping");
}

/// The stream events a list of generated blocks must produce, in order.
pub fn expected_events(
    blocks: &[planetmint_streams_devchain::generate::GeneratedBlock],
) -> Vec<Value> {
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

/// A client that follows the delivery contract: it remembers the last height whose events it
/// has all seen, reconnects with `from_height` after any disconnect, and skips events of the
/// block in progress that it already had. Its `events` must equal the chain's, exactly once.
pub struct ExactlyOnceClient {
    pub url: String,
    pub complete: Option<u64>,
    pub events: Vec<Value>,
    current: Option<u64>,
    current_ids: std::collections::HashSet<String>,
    pub reconnects: usize,
}

impl ExactlyOnceClient {
    pub fn new(url: &str, from_height: Option<u64>) -> Self {
        Self {
            url: url.to_owned(),
            complete: from_height,
            events: Vec::new(),
            current: None,
            current_ids: Default::default(),
            reconnects: 0,
        }
    }

    fn target(&self) -> String {
        match self.complete {
            Some(h) => format!("{}?from_height={h}", self.url),
            None => self.url.clone(),
        }
    }

    fn accept(&mut self, event: Value) {
        let height = event["height"].as_u64().expect("height");
        if Some(height) != self.current {
            if let Some(done) = self.current {
                self.complete = Some(done);
            }
            self.current = Some(height);
            self.current_ids.clear();
        }
        let id = event["transaction_id"].as_str().expect("id").to_owned();
        if self.current_ids.insert(id) {
            self.events.push(event);
        }
    }

    /// Reads until `want` events are held or `within` passes, reconnecting as needed
    /// (`url` may change between connections through `url_now`).
    pub async fn run_until(
        &mut self,
        want: usize,
        within: Duration,
        url_now: impl Fn() -> Option<String>,
    ) {
        let deadline = tokio::time::Instant::now() + within;
        while self.events.len() < want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {want} events in time",
                self.events.len()
            );
            if let Some(url) = url_now() {
                self.url = url;
            }
            let connected = tokio::time::timeout(
                Duration::from_secs(2),
                tokio_tungstenite::connect_async(self.target()),
            )
            .await;
            let Ok(Ok((mut ws, _))) = connected else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            loop {
                if self.events.len() >= want {
                    let _ = ws.close(None).await;
                    return;
                }
                match tokio::time::timeout_at(deadline, ws.next()).await {
                    Ok(Some(Ok(Message::Text(text)))) => {
                        self.accept(serde_json::from_str(text.as_str()).expect("JSON"))
                    }
                    Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) => break,
                    Ok(Some(Ok(_))) => {}
                    Err(_) => panic!("only {} of {want} events in time", self.events.len()),
                }
            }
            self.reconnects += 1;
            // The block in progress may have been cut: everything after `complete` comes
            // again, and what was already seen of block `current` is skipped.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Scrapes `/metrics` on `api_addr` until `ready` holds for its text, for at most `within`:
/// for what the node counts after a client has moved on (a session ending after a close, a
/// subscription started). Returns the last text either way; the caller's assertions say what
/// is missing.
pub async fn metrics_until(
    api_addr: &str,
    within: Duration,
    ready: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (status, text) = http_get(api_addr, "/metrics").await;
        assert_eq!(status, 200, "/metrics: {text}");
        if ready(&text) || tokio::time::Instant::now() >= deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Value of a counter or gauge in Prometheus text, summed over series matching `labels`.
pub fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.starts_with(name)
                && (line[name.len()..].starts_with(' ') || line[name.len()..].starts_with('{'))
                && line.contains(labels)
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A well-behaved subscriber and a steady writer, running while a test does something hostile;
/// `finish` checks the subscriber received every committed event, in order.
pub struct Bystander {
    writer: tokio::task::JoinHandle<Vec<planetmint_streams_devchain::generate::GeneratedBlock>>,
    reader: tokio::task::JoinHandle<Vec<Value>>,
    stop: tokio_util::sync::CancellationToken,
    /// How many blocks the writer has committed so far.
    written: tokio::sync::watch::Receiver<usize>,
}

impl Bystander {
    pub async fn start(harness: &Harness, seed: u64) -> Self {
        let url = format!(
            "{}/api/v1/streams/valid_transactions",
            harness.streams_base()
        );
        let mut ws = connect(&url).await;
        let stop = tokio_util::sync::CancellationToken::new();
        let address = harness.tarantool.address();
        let (progress, written) = tokio::sync::watch::channel(0usize);
        let writer = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut writer =
                    planetmint_streams_devchain::writer::PlanetmintWriter::connect(&address)
                        .await
                        .expect("writer");
                let mut chain =
                    planetmint_streams_devchain::generate::ChainGenerator::new(seed, 1, 6);
                let mut written = Vec::new();
                while !stop.is_cancelled() {
                    let block = chain.block(2);
                    writer
                        .write_block_retrying(&address, &block, Duration::from_secs(10))
                        .await
                        .expect("write");
                    written.push(block);
                    let _ = progress.send(written.len());
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                written
            })
        };
        let reader_stop = stop.clone();
        let reader = tokio::spawn(async move {
            let mut events = Vec::new();
            loop {
                let message = tokio::select! {
                    m = ws.next() => m,
                    _ = reader_stop.cancelled() => break,
                };
                match message {
                    Some(Ok(Message::Text(text))) => {
                        events.push(serde_json::from_str(text.as_str()).expect("JSON"))
                    }
                    Some(Ok(_)) => {}
                    other => panic!("the bystander's stream broke: {other:?}"),
                }
            }
            // Drain what is still on its way.
            while let Ok(Some(Ok(message))) =
                tokio::time::timeout(Duration::from_millis(500), ws.next()).await
            {
                if let Message::Text(text) = message {
                    events.push(serde_json::from_str(text.as_str()).expect("JSON"));
                }
            }
            events
        });
        Self {
            writer,
            reader,
            stop,
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
        let received = self.reader.await.expect("reader");
        let expected = expected_events(&written);
        assert!(!expected.is_empty());
        assert_eq!(
            received.len(),
            expected.len(),
            "the well-behaved subscriber got every event"
        );
        assert_eq!(received, expected);
    }
}

/// Opens a raw TCP connection and sends a WebSocket upgrade for `path`; returns the socket
/// after the 101 response.
pub async fn raw_upgrade(addr: &str, path: &str) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    socket
        .write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("handshake");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = socket.read(&mut byte).await.expect("read");
        assert_eq!(n, 1, "connection closed during the handshake");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    socket
}

/// A masked client frame (RFC 6455 5.3).
pub fn client_frame(opcode: u8, payload: &[u8], fin: bool) -> Vec<u8> {
    let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads server frames until a close frame; returns its code and reason.
pub async fn read_close_frame(socket: &mut TcpStream, within: Duration) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        // Parse whole frames in what was read so far.
        let mut pos = 0;
        while buf.len() >= pos + 2 {
            let opcode = buf[pos] & 0x0f;
            let (len, header) = match buf[pos + 1] & 0x7f {
                126 if buf.len() >= pos + 4 => (
                    usize::from(u16::from_be_bytes([buf[pos + 2], buf[pos + 3]])),
                    4,
                ),
                127 if buf.len() >= pos + 10 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&buf[pos + 2..pos + 10]);
                    (u64::from_be_bytes(b) as usize, 10)
                }
                126 | 127 => break,
                n => (usize::from(n), 2),
            };
            if buf.len() < pos + header + len {
                break;
            }
            if opcode == 0x8 {
                let payload = &buf[pos + header..pos + header + len];
                if payload.len() < 2 {
                    return Some((1005, String::new()));
                }
                return Some((
                    u16::from_be_bytes([payload[0], payload[1]]),
                    String::from_utf8_lossy(&payload[2..]).into_owned(),
                ));
            }
            pos += header + len;
        }
        match tokio::time::timeout_at(deadline, socket.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// `blocks` Planetmint-shaped blocks of `txs` transactions from height `first`.
pub fn chain(
    seed: u64,
    first: u64,
    blocks: usize,
    txs: usize,
) -> Vec<planetmint_streams_devchain::generate::GeneratedBlock> {
    let mut generator = planetmint_streams_devchain::generate::ChainGenerator::new(seed, first, 8);
    (0..blocks).map(|_| generator.block(txs)).collect()
}

/// Writes `blocks` one after another into the Tarantool at `address` (surviving its
/// restarts), publishing the last written height.
pub fn spawn_writer(
    address: String,
    blocks: Vec<planetmint_streams_devchain::generate::GeneratedBlock>,
    pause: Duration,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::watch::Receiver<u64>,
) {
    let (progress, watch) = tokio::sync::watch::channel(0u64);
    let task = tokio::spawn(async move {
        let mut writer = planetmint_streams_devchain::writer::PlanetmintWriter::connect(&address)
            .await
            .expect("writer");
        for block in &blocks {
            writer
                .write_block_retrying(&address, block, Duration::from_secs(30))
                .await
                .expect("written");
            let _ = progress.send(block.height);
            tokio::time::sleep(pause).await;
        }
    });
    (task, watch)
}

/// Runs `command` to its end, checks that it succeeded (showing its stderr if not) and
/// returns its stdout.
pub async fn stdout_of(command: &mut tokio::process::Command) -> String {
    let output = command.output().await.expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Writes `blocks` in order into the harness's Tarantool, reading `/metrics` after every tenth,
/// until the counter `name{labels}` reaches `at_least`; returns how many blocks were written
/// (all of them when it never did).
pub async fn write_until_metric(
    harness: &Harness,
    blocks: &[planetmint_streams_devchain::generate::GeneratedBlock],
    name: &str,
    labels: &str,
    at_least: f64,
) -> usize {
    let address = harness.tarantool.address();
    let api = harness.node().api_addr.to_string();
    let mut writer = planetmint_streams_devchain::writer::PlanetmintWriter::connect(&address)
        .await
        .expect("writer");
    for (written, block) in (1usize..).zip(blocks) {
        writer
            .write_block_retrying(&address, block, Duration::from_secs(10))
            .await
            .expect("write");
        if written.is_multiple_of(10) {
            let (_, text) = http_get(&api, "/metrics").await;
            if metric(&text, name, labels) >= at_least {
                return written;
            }
        }
    }
    blocks.len()
}

/// The `planetmint-streams` binary run as a process on fixed loopback ports, to be killed and
/// started again on the same ports.
pub struct NodeProcess {
    pub tarantool: String,
    pub streams_port: u16,
    pub api_port: u16,
    /// More environment variables for the process (e.g. `PLANETMINT_STREAMS_NATS__URL`).
    pub env: Vec<(String, String)>,
}

impl NodeProcess {
    /// Ports chosen now, for a node reading `tarantool`.
    pub fn new(tarantool: &str) -> Self {
        Self {
            tarantool: tarantool.to_owned(),
            streams_port: planetmint_streams_devchain::process::free_port().expect("port"),
            api_port: planetmint_streams_devchain::process::free_port().expect("port"),
            env: Vec::new(),
        }
    }

    /// Starts the binary (stderr discarded; killed when the handle is dropped).
    pub fn spawn(&self) -> tokio::process::Child {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_planetmint-streams"))
            .args([
                "--tarantool",
                &self.tarantool,
                "--streams-bind",
                &format!("127.0.0.1:{}", self.streams_port),
                "--api-bind",
                &format!("127.0.0.1:{}", self.api_port),
                "--advertised-host",
                "127.0.0.1",
            ])
            .env("PLANETMINT_STREAMS_TARANTOOL__LONG_POLL", "200ms")
            .envs(self.env.iter().cloned())
            .current_dir(std::env::temp_dir())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts")
    }

    /// The API address.
    pub fn api(&self) -> String {
        format!("127.0.0.1:{}", self.api_port)
    }

    /// The transactions stream URL.
    pub fn transactions_url(&self) -> String {
        format!(
            "ws://127.0.0.1:{}/api/v1/streams/valid_transactions",
            self.streams_port
        )
    }

    /// Waits until `/ready` answers 200.
    pub async fn wait_ready(&self) {
        let api = self.api();
        for _ in 0..400 {
            if TcpStream::connect(&api).await.is_ok() && http_get(&api, "/ready").await.0 == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("node on {api} never became ready");
    }
}

/// The Python of `make test` (a venv with `websockets` and `kosoku`), or `PMS_PYTHON`.
pub fn python() -> String {
    std::env::var("PMS_PYTHON").unwrap_or_else(|_| {
        let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/target/py/bin/python3");
        assert!(
            std::path::Path::new(venv).exists(),
            "this test needs Python with `websockets`: run `make test` (or scripts/ensure-deps.sh), or set PMS_PYTHON"
        );
        venv.to_owned()
    })
}

/// A node on the in-memory source (no Tarantool): for tests of what the node does with the
/// blocks, not of how it reads them.
pub struct MemoryHarness {
    pub source: std::sync::Arc<planetmint_streams_ingest::memory::MemorySource>,
    pub node: Option<RunningNode>,
    config: Config,
}

impl MemoryHarness {
    /// A node following an empty in-memory chain, `adjust`ed.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let source = std::sync::Arc::new(planetmint_streams_ingest::memory::MemorySource::new());
        let mut config = test_config("127.0.0.1:1");
        adjust(&mut config);
        let mut harness = Self {
            source,
            node: None,
            config,
        };
        harness.launch().await;
        harness
    }

    async fn launch(&mut self) {
        let node =
            planetmint_streams::node::start_with_source(self.config.clone(), self.source.clone())
                .await
                .expect("node starts");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while node.hub.last_published().is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the node never started"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.node = Some(node);
    }

    /// Stops the node (SIGTERM's graceful shutdown) and starts it again on the same ports and
    /// the same chain, as a restarted process would.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start_again().await;
    }

    /// Stops the node gracefully; [`start_again`](Self::start_again) brings it back on the
    /// same ports.
    pub async fn stop(&mut self) {
        let node = self.node.take().expect("node running");
        self.config.streams.bind = node.streams_addr.to_string();
        self.config.api.bind = node.api_addr.to_string();
        node.shutdown().await;
    }

    /// Starts the stopped node again on its ports.
    pub async fn start_again(&mut self) {
        self.launch().await;
    }

    pub fn node(&self) -> &RunningNode {
        self.node.as_ref().expect("node running")
    }

    pub fn streams_base(&self) -> String {
        format!("ws://{}", self.node().streams_addr)
    }

    /// Commits `block` and waits until the node has published it.
    pub async fn commit(&self, block: planetmint_streams_model::CommittedBlock) {
        let height = block.height;
        self.source.commit(block);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.node().hub.last_published() < Some(height) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "block {height} was never published"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// A block at `height` with `count` CREATE transactions whose ids are spread over the
/// whole id space (so partitions and groups split them), each paying `key`.
pub fn memory_block(
    height: u64,
    count: u64,
    key: &str,
) -> planetmint_streams_model::CommittedBlock {
    use planetmint_streams_model::{AssetIdsEntry, CommittedBlock, CommittedTransaction};
    let transactions = (0..count)
        .map(|i| {
            let n = height * 1000 + i;
            let id = format!("{:016x}{:048x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15), n);
            CommittedTransaction {
                asset_id: id.clone(),
                asset_ids: vec![AssetIdsEntry::Id(id.clone())],
                id,
                operation: "CREATE".into(),
                output_public_keys: vec![key.to_owned()],
                input_owners: Vec::new(),
            }
        })
        .collect();
    CommittedBlock::synthetic(height, transactions)
}

/// Signed mode with one signing key (`k1`), for tests of credentials.
pub fn signed_with_key(config: &mut Config) {
    config.auth.mode = planetmint_streams_auth::AuthMode::Signed;
    config.auth.keys = vec![planetmint_streams_auth::KeyConfig {
        id: "k1".into(),
        secret: Some(planetmint_streams_auth::SecretString::new("00".repeat(32))),
        secret_file: None,
    }];
}

/// A stream token of the node's signing keys for `streams`, valid for `ttl` (the default when
/// `None`).
pub fn issue_token(
    node: &RunningNode,
    streams: impl IntoIterator<Item = planetmint_streams_auth::Stream>,
    ttl: Option<Duration>,
) -> String {
    node.gatekeeper
        .token_authority()
        .expect("signing keys")
        .issue(&planetmint_streams_auth::Grant::new(streams), ttl)
        .expect("a token")
        .token
}
