//! Shared pieces of the JetStream tier's end-to-end tests: a `[nats]` section for a test
//! nats-server, and what a JetStream stream holds, read back with the official Rust client.

use std::time::Duration;

use planetmint_streams_devchain::generate::GeneratedBlock;
use planetmint_streams_devchain::nats::NatsServer;
use planetmint_streams_jetstream::NatsConfig;
use serde_json::Value;

/// `[nats]` for a node publishing to `nats` (short retry timers).
pub fn nats_config(nats: &NatsServer) -> NatsConfig {
    NatsConfig {
        url: nats.url(),
        websocket_url: nats.websocket_url(),
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
        request_timeout: Duration::from_secs(3),
        max_bytes: 64 * 1024 * 1024,
        ..NatsConfig::default()
    }
}

/// The same as environment variables, for a node run as a process.
pub fn nats_env(nats: &NatsServer) -> Vec<(String, String)> {
    vec![
        ("PLANETMINT_STREAMS_NATS__URL".into(), nats.url()),
        (
            "PLANETMINT_STREAMS_NATS__WEBSOCKET_URL".into(),
            nats.websocket_url(),
        ),
        (
            "PLANETMINT_STREAMS_NATS__RECONNECT_MIN".into(),
            "50ms".into(),
        ),
        (
            "PLANETMINT_STREAMS_NATS__RECONNECT_MAX".into(),
            "500ms".into(),
        ),
        (
            "PLANETMINT_STREAMS_NATS__REQUEST_TIMEOUT".into(),
            "3s".into(),
        ),
        (
            "PLANETMINT_STREAMS_NATS__MAX_BYTES".into(),
            "67108864".into(),
        ),
    ]
}

/// One message a JetStream stream holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub sequence: u64,
    pub height: u64,
    pub msg_id: String,
    pub transaction_id: Option<String>,
    pub payload: Value,
    /// When JetStream stored it (its clock), in Unix nanoseconds.
    pub time_ns: i128,
}

/// A JetStream context on a new connection to `url`.
pub async fn context(url: &str) -> async_nats::jetstream::Context {
    let client = async_nats::connect(url).await.expect("connect to NATS");
    async_nats::jetstream::new(client)
}

/// `(messages, last sequence)` of `stream`, or `None` while it does not exist.
pub async fn stream_state(js: &async_nats::jetstream::Context, stream: &str) -> Option<(u64, u64)> {
    let mut stream = js.get_stream(stream).await.ok()?;
    let info = stream.info().await.ok()?;
    Some((info.state.messages, info.state.last_sequence))
}

/// Every message `stream` holds, in sequence order.
pub async fn contents(js: &async_nats::jetstream::Context, stream: &str) -> Vec<Held> {
    let mut handle = js.get_stream(stream).await.expect("stream exists");
    let state = handle.info().await.expect("info").state.clone();
    let mut held = Vec::new();
    if state.messages == 0 {
        return held;
    }
    for sequence in state.first_sequence..=state.last_sequence {
        let message = handle
            .get_raw_message(sequence)
            .await
            .unwrap_or_else(|e| panic!("{stream} message {sequence}: {e}"));
        let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
        held.push(Held {
            sequence,
            height: header("Planetmint-Height")
                .and_then(|h| h.parse().ok())
                .expect("Planetmint-Height header"),
            msg_id: header("Nats-Msg-Id").expect("Nats-Msg-Id header"),
            transaction_id: header("Planetmint-Transaction-Id"),
            payload: serde_json::from_slice(&message.payload).expect("JSON payload"),
            time_ns: message.time.unix_timestamp_nanos(),
        });
    }
    held
}

/// Waits until `stream` holds at least `count` messages (panics after `within`, saying how
/// many it held), then returns them all.
pub async fn wait_for(
    js: &async_nats::jetstream::Context,
    stream: &str,
    count: u64,
    within: Duration,
) -> Vec<Held> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let state = stream_state(js, stream).await;
        if state.is_some_and(|(messages, _)| messages >= count) {
            return contents(js, stream).await;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{stream} holds {state:?} messages, expected {count}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `valid_blocks` messages of `blocks`.
pub fn expected_block_events(blocks: &[GeneratedBlock]) -> Vec<Value> {
    blocks
        .iter()
        .map(|b| {
            serde_json::json!({
                "height": b.height,
                "hash": b.app_hash,
                "transaction_ids": b.transaction_ids(),
            })
        })
        .collect()
}

/// The payloads of `held`.
pub fn payloads(held: &[Held]) -> Vec<Value> {
    held.iter().map(|h| h.payload.clone()).collect()
}

/// Checks what both streams hold against `blocks`: every event once, in chain order, with
/// its headers, and nothing else.
pub async fn assert_streams_hold(js: &async_nats::jetstream::Context, blocks: &[GeneratedBlock]) {
    let transactions = super::chain::expected_events(blocks);
    let held = wait_for(
        js,
        "valid_transactions",
        transactions.len() as u64,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(held.len(), transactions.len(), "each transaction once");
    assert_eq!(payloads(&held), transactions, "in chain order");
    for (i, message) in held.iter().enumerate() {
        assert_eq!(message.sequence, i as u64 + 1, "no gap in the sequence");
        let id = message.payload["transaction_id"].as_str().expect("id");
        assert_eq!(message.transaction_id.as_deref(), Some(id));
        assert_eq!(message.msg_id, format!("{}:{id}", message.height));
        assert_eq!(Some(message.height), message.payload["height"].as_u64());
    }
    let block_events = expected_block_events(blocks);
    let held = wait_for(
        js,
        "valid_blocks",
        block_events.len() as u64,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(payloads(&held), block_events, "each block once, in order");
    for message in &held {
        assert_eq!(message.msg_id, message.height.to_string());
        assert_eq!(message.transaction_id, None);
    }
}
