//! The delivery guarantee end to end: every event exactly once and in order across resumes
//! (`from_height`), slow subscribers, Tarantool outages and node restarts.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use planetmint_streams_devchain::process::TarantoolProcess;
use planetmint_streams_devchain::writer::PlanetmintWriter;
use serde_json::Value;
use support::*;
use tokio_tungstenite::tungstenite::Message;

fn events_after(expected: &[Value], from: u64) -> Vec<Value> {
    expected
        .iter()
        .filter(|e| e["height"].as_u64().unwrap_or(0) > from)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_see_every_event_once_at_the_seam_between_history_and_live() {
    let harness = Harness::start_with(|c| {
        c.streams.ring_blocks = 16;
        c.streams.replay_batch_blocks = 7;
    })
    .await;
    let blocks = chain(21, 1, 260, 2);
    let expected = expected_events(&blocks);
    let last = blocks.last().map(|b| b.height).unwrap_or(0);
    let (writer, mut progress) = spawn_writer(
        harness.tarantool.address(),
        blocks,
        Duration::from_millis(4),
    );
    let url = format!(
        "{}/api/v1/streams/valid_transactions",
        harness.streams_base()
    );

    let mut clients = Vec::new();
    // Connect while blocks are being committed, asking for history from Tarantool (far behind
    // the 16-block ring), from the ring, from now, and from the future.
    for (at, back) in [
        (20u64, 20i64),
        (60, 55),
        (90, 10),
        (120, 3),
        (150, 0),
        (180, -15),
        (200, 150),
        (230, 1),
    ] {
        progress
            .wait_for(|h| *h >= at)
            .await
            .expect("writer progresses");
        let from = u64::try_from(at as i64 - back).unwrap_or(0);
        let want = events_after(&expected, from);
        let url = format!("{url}?from_height={from}");
        clients.push(tokio::spawn(async move {
            let mut ws = connect(&url).await;
            let got = take_json(&mut ws, want.len(), Duration::from_secs(60)).await;
            assert_silent(&mut ws, Duration::from_millis(200)).await;
            (from, got == want, got.len(), want.len())
        }));
    }
    // And one blocks-stream client resuming from far back.
    let blocks_url = format!(
        "{}/api/v1/streams/valid_blocks?from_height=5",
        harness.streams_base()
    );
    let mut blocks_ws = connect(&blocks_url).await;
    writer.await.expect("writer");
    for client in clients {
        let (from, exact, got, want) = client.await.expect("client");
        assert!(
            exact,
            "from_height={from}: got {got} events, expected exactly {want} in order"
        );
    }
    let heights: Vec<u64> = take_json(&mut blocks_ws, (last - 5) as usize, Duration::from_secs(30))
        .await
        .iter()
        .map(|b| b["height"].as_u64().expect("height"))
        .collect();
    assert_eq!(heights, (6..=last).collect::<Vec<_>>());

    let (_, metrics) = http_get(&harness.node().api_addr.to_string(), "/metrics").await;
    assert!(
        metric(
            &metrics,
            "planetmint_streams_replayed_blocks_total",
            "from=\"source\""
        ) > 0.0,
        "history came from Tarantool"
    );
    assert!(
        metric(
            &metrics,
            "planetmint_streams_replayed_blocks_total",
            "from=\"memory\""
        ) > 0.0,
        "recent history came from the ring"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_closed_with_4000_and_resumes_without_gap() {
    let harness = Harness::start_with(|c| {
        c.streams.queue_max_blocks = 8;
        c.streams.queue_max_bytes = 1 << 20;
        c.streams.pong_timeout = Duration::from_secs(120);
    })
    .await;
    let url = format!(
        "{}/api/v1/streams/valid_transactions",
        harness.streams_base()
    );
    let mut slow = connect(&url).await;
    let mut normal = connect(&url).await;
    let blocks = chain(31, 1, 1500, 40);
    let expected = expected_events(&blocks);

    // The normal subscriber reads everything as it comes.
    let normal_events = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let normal_events = normal_events.clone();
        let want = expected.len();
        tokio::spawn(async move {
            while normal_events.lock().expect("lock").len() < want {
                let event = next_json(&mut normal, Duration::from_secs(60)).await;
                normal_events.lock().expect("lock").push(event);
            }
        })
    };

    // Commit blocks until the slow subscriber (which reads nothing) has been found too slow.
    let written = write_until_metric(
        &harness,
        &blocks,
        "planetmint_streams_disconnects_total",
        "reason=\"too_slow\"",
        1.0,
    )
    .await;
    let normal_had_at_overflow = normal_events.lock().expect("lock").len();
    assert!(
        written < blocks.len(),
        "the slow subscriber overflowed its 8-block queue"
    );
    let written_events: usize = blocks[..written].iter().map(|b| b.transactions.len()).sum();
    // Meanwhile the normal subscriber kept up: it had received nearly everything written.
    assert!(
        normal_had_at_overflow + 10 * 40 >= written_events,
        "normal subscriber had {normal_had_at_overflow} of {written_events} events when the slow one was cut off"
    );

    // The slow subscriber now reads: whole blocks up to last_height, then the close frame.
    let (received, frame) = read_until_close(&mut slow, Duration::from_secs(30)).await;
    let frame = frame.expect("a close frame");
    assert_eq!(u16::from(frame.code), 4000);
    let reason: Value = serde_json::from_str(frame.reason.as_str()).expect("JSON reason");
    assert_eq!(reason["reason"], "too slow");
    let last_height = reason["last_height"].as_u64().expect("last_height");
    assert!(
        last_height >= 1 && (last_height as usize) < written,
        "last_height {last_height} of {written}"
    );
    assert_eq!(
        received,
        events_after(&expected, 0)[..received.len()].to_vec(),
        "a prefix, in order"
    );
    assert_eq!(
        received.last().and_then(|e| e["height"].as_u64()),
        Some(last_height),
        "ends with whole block last_height"
    );
    assert_eq!(
        received,
        expected
            .iter()
            .filter(|e| e["height"].as_u64() <= Some(last_height))
            .cloned()
            .collect::<Vec<_>>()
    );

    // Resuming from last_height yields the rest without a gap.
    let mut resumed = connect(&format!("{url}?from_height={last_height}")).await;
    let rest = take_json(
        &mut resumed,
        written_events - received.len(),
        Duration::from_secs(30),
    )
    .await;
    let mut all = received;
    all.extend(rest);
    assert_eq!(all, expected[..written_events].to_vec());

    reader.abort();
    let normal = normal_events.lock().expect("lock").clone();
    assert_eq!(
        normal,
        expected[..normal.len()].to_vec(),
        "the normal subscriber got everything in order"
    );
    assert!(normal.len() >= written_events - 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_no_longer_stored_gets_4001() {
    let tarantool = TarantoolProcess::start().await.expect("tarantool");
    // The chain starts at 100: heights below are gone (pruned).
    let writer = PlanetmintWriter::connect(&tarantool.address())
        .await
        .expect("writer");
    for block in chain(41, 100, 5, 1) {
        writer.write_block(&block).await.expect("write");
    }
    let node = planetmint_streams::start(test_config(&tarantool.address()))
        .await
        .expect("node");
    let url = format!(
        "ws://{}/api/v1/streams/valid_transactions",
        node.streams_addr
    );
    let mut ws = connect(&format!("{url}?from_height=5")).await;
    let (_, frame) = read_until_close(&mut ws, Duration::from_secs(10)).await;
    let frame = frame.expect("close frame");
    assert_eq!(u16::from(frame.code), 4001);
    let reason: Value = serde_json::from_str(frame.reason.as_str()).expect("JSON");
    assert_eq!(reason["lowest_height"], 100);
    assert_eq!(reason["from_height"], 5);
    // Right below the lowest stored block is fine: nothing in between is missing.
    let mut ws = connect(&format!("{url}?from_height=99")).await;
    let events = take_json(&mut ws, 5, Duration::from_secs(10)).await;
    assert_eq!(
        events.first().map(|e| e["height"].clone()),
        Some(100.into())
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_from_height_is_refused_with_400() {
    let harness = Harness::start().await;
    let streams = harness.node().streams_addr.to_string();
    for query in [
        "from_height=-1",
        "from_height=abc",
        "from_height=",
        "from_height=1.5",
        "from_height=18446744073709551616",
        "from_height=1e3",
        "from_height=%F0%9F%92%A5",
        "from_height=1&from_height=2",
        "from_height=0x10",
        "from_height=+5",
    ] {
        let request = format!(
            "GET /api/v1/streams/valid_transactions?{query} HTTP/1.1\r\nHost: {streams}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n"
        );
        let (status, body) = http_request(&streams, &request).await;
        assert_eq!(status, 400, "{query}: {body}");
        let body: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(body["parameter"], "from_height", "{query}");
    }
    // Huge but valid: waits for the future without error.
    let mut ws = connect(&format!(
        "ws://{streams}/api/v1/streams/valid_transactions?from_height=18446744073709551615"
    ))
    .await;
    assert_silent(&mut ws, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_resume_across_a_killed_and_restarted_node() {
    let tarantool = TarantoolProcess::start().await.expect("tarantool");
    let node_process = NodeProcess::new(&tarantool.address());
    let mut node = node_process.spawn();
    node_process.wait_ready().await;

    let blocks = chain(51, 1, 120, 3);
    let expected = expected_events(&blocks);
    let (writer, mut progress) =
        spawn_writer(tarantool.address(), blocks, Duration::from_millis(20));
    let url = node_process.transactions_url();
    let client = tokio::spawn(async move {
        let mut client = ExactlyOnceClient::new(&url, Some(0));
        client
            .run_until(expected.len(), Duration::from_secs(90), || None)
            .await;
        (
            client.events == expected,
            client.events.len(),
            expected.len(),
            client.reconnects,
        )
    });
    for kill_at in [30u64, 80] {
        progress
            .wait_for(|h| *h >= kill_at)
            .await
            .expect("progress");
        let _ = node.start_kill(); // SIGKILL: no close frames, no goodbye
        let _ = node.wait().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        node = node_process.spawn();
        node_process.wait_ready().await;
    }
    writer.await.expect("writer");
    let (exact, got, want, reconnects) = client.await.expect("client");
    assert!(
        reconnects >= 2,
        "the client saw the node go away ({reconnects} reconnects)"
    );
    assert!(exact, "got {got} events, expected exactly {want} in order");
    let _ = node.start_kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_stay_connected_through_a_tarantool_outage_and_are_pinged() {
    let mut harness =
        Harness::start_with(|c| c.streams.ping_interval = Duration::from_millis(200)).await;
    let url = format!("{}/api/v1/streams/valid_blocks", harness.streams_base());
    let mut ws = connect(&url).await;
    harness.tarantool.kill().await;
    // Down for a while: pings keep coming, the connection stays.
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(1200);
    while let Ok(message) = tokio::time::timeout_at(until, ws.next()).await {
        match message {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pings >= 3, "{pings} pings during the outage");
    harness.tarantool.restart().await.expect("restart");
    let blocks = chain(61, 1, 3, 1);
    let mut writer = PlanetmintWriter::connect(&harness.tarantool.address())
        .await
        .expect("writer");
    for block in &blocks {
        writer
            .write_block_retrying(&harness.tarantool.address(), block, Duration::from_secs(20))
            .await
            .expect("write");
    }
    let got = take_json(&mut ws, 3, Duration::from_secs(20)).await;
    let heights: Vec<u64> = got
        .iter()
        .map(|b| b["height"].as_u64().expect("height"))
        .collect();
    assert_eq!(heights, vec![1, 2, 3]);
}
