//! The delivery guarantee where Tarantool or the node's process is what fails: a node binary
//! killed (-9) and started again while clients follow it, and subscribers kept through a
//! Tarantool outage.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_resume_across_a_killed_and_restarted_node() {
    let tarantool = planetmint_streams_devchain::process::TarantoolProcess::start()
        .await
        .expect("tarantool");
    let node_process = NodeProcess::new(&tarantool.address());
    let mut node = node_process.spawn();
    node_process.wait_ready().await;

    let blocks = chain(51, 1, 120, 3);
    let expected = expected_events(&blocks);
    let (writer, mut progress) = spawn_writer(
        Store::Tarantool(tarantool.address()),
        blocks,
        Duration::from_millis(20),
    );
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
        TarantoolHarness::start_with(|c| c.streams.ping_interval = Duration::from_millis(200))
            .await;
    let url = format!("{}/api/v1/streams/valid_blocks", harness.streams_base());
    let mut ws = UrlStream::connect(&url).await;
    harness.tarantool.kill().await;
    // Down for a while: pings keep coming, the connection stays.
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(1200);
    while let Ok(message) = tokio::time::timeout_at(until, ws.ws.next()).await {
        match message {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pings >= 3, "{pings} pings during the outage");
    harness.tarantool.restart().await.expect("restart");
    let blocks = chain(61, 1, 3, 1);
    let mut writer = harness.writer().await;
    for block in &blocks {
        writer.write(block).await;
    }
    let got = ws.take(3, Duration::from_secs(20)).await;
    let heights: Vec<u64> = got
        .iter()
        .map(|b| b["height"].as_u64().expect("height"))
        .collect();
    assert_eq!(heights, vec![1, 2, 3]);
}
