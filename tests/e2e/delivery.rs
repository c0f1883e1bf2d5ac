//! The delivery guarantee end to end: every event exactly once and in order across resumes
//! (`from_height`, from the source's history and from the memory ring) and slow subscribers.
//! Outages of Tarantool and restarts of the node's process: `tarantool::delivery`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

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
    let (writer, mut progress) = spawn_writer(harness.store(), blocks, Duration::from_millis(4));
    let url = format!(
        "{}/api/v1/streams/valid_transactions",
        harness.streams_base()
    );

    let mut clients = Vec::new();
    // Connect while blocks are being committed, asking for history from the source (far
    // behind the 16-block ring), from the ring, from now, and from the future.
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
            let mut ws = UrlStream::connect(&url).await;
            let got = ws.take(want.len(), Duration::from_secs(60)).await;
            ws.assert_silent(Duration::from_millis(200)).await;
            (from, got == want, got.len(), want.len())
        }));
    }
    // And one blocks-stream client resuming from far back.
    let blocks_url = format!(
        "{}/api/v1/streams/valid_blocks?from_height=5",
        harness.streams_base()
    );
    let mut blocks_ws = UrlStream::connect(&blocks_url).await;
    writer.await.expect("writer");
    for client in clients {
        let (from, exact, got, want) = client.await.expect("client");
        assert!(
            exact,
            "from_height={from}: got {got} events, expected exactly {want} in order"
        );
    }
    let heights: Vec<u64> = blocks_ws
        .take((last - 5) as usize, Duration::from_secs(30))
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
        "history came from the source"
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
    let mut slow = UrlStream::connect(&url).await;
    let mut normal = UrlStream::connect(&url).await;
    let blocks = chain(31, 1, 1500, 40);
    let expected = expected_events(&blocks);

    // The normal subscriber reads everything as it comes.
    let normal_events = Arc::new(Mutex::new(Vec::new()));
    let (progress, mut normal_progress) = tokio::sync::watch::channel(0u64);
    let reader = {
        let normal_events = normal_events.clone();
        let want = expected.len();
        tokio::spawn(async move {
            while normal_events.lock().expect("lock").len() < want {
                let event = normal.next_event(Duration::from_secs(60)).await;
                let height = event["height"].as_u64().unwrap_or(0);
                normal_events.lock().expect("lock").push(event);
                let _ = progress.send(height);
            }
        })
    };

    // The first block reaches both (the slow one's socket holds it, unread), then blocks are
    // committed until the slow subscriber (which reads nothing) has been found too slow, at a
    // pace the normal one can follow (the in-memory source commits far faster than a chain,
    // and than a test client checking every message on a busy machine reads): what falls
    // behind is then the subscriber that does not read, not the machine.
    harness.writer().await.write(&blocks[0]).await;
    slow.wait_unread(Duration::from_secs(30)).await;
    let written = 1 + write_until_metric(
        &harness,
        &blocks[1..],
        "planetmint_streams_disconnects_total",
        "reason=\"too_slow\"",
        1.0,
        Some(&mut normal_progress),
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
    let (received, frame) = slow.until_close(Duration::from_secs(30)).await;
    let frame = frame.expect("a close frame");
    assert_eq!(frame.code, 4000);
    let reason = frame.reason_json();
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
    let mut resumed = UrlStream::connect(&format!("{url}?from_height={last_height}")).await;
    let rest = resumed
        .take(written_events - received.len(), Duration::from_secs(30))
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
    // The chain starts at 100: heights below are gone (pruned).
    let harness = Harness::over(&chain(41, 100, 5, 1), |_| {}).await;
    let node = harness.node();
    let url = format!(
        "ws://{}/api/v1/streams/valid_transactions",
        node.streams_addr
    );
    let mut ws = UrlStream::connect(&format!("{url}?from_height=5")).await;
    let (_, frame) = ws.until_close(Duration::from_secs(10)).await;
    let frame = frame.expect("close frame");
    assert_eq!(frame.code, 4001);
    let reason = frame.reason_json();
    assert_eq!(reason["lowest_height"], 100);
    assert_eq!(reason["from_height"], 5);
    // Right below the lowest stored block is fine: nothing in between is missing.
    let mut ws = UrlStream::connect(&format!("{url}?from_height=99")).await;
    let events = ws.take(5, Duration::from_secs(10)).await;
    assert_eq!(
        events.first().map(|e| e["height"].clone()),
        Some(100.into())
    );
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
        let request = upgrade_request(
            &streams,
            &format!("/api/v1/streams/valid_transactions?{query}"),
            "Connection: close\r\n",
        );
        let (status, body) = http_request(&streams, &request).await;
        assert_eq!(status, 400, "{query}: {body}");
        let body: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(body["parameter"], "from_height", "{query}");
    }
    // Huge but valid: waits for the future without error.
    let mut ws = UrlStream::connect(&format!(
        "ws://{streams}/api/v1/streams/valid_transactions?from_height=18446744073709551615"
    ))
    .await;
    ws.assert_silent(Duration::from_millis(300)).await;
}
