//! Replays beside a validator, end to end: a herd of subscribers resuming from the same height
//! shares one read of history, every one of them gets every event once and in order (across
//! the seam with blocks committed meanwhile), and the per-address replay limit and the read
//! budget hold what clients can ask of the source (Planetmint's Tarantool in production). The
//! node starts after the history was committed: its memory ring is empty, so every resume from
//! an old height reads the source.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_resuming_from_height_zero_reads_history_once_and_everyone_gets_everything() {
    const HERD: usize = 40;
    let history = chain(61, 1, 200, 5);
    let live = chain(62, 201, 20, 5);
    let harness = Harness::over(&history, |c| {
        c.streams.replay_batch_blocks = 20;
        // Every test client connects from 127.0.0.1.
        c.streams.replay_max_per_ip = HERD;
        c.streams.replay_max_concurrent = HERD;
    })
    .await;
    let node = harness.node();
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
            let mut ws = UrlStream::connect(&url).await;
            ws.take(want, Duration::from_secs(120)).await
        }));
    }
    // Blocks are committed while the herd replays: the seam must hold for every client.
    let (writer, _) = spawn_writer(harness.store(), live, Duration::from_millis(10));
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
        "the herd was served from the source's history ({replayed} blocks queued)"
    );
    // One pass over the 200 stored blocks, plus at most a few batches read twice where
    // clients arrived while a segment was being cached.
    assert!(
        read <= 200.0 + 4.0 * 20.0 + 20.0,
        "{HERD} replays from height 0 read {read} blocks from the source: history is shared"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_beyond_the_per_address_limit_get_429_and_the_budget_paces_the_rest() {
    let history = chain(63, 1, 120, 5);
    let harness = Harness::over(&history, |c| {
        c.streams.replay_batch_blocks = 10;
        c.streams.replay_max_per_ip = 2;
        // 600 transactions of history at 100/s: each replay takes seconds, so the first two
        // are still replaying when the third asks.
        c.streams.replay_transactions_per_second = 100;
    })
    .await;
    let node = harness.node();
    let streams = node.streams_addr.to_string();
    let url = format!("ws://{streams}/api/v1/streams/valid_transactions");
    let expected = expected_events(&history);
    let first = UrlStream::connect(&format!("{url}?from_height=0")).await;
    let second = UrlStream::connect(&format!("{url}?from_height=10")).await;

    let (status, body) = http_request(
        &streams,
        &upgrade_request(
            &streams,
            "/api/v1/streams/valid_transactions?from_height=0",
            "",
        ),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    let body: Value = serde_json::from_str(&body).expect("JSON body");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("replaying history")),
        "{body}"
    );
    // Live subscribers are not replays: they are not limited.
    let _live = UrlStream::connect(&url).await;

    // The two admitted replays complete, exactly, at the budget's pace.
    let started = std::time::Instant::now();
    let mut first = first;
    let mut second = second;
    let got_first = first.take(expected.len(), Duration::from_secs(60)).await;
    let after_10: Vec<Value> = expected
        .iter()
        .filter(|e| e["height"].as_u64() > Some(10))
        .cloned()
        .collect();
    let got_second = second.take(after_10.len(), Duration::from_secs(60)).await;
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
    let mut third = UrlStream::connect(&format!("{url}?from_height=100")).await;
    let tail: Vec<Value> = expected
        .iter()
        .filter(|e| e["height"].as_u64() > Some(100))
        .cloned()
        .collect();
    assert!(third.take(tail.len(), Duration::from_secs(60)).await == tail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_rpc_replays_beyond_the_per_address_limit_get_32002() {
    let history = chain(64, 1, 120, 5);
    let harness = Harness::over(&history, |c| {
        c.streams.replay_max_per_ip = 2;
        c.streams.replay_transactions_per_second = 50;
    })
    .await;
    let node = harness.node();
    let mut rpc = RpcClient::connect(&format!("ws://{}/api/v1/streams", node.streams_addr)).await;
    for id in 1..=3 {
        let request = json!({
            "jsonrpc": "2.0", "id": id, "method": "subscribe",
            "params": {"stream": "valid_blocks", "from_height": 0},
        });
        rpc.send_text(&request.to_string()).await;
    }
    // The answers to the three requests, whatever notifications come in between.
    let mut answers = std::collections::BTreeMap::new();
    while answers.len() < 3 {
        let answer = rpc.answer().await;
        let id = answer["id"].as_u64().unwrap_or_else(|| panic!("{answer}"));
        answers.insert(id, answer);
    }
    assert!(answers[&1]["result"].is_string(), "{}", answers[&1]);
    assert!(answers[&2]["result"].is_string(), "{}", answers[&2]);
    assert_eq!(answers[&3]["error"]["code"], -32002, "{}", answers[&3]);
    assert_eq!(answers[&3]["error"]["data"]["limit"], "replays_per_address");
}
