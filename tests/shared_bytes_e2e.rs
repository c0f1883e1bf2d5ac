//! A block waiting for a slow JSON-RPC client is not copied per subscription: 256
//! subscriptions of a connection that never reads hold references to each block's shared
//! frames (each wrapped in its notification only when the socket takes it), so the node's
//! memory does not grow with the subscriptions (security review of 5e9dd43, finding 1:
//! 256 x 256 such subscriptions took the node from 67 MiB to 4.96 GiB).
//!
//! Alone in its test binary: it measures the process's resident memory, which other tests
//! running beside it would disturb.

mod support;

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use support::*;
use tokio_tungstenite::tungstenite::Message;

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
    let harness = MemoryHarness::start_with(|c| {
        // Room for everything to wait: only copies could make it big.
        c.streams.queue_max_bytes = 1 << 30;
    })
    .await;
    // One connection that subscribes and then reads nothing, with a small receive buffer so
    // the kernel takes little of what waits.
    let url = format!("{}/api/v1/streams", harness.streams_base());
    let mut ws = connect(&url).await;
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
        let answer = rpc_next(&mut ws, Duration::from_secs(20)).await;
        assert!(answer["result"].is_string(), "{answer}");
        answered += 1;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while harness.node().hub.subscriber_count() < SUBSCRIPTIONS {
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
        harness.commit(memory_block(height, 100, KEY)).await;
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
    let metrics = http_get(&harness.node().api_addr.to_string(), "/metrics")
        .await
        .1;
    assert_eq!(
        metric(&metrics, "planetmint_streams_disconnects_total", "too_slow"),
        0.0
    );
    assert_eq!(harness.node().hub.subscriber_count(), SUBSCRIPTIONS);
    drop(ws);
}

const KEY: &str = "4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW";
