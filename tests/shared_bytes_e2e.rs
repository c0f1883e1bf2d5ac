//! A block waiting for a slow JSON-RPC client is not copied per subscription: 256
//! subscriptions of a connection that never reads hold references to each block's shared
//! frames (each wrapped in its notification only when the socket takes it), so the node's
//! memory does not grow with the subscriptions (security review of 5e9dd43, finding 1:
//! 256 x 256 such subscriptions took the node from 67 MiB to 4.96 GiB).
//!
//! Alone in its test binary, not a module of the end-to-end binary (`tests/e2e`): it measures
//! this process's resident memory, and the node runs in this process, so the other end-to-end
//! tests running beside it (8 at a time under `make test`) would grow the same number. For the
//! same reason it carries the few helpers it needs (start the node, read an answer, read a
//! counter; the raw HTTP client is `tests/e2e/support/clients/http.rs` itself) rather than
//! the whole of `tests/e2e/support`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use planetmint_streams::config::Config;
use planetmint_streams::RunningNode;
use planetmint_streams_devchain::generate::synthetic_block;
use planetmint_streams_ingest::MemorySource;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// The end-to-end tests' raw HTTP client (it needs nothing else of their support).
#[allow(dead_code)]
#[path = "e2e/support/clients/http.rs"]
mod http;

/// How long any one step may take before the test fails.
const WITHIN: Duration = Duration::from_secs(20);

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_waiting_for_a_slow_reader_is_not_copied_per_subscription() {
    const SUBSCRIPTIONS: usize = 256;
    const BLOCKS: u64 = 24;
    let mut config = Config::default();
    config.streams.bind = "127.0.0.1:0".into();
    config.api.bind = "127.0.0.1:0".into();
    // Room for everything to wait: only copies could make it big.
    config.streams.queue_max_bytes = 1 << 30;
    let source = Arc::new(MemorySource::new());
    let node = planetmint_streams::start_with_source(config, source.clone())
        .await
        .expect("node starts");
    // One connection that subscribes and then reads nothing, with a small receive buffer so
    // the kernel takes little of what waits.
    let url = format!("ws://{}/api/v1/streams", node.streams_addr);
    let (mut ws, _) = tokio::time::timeout(WITHIN, tokio_tungstenite::connect_async(&url))
        .await
        .expect("connect in time")
        .expect("connect");
    for id in 0..SUBSCRIPTIONS {
        let request = json!({"jsonrpc": "2.0", "id": id, "method": "subscribe",
                             "params": {"stream": "valid_transactions", "batch": "block"}});
        ws.feed(Message::text(request.to_string()))
            .await
            .expect("send");
    }
    ws.flush().await.expect("send");
    let mut answered = 0;
    while answered < SUBSCRIPTIONS {
        let answer = next_text(&mut ws).await;
        assert!(answer["result"].is_string(), "{answer}");
        answered += 1;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while node.hub.subscriber_count() < SUBSCRIPTIONS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "every subscription attached"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = rss();
    // Blocks of 100 transactions (about 25 KB as one batch message): 256 private copies of
    // 24 of them would be about 150 MB.
    for height in 1..=BLOCKS {
        commit(&node, &source, height).await;
    }
    let grown = rss().saturating_sub(before);
    let copies = SUBSCRIPTIONS as u64 * BLOCKS * 25_000;
    assert!(
        grown < copies / 5,
        "the node grew by {} MB for blocks that {SUBSCRIPTIONS} subscriptions wait for (copies would be {} MB)",
        grown >> 20,
        copies >> 20
    );
    // Still connected: nothing overflowed, the blocks are waiting.
    assert_eq!(too_slow_disconnects(node.api_addr).await, 0.0);
    assert_eq!(node.hub.subscriber_count(), SUBSCRIPTIONS);
    drop(ws);
}

/// The next text message of the channel as JSON (pings and pongs skipped).
async fn next_text<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let frame = tokio::time::timeout(WITHIN, ws.next())
            .await
            .expect("an answer in time")
            .expect("connection open")
            .expect("a frame");
        if let Message::Text(text) = frame {
            return serde_json::from_str(text.as_str()).expect("JSON");
        }
    }
}

/// Commits a block of 100 transactions at `height` and waits until the node published it.
async fn commit(node: &RunningNode, source: &MemorySource, height: u64) {
    source.commit(synthetic_block(height, 100, KEY));
    let deadline = tokio::time::Instant::now() + WITHIN;
    while node.hub.last_published() < Some(height) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "block {height} published"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `planetmint_streams_disconnects_total{reason="too_slow"}` from the node's `/metrics`.
async fn too_slow_disconnects(api: SocketAddr) -> f64 {
    let (status, text) = http::http_get(&api.to_string(), "/metrics").await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .filter(|l| l.starts_with("planetmint_streams_disconnects_total{"))
        .filter(|l| l.contains("\"too_slow\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

const KEY: &str = "4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW";
