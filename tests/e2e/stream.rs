//! The node and real WebSocket clients that find the stream the way Planetmint clients do
//! (from `GET /api/v1/`), on the blocks Planetmint 2.5.3 wrote; keep-alive, bad requests and
//! shutdown.

use std::time::{Duration, Instant};

use planetmint_streams_devchain::fixtures::Planetmint253;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_discovers_the_stream_gets_every_fixture_transaction_in_order() {
    let harness = Harness::start().await;
    let api = harness.node().api_addr.to_string();
    let fixtures = Planetmint253::load().expect("fixtures");
    let mut writer = harness.writer().await;

    // Discovery, as Planetmint clients do it.
    let (status, v1) = get_json(&api, "/api/v1/").await;
    assert_eq!(status, 200);
    let streams = v1["streams"].as_str().expect("streams URL").to_owned();
    let streamed_blocks = v1["streamedblocks"]
        .as_str()
        .expect("streamedblocks URL")
        .to_owned();
    assert_eq!(
        streams,
        format!(
            "{}/api/v1/streams/valid_transactions",
            harness.streams_base()
        )
    );
    assert_eq!(v1["transactions"], "/transactions/");
    let (status, root) = get_json(&api, "/").await;
    assert_eq!(status, 200);
    assert_eq!(root["api"]["v1"]["streams"], streams.as_str());
    assert_eq!(root["api"]["v1"]["transactions"], "/api/v1/transactions/");
    assert_eq!(root["software"], "planetmint-streams");

    let mut transactions = UrlStream::connect(&streams).await;
    let mut blocks = UrlStream::connect(&streamed_blocks).await;
    // Planetmint's server sends only blocks committed after the client connected: the node is
    // attached once its follower has started, which `wait_ready` saw.
    writer.write_fixtures(&fixtures).await;
    let received = transactions.take(36, Duration::from_secs(10)).await;
    let expected: Vec<Value> = (1..=8).flat_map(|h| fixtures.expected_events(h)).collect();
    assert_eq!(
        received, expected,
        "every transaction, in block order, with Planetmint's fields"
    );
    let received_blocks = blocks.take(8, Duration::from_secs(10)).await;
    assert_eq!(
        received_blocks, fixtures.expected_blocks,
        "every block including empty ones"
    );
    transactions.assert_silent(Duration::from_millis(300)).await;
    transactions.close().await;
    blocks.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_block_arrives_as_one_write() {
    use tokio::io::AsyncReadExt;
    let harness = Harness::start().await;
    let fixtures = Planetmint253::load().expect("fixtures");
    let mut writer = harness.writer().await;
    let addr = harness.node().streams_addr.to_string();
    let mut socket = raw_upgrade(&addr, "/api/v1/streams/valid_transactions").await;
    let mut buf = vec![0u8; 65536];
    for height in [1u64, 2, 3] {
        writer.write_fixture(&fixtures, height).await;
        let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf))
            .await
            .expect("data in time")
            .expect("read");
        // Parse the frames in this one read: all six transactions of the block, nothing else.
        let (frames, parsed) = server_frames(&buf[..n]);
        assert_eq!(parsed, n, "whole frames only");
        let mut heights = Vec::new();
        for frame in frames {
            assert_eq!(frame.first, 0x81, "a final text frame");
            let event: Value = serde_json::from_slice(&frame.payload).expect("JSON");
            heights.push(event["height"].as_u64().expect("height"));
        }
        assert_eq!(
            heights,
            vec![height; 6],
            "one read carries exactly block {height}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_pings_and_pongs() {
    let harness = Harness::start_with(|c| {
        c.streams.ping_interval = Duration::from_millis(300);
        c.streams.pong_timeout = Duration::from_millis(600);
    })
    .await;
    let url = format!(
        "{}/api/v1/streams/valid_transactions",
        harness.streams_base()
    );
    let mut ws = UrlStream::connect(&url).await;
    // The server pings at the configured interval (300 ms; the default is many seconds), with
    // room for a busy machine's scheduling.
    let ping = ws
        .next_frame(Duration::from_secs(2))
        .await
        .expect("ping in time");
    assert!(matches!(ping, Some(Ok(Message::Ping(_)))), "got {ping:?}");
    // A client ping gets a pong with the same payload.
    ws.ping(b"are you there").await;
    let pong = loop {
        match ws
            .next_frame(Duration::from_secs(2))
            .await
            .expect("pong in time")
        {
            Some(Ok(Message::Pong(payload))) => break payload,
            Some(Ok(Message::Ping(_))) => continue,
            other => panic!("expected a pong, got {other:?}"),
        }
    };
    assert_eq!(&pong[..], b"are you there");
    // tungstenite answers the server's pings as it reads: the connection stays open.
    ws.assert_silent(Duration::from_millis(1500)).await;
    ws.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_answers_pings_is_closed() {
    use tokio::io::AsyncReadExt;
    let harness = Harness::start_with(|c| {
        c.streams.ping_interval = Duration::from_millis(200);
        c.streams.pong_timeout = Duration::from_millis(400);
    })
    .await;
    let addr = harness.node().streams_addr.to_string();
    let mut socket = raw_upgrade(&addr, "/api/v1/streams/valid_blocks").await;
    // Read everything, answer nothing, until the server closes.
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let started = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf))
            .await
            .expect("closed in time")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
    let elapsed = started.elapsed();
    // After the 101 response (read by raw_upgrade): pings (0x89), then a close frame (0x88)
    // with code 4000.
    let (frames, _) = server_frames(&received);
    assert_eq!(frames.first().map(|f| f.first), Some(0x89), "pinged first");
    let (code, reason) = frames
        .iter()
        .find_map(ServerFrame::close)
        .expect("a close frame");
    assert_eq!(code, 4000);
    let reason: Value = serde_json::from_str(&reason).expect("JSON reason");
    assert_eq!(reason["reason"], "no pong");
    assert!(
        elapsed >= Duration::from_millis(550) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors() {
    let harness = Harness::start().await;
    let streams = harness.node().streams_addr.to_string();
    let api = harness.node().api_addr.to_string();

    let (status, body) = get_json(&streams, "/api/v1/streams/valid_transactions").await;
    assert_eq!(status, 400, "plain GET on a stream path");
    assert!(
        body["error"].as_str().unwrap_or("").contains("WebSocket"),
        "{body}"
    );

    let (status, body) = get_json(
        &streams,
        "/api/v1/streams/valid_transactions?from_height=-5",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["parameter"], "from_height");

    // Unknown parameters are ignored, as Planetmint's routes ignore the query string: the
    // upgrade succeeds; a known parameter with a bad value is still refused next to them.
    let ws = UrlStream::connect(&format!(
        "{}/api/v1/streams/valid_blocks?colour=blue&_=1712345678",
        harness.streams_base()
    ))
    .await;
    ws.close().await;
    let (status, body) = get_json(
        &streams,
        "/api/v1/streams/valid_blocks?colour=blue&batch=tx",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["parameter"], "batch");

    let (status, body) = get_json(&streams, "/api/v1/streams/nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["path"], "/api/v1/streams/nope");

    let (status, body) = get_json(&api, "/no/such/thing").await;
    assert_eq!(status, 404);
    assert!(body["error"].is_string());

    let (status, _) = http_request(
        &streams,
        &format!("POST /api/v1/streams/valid_blocks HTTP/1.1\r\nHost: {streams}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 405);

    // The node is unharmed.
    let url = format!("{}/api/v1/streams/valid_blocks", harness.streams_base());
    let ws = UrlStream::connect(&url).await;
    ws.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_subscribers_with_1001_and_their_last_height() {
    let mut harness = Harness::start().await;
    let fixtures = Planetmint253::load().expect("fixtures");
    let mut writer = harness.writer().await;
    let url = format!(
        "{}/api/v1/streams/valid_transactions",
        harness.streams_base()
    );
    let mut ws = UrlStream::connect(&url).await;
    writer.write_fixture(&fixtures, 1).await;
    let first = ws.take(6, Duration::from_secs(5)).await;
    assert_eq!(first.last().map(|e| e["height"].clone()), Some(1.into()));
    let node = harness.node.take().expect("node");
    let stopping = tokio::spawn(node.shutdown());
    let (_, frame) = ws.until_close(Duration::from_secs(5)).await;
    let frame = frame.expect("a close frame");
    assert_eq!(frame.code, 1001);
    assert_eq!(frame.reason_json()["last_height"], 1);
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("stops in time")
        .expect("join");
}
