//! Replays beside a validator, end to end against a real Tarantool: a herd of subscribers
//! resuming from the same height shares one read of history, every one of them gets every
//! event once and in order (across the seam with blocks committed meanwhile), and the per-address
//! replay limit and the read budget hold what clients can ask of Planetmint's Tarantool.

mod support;

use std::time::Duration;

use planetmint_streams_devchain::process::TarantoolProcess;
use planetmint_streams_devchain::writer::PlanetmintWriter;
use serde_json::{json, Value};
use support::*;

/// A Tarantool holding `blocks` blocks of `txs` transactions, and a node started after them
/// (its memory ring is empty: every resume from an old height reads Tarantool).
async fn node_over_history(
    blocks: &[planetmint_streams_devchain::generate::GeneratedBlock],
    adjust: impl FnOnce(&mut planetmint_streams::config::Config),
) -> (TarantoolProcess, planetmint_streams::RunningNode) {
    let tarantool = TarantoolProcess::start().await.expect("tarantool");
    let writer = PlanetmintWriter::connect(&tarantool.address())
        .await
        .expect("writer");
    for block in blocks {
        writer.write_block(block).await.expect("write");
    }
    let mut config = test_config(&tarantool.address());
    adjust(&mut config);
    let node = planetmint_streams::start(config).await.expect("node");
    (tarantool, node)
}

fn upgrade_request(streams: &str, query: &str) -> String {
    format!(
        "GET /api/v1/streams/valid_transactions?{query} HTTP/1.1\r\nHost: {streams}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_resuming_from_height_zero_reads_history_once_and_everyone_gets_everything() {
    const HERD: usize = 40;
    let history = chain(61, 1, 200, 5);
    let live = chain(62, 201, 20, 5);
    let (tarantool, node) = node_over_history(&history, |c| {
        c.streams.replay_batch_blocks = 20;
        // Every test client connects from 127.0.0.1.
        c.streams.replay_max_per_ip = HERD;
        c.streams.replay_max_concurrent = HERD;
    })
    .await;
    let expected = expected_events(&history.iter().chain(&live).cloned().collect::<Vec<_>>());
    let url = format!(
        "ws://{}/api/v1/streams/valid_transactions?from_height=0",
        node.streams_addr
    );
    let mut clients = Vec::new();
    for _ in 0..HERD {
        let url = url.clone();
        let want = expected.len();
        clients.push(tokio::spawn(async move {
            let mut ws = connect(&url).await;
            take_json(&mut ws, want, Duration::from_secs(120)).await
        }));
    }
    // Blocks are committed while the herd replays: the seam must hold for every client.
    let (writer, _) = spawn_writer(tarantool.address(), live, Duration::from_millis(10));
    writer.await.expect("writer");
    for client in clients {
        let got = client.await.expect("client");
        assert!(got == expected, "every event once, in order");
    }
    let (_, metrics) = http_get(&node.api_addr.to_string(), "/metrics").await;
    let read = metric(
        &metrics,
        "planetmint_streams_replay_source_blocks_total",
        "",
    );
    let replayed = metric(
        &metrics,
        "planetmint_streams_replayed_blocks_total",
        "from=\"source\"",
    );
    assert!(
        replayed >= (HERD * 200) as f64 * 0.9,
        "the herd was served from Tarantool's history ({replayed} blocks queued)"
    );
    // One pass over the 200 stored blocks, plus at most a few batches read twice where
    // clients arrived while a segment was being cached.
    assert!(
        read <= 200.0 + 4.0 * 20.0 + 20.0,
        "{HERD} replays from height 0 read {read} blocks from Tarantool: history is shared"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_beyond_the_per_address_limit_get_429_and_the_budget_paces_the_rest() {
    let history = chain(63, 1, 120, 5);
    let (_tarantool, node) = node_over_history(&history, |c| {
        c.streams.replay_batch_blocks = 10;
        c.streams.replay_max_per_ip = 2;
        // 600 transactions of history at 100/s: each replay takes seconds, so the first two
        // are still replaying when the third asks.
        c.streams.replay_transactions_per_second = 100;
    })
    .await;
    let streams = node.streams_addr.to_string();
    let url = format!("ws://{streams}/api/v1/streams/valid_transactions");
    let expected = expected_events(&history);
    let first = connect(&format!("{url}?from_height=0")).await;
    let second = connect(&format!("{url}?from_height=10")).await;

    let (status, body) = http_request(&streams, &upgrade_request(&streams, "from_height=0")).await;
    assert_eq!(status, 429, "{body}");
    let body: Value = serde_json::from_str(&body).expect("JSON body");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("replaying history")),
        "{body}"
    );
    // Live subscribers are not replays: they are not limited.
    let _live = connect(&url).await;

    // The two admitted replays complete, exactly, at the budget's pace.
    let started = std::time::Instant::now();
    let mut first = first;
    let mut second = second;
    let got_first = take_json(&mut first, expected.len(), Duration::from_secs(60)).await;
    let after_10: Vec<Value> = expected
        .iter()
        .filter(|e| e["height"].as_u64() > Some(10))
        .cloned()
        .collect();
    let got_second = take_json(&mut second, after_10.len(), Duration::from_secs(60)).await;
    assert!(got_first == expected && got_second == after_10);
    // 600 transactions at 100/s with a one-second burst of 100: at least 4 s in all.
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "the read budget paced the replays ({:?})",
        started.elapsed()
    );
    let (_, metrics) = http_get(&node.api_addr.to_string(), "/metrics").await;
    assert!(
        metric(
            &metrics,
            "planetmint_streams_replay_waits_total",
            "reason=\"read_rate\""
        ) > 0.0
    );
    assert_eq!(
        metric(
            &metrics,
            "planetmint_streams_rejected_connections_total",
            "reason=\"too_many_replays_from_ip\""
        ),
        1.0
    );

    // Once they caught up, the address may replay again.
    let mut third = connect(&format!("{url}?from_height=100")).await;
    let tail: Vec<Value> = expected
        .iter()
        .filter(|e| e["height"].as_u64() > Some(100))
        .cloned()
        .collect();
    assert!(take_json(&mut third, tail.len(), Duration::from_secs(60)).await == tail);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_rpc_replays_beyond_the_per_address_limit_get_32002() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let history = chain(64, 1, 120, 5);
    let (_tarantool, node) = node_over_history(&history, |c| {
        c.streams.replay_max_per_ip = 2;
        c.streams.replay_transactions_per_second = 50;
    })
    .await;
    let mut ws = connect(&format!("ws://{}/api/v1/streams", node.streams_addr)).await;
    for id in 1..=3 {
        let request = json!({
            "jsonrpc": "2.0", "id": id, "method": "subscribe",
            "params": {"stream": "valid_blocks", "from_height": 0},
        });
        ws.send(Message::Text(request.to_string().into()))
            .await
            .expect("send");
    }
    // The answers to the three requests, whatever notifications come in between.
    let mut answers = std::collections::BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while answers.len() < 3 {
        let message = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("answers in time");
        if let Some(Ok(Message::Text(text))) = message {
            let value: Value = serde_json::from_str(text.as_str()).expect("JSON");
            if let Some(id) = value["id"].as_u64() {
                answers.insert(id, value);
            }
        }
    }
    assert!(answers[&1]["result"].is_string(), "{}", answers[&1]);
    assert!(answers[&2]["result"].is_string(), "{}", answers[&2]);
    assert_eq!(answers[&3]["error"]["code"], -32002, "{}", answers[&3]);
    assert_eq!(answers[&3]["error"]["data"]["limit"], "replays_per_address");
    node.shutdown().await;
}
