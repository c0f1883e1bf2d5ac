//! The streams over plain HTTP, as their users meet them: `curl` reading Server-Sent Events
//! and NDJSON gets every event, in order, equal to the WebSocket stream, and the close event
//! or line when the node stops; an `EventSource` in headless Chromium resumes across a node
//! restart by its own reconnect (`Last-Event-ID`) with nothing lost or repeated; an NDJSON
//! reader resumes by `from_height`; a reader that stops is ended as too slow without holding
//! back another; credentials as `Authorization: Bearer`, and the stream's end at the token's
//! expiry. The node runs on the in-memory source: none of this is about Tarantool.

use std::process::Stdio;
use std::time::Duration;

use crate::support::browser::{chromium_binary, Browser};
use crate::support::*;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const KEY: &str = "4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW";

/// `curl -N` reading a plain HTTP stream.
struct Curl {
    child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Curl {
    fn start(url: &str, accept: &str, headers: &[&str]) -> Self {
        let mut command = Command::new("curl");
        command.args(["-sS", "-N", "-H", &format!("Accept: {accept}")]);
        for header in headers {
            command.args(["-H", header]);
        }
        let mut child = command
            .arg(url)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("curl runs (Debian's curl package)");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self { child, lines }
    }

    /// The next line, or `None` when the response ended.
    async fn line(&mut self) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
            .await
            .expect("a line in time")
            .expect("read")
    }

    /// The next Server-Sent Event as (event, id, data), skipping comments; `None` at the end.
    async fn event(&mut self) -> Option<(String, Option<String>, Value)> {
        let (mut event, mut id, mut data) = (String::new(), None, None);
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                if let Some(data) = data.take() {
                    return Some((std::mem::take(&mut event), id.take(), data));
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(": ").unwrap_or((&line, ""));
            match field {
                "event" => event = value.to_owned(),
                "id" => id = Some(value.to_owned()),
                "data" => data = Some(serde_json::from_str(value).expect("data is JSON")),
                other => panic!("unexpected SSE field {other}: {line}"),
            }
        }
    }
}

/// `count` messages of a WebSocket stream.
async fn websocket_messages(url: &str, count: usize) -> Vec<Value> {
    let mut ws = UrlStream::connect(url).await;
    ws.take(count, Duration::from_secs(20)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reads_server_sent_events_and_ndjson_equal_to_the_websocket_stream() {
    let mut harness = Harness::start_with(|_| {}).await;
    for height in 1..=3 {
        harness.commit(synthetic_block(height, 3, KEY)).await;
    }
    let http = format!("http://{}/api/v1/streams", harness.node().streams_addr);
    let mut sse = Curl::start(
        &format!("{http}/valid_transactions?from_height=0"),
        "text/event-stream",
        &[],
    );
    let mut ndjson = Curl::start(
        &format!("{http}/valid_blocks?from_height=0"),
        "application/x-ndjson",
        &[],
    );
    for height in 4..=6 {
        harness.commit(synthetic_block(height, 3, KEY)).await;
    }
    let ws = format!("{}/api/v1/streams", harness.streams_base());
    let transactions =
        websocket_messages(&format!("{ws}/valid_transactions?from_height=0"), 18).await;
    let blocks = websocket_messages(&format!("{ws}/valid_blocks?from_height=0"), 6).await;
    for (i, expected) in transactions.iter().enumerate() {
        let (event, id, data) = sse.event().await.expect("an event");
        assert_eq!(event, "valid_transactions");
        assert_eq!(data, *expected);
        // The last event of each block (3 per block) names its height.
        let last_of_block = i % 3 == 2;
        assert_eq!(
            id,
            last_of_block.then(|| expected["height"].to_string()),
            "event {i}"
        );
    }
    for expected in &blocks {
        let line = ndjson.line().await.expect("a line");
        assert_eq!(
            serde_json::from_str::<Value>(&line).expect("JSON"),
            *expected
        );
    }
    // The node stops: the last event (and line) says why and where to resume, and the
    // response ends.
    harness.stop().await;
    let (event, id, data) = sse.event().await.expect("the close event");
    assert_eq!(event, "close");
    assert_eq!(id.as_deref(), Some("6"));
    assert_eq!(
        data,
        json!({"reason": "server shutting down", "last_height": 6})
    );
    assert!(sse.event().await.is_none(), "the response ends");
    let line = ndjson.line().await.expect("the close line");
    assert_eq!(
        serde_json::from_str::<Value>(&line).expect("JSON"),
        json!({"close": {"reason": "server shutting down", "last_height": 6}})
    );
    assert!(ndjson.line().await.is_none());
    for mut curl in [sse.child, ndjson.child] {
        let status = curl.wait().await.expect("curl exits");
        assert!(status.success(), "curl saw a whole response: {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_source_in_chromium_resumes_across_a_node_restart_with_nothing_lost_or_repeated() {
    let mut harness = Harness::start_with(|_| {}).await;
    for height in 1..=3 {
        harness.commit(synthetic_block(height, 3, KEY)).await;
    }
    let url = format!(
        "http://{}/api/v1/streams/valid_transactions?from_height=0",
        harness.node().streams_addr
    );
    let mut browser = Browser::launch(&chromium_binary()).await;
    // A page of another origin (about:blank) reads the stream with the browser's own
    // EventSource, which reconnects by itself.
    browser
        .eval(&format!(
            "window.got = []; window.closes = []; window.opened = 0; \
             window.es = new EventSource({url:?}); \
             es.onopen = () => {{ window.opened += 1; }}; \
             es.addEventListener('valid_transactions', e => got.push({{data: JSON.parse(e.data), lastEventId: e.lastEventId}})); \
             es.addEventListener('close', e => closes.push({{data: JSON.parse(e.data), lastEventId: e.lastEventId}})); true"
        ))
        .await;
    browser
        .wait_for("9 events", "got.length >= 9", Duration::from_secs(20))
        .await;
    // The node restarts; blocks are committed while it is down.
    harness.stop().await;
    for height in 4..=6 {
        harness.source.commit(synthetic_block(height, 3, KEY));
    }
    harness.start_again().await;
    harness.commit(synthetic_block(7, 3, KEY)).await;
    browser
        .wait_for("21 events", "got.length >= 21", Duration::from_secs(30))
        .await;
    let got = browser.eval("got").await;
    let closes = browser.eval("closes").await;
    assert_eq!(
        closes,
        json!([{"data": {"reason": "server shutting down", "last_height": 3}, "lastEventId": "3"}])
    );
    assert!(
        browser.eval("opened").await.as_u64() >= Some(2),
        "the browser reconnected by itself"
    );
    let expected = websocket_messages(
        &format!(
            "{}/api/v1/streams/valid_transactions?from_height=0",
            harness.streams_base()
        ),
        21,
    )
    .await;
    let data: Vec<Value> = got
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["data"].clone())
        .collect();
    assert_eq!(
        data, expected,
        "every event once, in order, across the restart"
    );
    assert!(
        browser.script_errors.is_empty(),
        "{:?}",
        browser.script_errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ndjson_reader_resumes_by_from_height_across_a_node_restart() {
    let mut harness = Harness::start_with(|_| {}).await;
    let http = |harness: &Harness, after: u64| {
        format!(
            "http://{}/api/v1/streams/valid_transactions?batch=block&from_height={after}",
            harness.node().streams_addr
        )
    };
    let mut reader = Curl::start(&http(&harness, 0), "application/x-ndjson", &[]);
    for height in 1..=4 {
        harness.commit(synthetic_block(height, 2, KEY)).await;
    }
    let mut got = Vec::new();
    while got.len() < 4 {
        let line = reader.line().await.expect("a block");
        got.push(serde_json::from_str::<Value>(&line).expect("JSON"));
    }
    harness.stop().await;
    let close: Value = serde_json::from_str(&reader.line().await.expect("close")).expect("JSON");
    let resume = close["close"]["last_height"].as_u64().expect("last_height");
    assert_eq!(resume, 4);
    for height in 5..=6 {
        harness.source.commit(synthetic_block(height, 2, KEY));
    }
    harness.start_again().await;
    let mut reader = Curl::start(&http(&harness, resume), "application/x-ndjson", &[]);
    harness.commit(synthetic_block(7, 2, KEY)).await;
    while got.len() < 7 {
        let line = reader.line().await.expect("a block");
        got.push(serde_json::from_str::<Value>(&line).expect("JSON"));
    }
    let heights: Vec<u64> = got.iter().filter_map(|b| b["height"].as_u64()).collect();
    assert_eq!(heights, [1, 2, 3, 4, 5, 6, 7], "nothing lost or repeated");
    let expected = websocket_messages(
        &format!(
            "{}/api/v1/streams/valid_transactions?batch=block&from_height=0",
            harness.streams_base()
        ),
        7,
    )
    .await;
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_is_ended_as_too_slow_without_holding_back_another() {
    let harness = Harness::start_with(|c| c.streams.queue_max_blocks = 4).await;
    let addr = harness.node().streams_addr;
    // A reader that sends its request and never reads (a small receive buffer, so the
    // kernel holds little for it).
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut stalled = socket.connect(addr).await.expect("connect");
    stalled
        .write_all(
            format!("GET /api/v1/streams/valid_transactions HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n").as_bytes(),
        )
        .await
        .expect("request");
    let mut reader = Curl::start(
        &format!("http://{addr}/api/v1/streams/valid_blocks"),
        "application/x-ndjson",
        &[],
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while harness.node().hub.subscriber_count() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "both subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Big blocks: more than the kernel and the queue hold for the stalled reader.
    for height in 1..=120 {
        harness.commit(synthetic_block(height, 400, KEY)).await;
        let line = reader.line().await.expect("the other reader keeps up");
        let block: Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(block["height"], height);
    }
    let metrics = metrics_until(
        &harness.node().api_addr.to_string(),
        Duration::from_secs(20),
        |m| {
            metric(
                m,
                "planetmint_streams_disconnects_total",
                "reason=\"too_slow\"",
            ) >= 1.0
        },
    )
    .await;
    assert_eq!(
        metric(
            &metrics,
            "planetmint_streams_disconnects_total",
            "reason=\"too_slow\""
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            "planetmint_streams_subscribers",
            "stream=\"valid_transactions\""
        ),
        0.0,
        "the stalled reader is gone"
    );
    // What it had been sent ends with the close event saying where to resume.
    let mut buffer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut buffer)).await;
    let text = String::from_utf8_lossy(&buffer);
    assert!(
        text.contains("event: close") && text.contains("too slow"),
        "the stalled reader was told it was too slow"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_streams_take_a_bearer_token_and_end_when_it_expires() {
    let harness = Harness::start_with(signed_with_key).await;
    let addr = harness.node().streams_addr.to_string();
    let (status, body) = http_request(
        &addr,
        &format!("GET /api/v1/streams/valid_blocks HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let token = issue_token(
        harness.node(),
        [planetmint_streams_auth::Stream::ValidBlocks],
        Some(Duration::from_secs(3)),
    );
    let mut sse = Curl::start(
        &format!("http://{addr}/api/v1/streams/valid_blocks"),
        "text/event-stream",
        &[&format!("Authorization: Bearer {token}")],
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while harness.node().hub.subscriber_count() < 1 {
        assert!(tokio::time::Instant::now() < deadline, "curl subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    harness.commit(synthetic_block(1, 1, KEY)).await;
    let (event, id, _) = sse.event().await.expect("an event");
    assert_eq!((event.as_str(), id.as_deref()), ("valid_blocks", Some("1")));
    let (event, _, data) = sse.event().await.expect("the close event at expiry");
    assert_eq!(event, "close");
    assert_eq!(data, json!({"reason": "token expired", "last_height": 1}));
    assert!(sse.event().await.is_none());
}
