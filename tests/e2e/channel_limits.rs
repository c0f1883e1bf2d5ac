//! What one client may ask of the node, on every way in: the findings of the security review
//! of 5e9dd43, each reproduced with a real client.
//! - updates waiting for a subscription to start are bounded (finding 2);
//! - every frame counts against the client's budget, empty continuation frames included
//!   (finding 4);
//! - a new credential ends the subscriptions it does not allow, so none delivers after the old
//!   one's expiry (finding 5);
//! - one address is bounded across all its connections and protocols: subscriptions and
//!   filter values.
//!
//! The node runs on the in-memory source: none of this is about Tarantool.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::*;
use futures_util::SinkExt;
use planetmint_streams_auth::{Grant, Stream};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW";

fn request(id: u64, method: &str, params: Value) -> Message {
    Message::text(
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
    )
}

/// Messages until the answer to request `id` (notifications read meanwhile are returned too).
async fn answer(ws: &mut Ws, id: u64) -> (Value, Vec<Value>) {
    let mut others = Vec::new();
    loop {
        let message = next_json(ws, Duration::from_secs(20))
            .await
            .expect("connection open");
        if message["id"] == id {
            return (message, others);
        }
        others.push(message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_waiting_for_a_subscription_to_start_are_bounded() {
    // One block in memory: a resume from 0 needs the source, which is down, so the
    // subscription waits (its history check) while updates arrive.
    let harness = Harness::start_with(|c| c.streams.ring_blocks = 1).await;
    for height in 1..=3 {
        harness.commit(synthetic_block(height, 1, KEY)).await;
    }
    harness.source.set_unavailable(true);
    let mut ws = websocket(
        &format!("{}/api/v1/streams", harness.streams_base()),
        &Options::default(),
    )
    .await
    .expect("connect");
    ws.send(request(
        1,
        "subscribe",
        json!({"stream": "valid_blocks", "from_height": 0, "public_key": [KEY]}),
    ))
    .await
    .expect("send");
    let waiting = 16;
    for id in 2..2 + waiting + 4 {
        // Each adds a value: none is a no-op (those are answered at once).
        let asset = format!("{id:064x}");
        ws.send(request(
            id,
            "update",
            json!({"subscription": "1", "add": {"asset_id": [asset]}}),
        ))
        .await
        .expect("send");
    }
    // Beyond the bound, refused at once (nothing else is answered meanwhile).
    for id in 2 + waiting..2 + waiting + 4 {
        let (refused, others) = answer(&mut ws, id).await;
        assert!(others.is_empty(), "{others:?}");
        assert_eq!(refused["error"]["code"], -32002, "{refused}");
        assert_eq!(refused["error"]["data"]["limit"], "pending_updates");
    }
    // The source is back: the subscription starts, and the waiting updates are answered.
    harness.source.set_unavailable(false);
    let (subscribed, _) = answer(&mut ws, 1).await;
    assert_eq!(subscribed["result"], "1");
    for id in 2..2 + waiting {
        let (updated, _) = answer(&mut ws, id).await;
        assert!(
            updated["result"]["applies_after_height"].is_u64(),
            "{updated}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_continuation_frames_each_count_against_the_budget() {
    const EMPTY: usize = 150;
    let harness = Harness::start_with(|c| {
        c.streams.rpc_requests_per_second = 50;
        c.streams.rpc_requests_burst = 20;
    })
    .await;
    let mut ws = websocket(
        &format!("{}/api/v1/streams", harness.streams_base()),
        &Options::default(),
    )
    .await
    .expect("connect");
    let text = json!({"jsonrpc": "2.0", "id": 7, "method": "describe", "params": {"stream": "valid_blocks"}})
        .to_string();
    let (head, tail) = text.split_at(10);
    let started = tokio::time::Instant::now();
    ws.feed(Message::Frame(Frame::message(
        head.as_bytes().to_vec(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .expect("send");
    for _ in 0..EMPTY {
        ws.feed(Message::Frame(Frame::message(
            Vec::<u8>::new(),
            OpCode::Data(Data::Continue),
            false,
        )))
        .await
        .expect("send");
    }
    ws.feed(Message::Frame(Frame::message(
        tail.as_bytes().to_vec(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .await
    .expect("send");
    ws.flush().await.expect("send");
    let (described, _) = answer(&mut ws, 7).await;
    assert_eq!(described["result"]["name"], "valid_blocks", "{described}");
    // 152 frames at 50 a second after a burst of 20: at least 2.6 s, whatever they carry.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "the fragments were read at the budget's rate, not all at once: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_credential_ends_the_subscriptions_it_does_not_allow() {
    let harness = Harness::start_with(signed_with_key).await;
    let authority = harness.node().gatekeeper.token_authority().expect("keys");
    let whole_chain = authority
        .issue(
            &Grant::new([Stream::ValidTransactions]),
            Some(Duration::from_secs(3)),
        )
        .expect("token")
        .token;
    let one_key = authority
        .issue(
            &Grant::new([Stream::ValidTransactions]).public_key(KEY),
            Some(Duration::from_secs(60)),
        )
        .expect("token")
        .token;
    let mut ws = websocket(
        &format!("{}/api/v1/streams", harness.streams_base()),
        &Options::default(),
    )
    .await
    .expect("connect");
    ws.send(request(1, "authenticate", json!({"token": whole_chain})))
        .await
        .expect("send");
    assert!(answer(&mut ws, 1).await.0["result"].is_object());
    ws.send(request(
        2,
        "subscribe",
        json!({"stream": "valid_transactions"}),
    ))
    .await
    .expect("send");
    assert_eq!(answer(&mut ws, 2).await.0["result"], "1");
    harness
        .commit(synthetic_block(
            1,
            2,
            "zeLcy7Xzntvupb1PChe1B3KjxRKcCdM1zJEKyKpc653",
        ))
        .await;
    // The token pinned to one key replaces the unpinned one: the whole-chain subscription
    // ends, told with its last height.
    ws.send(request(3, "authenticate", json!({"token": one_key})))
        .await
        .expect("send");
    let (authenticated, before) = answer(&mut ws, 3).await;
    assert!(authenticated["result"].is_object(), "{authenticated}");
    let ended = before
        .iter()
        .find(|m| m["method"] == "subscription_error")
        .unwrap_or_else(|| panic!("the unpinned subscription ended: {before:?}"));
    assert_eq!(ended["params"]["subscription"], "1");
    assert_eq!(ended["params"]["last_height"], 1);
    assert_eq!(ended["params"]["error"]["code"], -32001);
    let delivered_before: Vec<&Value> = before
        .iter()
        .filter(|m| m["method"] == "subscription")
        .collect();
    assert_eq!(delivered_before.len(), 2, "block 1's two events");
    // A refused token changes nothing.
    ws.send(request(
        4,
        "authenticate",
        json!({"token": "v1.k1.bogus.bogus"}),
    ))
    .await
    .expect("send");
    assert_eq!(answer(&mut ws, 4).await.0["error"]["code"], -32001);
    ws.send(request(
        5,
        "subscribe",
        json!({"stream": "valid_transactions", "public_key": [KEY]}),
    ))
    .await
    .expect("send");
    assert_eq!(answer(&mut ws, 5).await.0["result"], "2");
    // Past the first token's expiry the connection is still open (the second token's), and
    // only the allowed subscription delivers.
    tokio::time::sleep(Duration::from_secs(4)).await;
    harness.commit(synthetic_block(2, 1, KEY)).await;
    harness
        .commit(synthetic_block(
            3,
            1,
            "zeLcy7Xzntvupb1PChe1B3KjxRKcCdM1zJEKyKpc653",
        ))
        .await;
    harness.commit(synthetic_block(4, 1, KEY)).await;
    let mut heights = Vec::new();
    while heights.last() != Some(&4) {
        let message = next_json(&mut ws, Duration::from_secs(20))
            .await
            .expect("connection open");
        assert_eq!(message["params"]["subscription"], "2", "{message}");
        heights.push(
            message["params"]["result"]["height"]
                .as_u64()
                .expect("height"),
        );
    }
    assert_eq!(heights, [2, 4]);
}

/// A WebSocket connection from `from` (another loopback address is another client).
async fn connect_from(from: &str, url: &str) -> Ws {
    let addr: SocketAddr = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("a ws://ip:port URL");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().expect("address"))
        .expect("bind");
    let stream = socket.connect(addr).await.expect("connect");
    let (ws, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .expect("handshake");
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_is_bounded_across_its_connections_and_protocols() {
    let harness = Harness::start_with(|c| {
        c.streams.max_subscriptions_per_ip = 5;
        c.streams.max_filter_values_per_ip = 8;
    })
    .await;
    let channel = format!("{}/api/v1/streams", harness.streams_base());
    let mut first = websocket(&channel, &Options::default())
        .await
        .expect("connect");
    let mut second = websocket(&channel, &Options::default())
        .await
        .expect("connect");
    for id in 1..=3 {
        first
            .send(request(id, "subscribe", json!({"stream": "valid_blocks"})))
            .await
            .expect("send");
        assert!(answer(&mut first, id).await.0["result"].is_string());
    }
    for id in 1..=2 {
        second
            .send(request(id, "subscribe", json!({"stream": "valid_blocks"})))
            .await
            .expect("send");
        assert!(answer(&mut second, id).await.0["result"].is_string());
    }
    // The address has its five: a sixth on either connection, or a URL stream, is refused.
    second
        .send(request(3, "subscribe", json!({"stream": "valid_blocks"})))
        .await
        .expect("send");
    let (refused, _) = answer(&mut second, 3).await;
    assert_eq!(refused["error"]["code"], -32002);
    assert_eq!(
        refused["error"]["data"]["limit"],
        "subscriptions_per_address"
    );
    let addr = harness.node().streams_addr.to_string();
    let (status, body) = http_request(
        &addr,
        &format!("GET /api/v1/streams/valid_blocks HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("\"limit\":\"subscriptions\""), "{body}");
    // Another address is another client.
    let mut elsewhere = connect_from("127.0.0.2", &channel).await;
    elsewhere
        .send(request(1, "subscribe", json!({"stream": "valid_blocks"})))
        .await
        .expect("send");
    assert!(answer(&mut elsewhere, 1).await.0["result"].is_string());
    // One subscription closed makes room again; filter values are counted the same way.
    first
        .send(request(4, "unsubscribe", json!({"subscription": "1"})))
        .await
        .expect("send");
    assert_eq!(answer(&mut first, 4).await.0["result"], true);
    let keys: Vec<String> = planetmint_streams_devchain::generate::ChainGenerator::new(9, 1, 9)
        .wallets()
        .to_vec();
    second
        .send(request(
            5,
            "subscribe",
            json!({"stream": "valid_blocks", "public_key": keys}),
        ))
        .await
        .expect("send");
    let (refused, _) = answer(&mut second, 5).await;
    assert_eq!(
        refused["error"]["data"]["limit"], "filter_values_per_address",
        "{refused}"
    );
    second
        .send(request(
            6,
            "subscribe",
            json!({"stream": "valid_blocks", "public_key": keys[..8]}),
        ))
        .await
        .expect("send");
    assert!(answer(&mut second, 6).await.0["result"].is_string());
}
