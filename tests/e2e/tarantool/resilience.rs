//! End to end under failure: Tarantool killed (-9) and restarted while blocks are being
//! committed and streamed. Nothing may be lost or repeated.

use std::time::Duration;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tarantool_killed_and_restarted_mid_stream_loses_and_repeats_nothing() {
    let mut harness = TarantoolHarness::start().await;
    let address = harness.tarantool.address();
    let api = harness.node().api_addr.to_string();
    let url = format!(
        "{}/api/v1/streams/valid_transactions",
        harness.streams_base()
    );
    let mut blocks_ws = UrlStream::connect(&format!(
        "{}/api/v1/streams/valid_blocks",
        harness.streams_base()
    ))
    .await;
    let mut ws = UrlStream::connect(&url).await;

    let blocks = chain(11, 1, 45, 3);
    let expected = expected_events(&blocks);
    let (writer, mut progress_rx) = spawn_writer(
        Store::Tarantool(address.clone()),
        blocks.clone(),
        Duration::from_millis(25),
    );

    let mut saw_not_ready = false;
    for kill_after in [12u64, 30] {
        progress_rx
            .wait_for(|h| *h >= kill_after)
            .await
            .expect("writer progresses");
        harness.tarantool.kill().await;
        // While Tarantool is down the node says it is not ready; subscribers stay connected.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            let (status, _) = http_get(&api, "/ready").await;
            if status == 503 {
                saw_not_ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        harness
            .tarantool
            .restart()
            .await
            .expect("tarantool restarts");
    }
    assert!(saw_not_ready, "/ready reported the outage");

    let received = ws.take(expected.len(), Duration::from_secs(60)).await;
    writer.await.expect("writer finished");
    assert_eq!(received.len(), expected.len());
    for (i, (got, want)) in received.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "event {i}");
    }
    ws.assert_silent(Duration::from_millis(500)).await;
    let heights: Vec<u64> = blocks_ws
        .take(blocks.len(), Duration::from_secs(10))
        .await
        .iter()
        .map(|b| b["height"].as_u64().expect("height"))
        .collect();
    assert_eq!(heights, (1..=45).collect::<Vec<_>>());
    harness.wait_ready().await;
    ws.close().await;
}
