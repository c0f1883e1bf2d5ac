//! The stream-sea protocol on the channel, as its users meet it: stream-sea's own public client
//! library (`stream-sea-client` 0.7.0 from PyPI) authenticates, subscribes and receives every
//! event exactly as the URL stream sends it, and reads the stream's schema over HTTP;
//! credentials in signed mode (a wrong secret, a configured client, a stream token, a JWT);
//! consumer groups with raw protocol clients (members joining and leaving mid-stream, no event
//! lost or sent twice); the protocol's errors. The node runs on the in-memory source: none of
//! this is about Tarantool.

use std::process::Stdio;
use std::time::Duration;

use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use planetmint_streams_auth::client::SecretHash;
use planetmint_streams_auth::{ClientConfig, JwtAlgorithm, JwtKeyConfig, SecretString};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW";
const CLIENT_SECRET: &str = "s3cret-of-the-indexer-that-is-long-enough-to-pass";
const JWT_SECRET: &str = "a-shared-hs256-secret-of-the-identity-provider!";

/// stream-sea-client 0.7.0 (tests/clients/stream_sea.py) run against the node.
struct Library {
    child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Library {
    fn start(port: u16, client_id: &str, secret: &str, stream: &str, count: usize) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/stream_sea.py");
        let mut child = Command::new(python())
            .args([
                script,
                "127.0.0.1",
                &port.to_string(),
                client_id,
                secret,
                stream,
                &count.to_string(),
            ])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python runs");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self { child, lines }
    }

    async fn line(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
            .await
            .expect("the library answers in time")
            .expect("read")
            .expect("the library ended early");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    async fn finish(mut self) {
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("the library exits")
            .expect("wait");
        assert!(status.success(), "stream-sea-client exited with {status}");
    }
}

/// Every message a URL stream sends for the blocks up to `count` messages.
async fn url_messages(ws: &mut UrlStream, count: usize) -> Vec<Value> {
    ws.take(count, Duration::from_secs(20)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_sea_client_receives_every_event_as_the_url_stream_sends_it() {
    let harness = Harness::start_with(|_| {}).await;
    let port = harness.node().streams_addr.port();
    let mut transactions = Library::start(port, "indexer", "anything", "valid_transactions", 12);
    let mut blocks = Library::start(
        port,
        "indexer",
        "anything",
        "valid_blocks?public_key=4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW",
        4,
    );
    assert_eq!(transactions.line().await, json!({"subscribed": true}));
    assert_eq!(blocks.line().await, json!({"subscribed": true}));
    let base = format!("{}/api/v1/streams", harness.streams_base());
    let mut url_tx = UrlStream::connect(&format!("{base}/valid_transactions")).await;
    let mut url_blocks = UrlStream::connect(&format!("{base}/valid_blocks?public_key={KEY}")).await;
    for height in 1..=4 {
        harness.commit(synthetic_block(height, 3, KEY)).await;
    }
    let expected_tx = url_messages(&mut url_tx, 12).await;
    let expected_blocks = url_messages(&mut url_blocks, 4).await;
    for expected in &expected_tx {
        assert_eq!(transactions.line().await["event"], *expected);
    }
    for expected in &expected_blocks {
        assert_eq!(blocks.line().await["event"], *expected);
    }
    // describe_stream gets the stream's schema: every field of the events it received.
    let schema = transactions.line().await["schema"].clone();
    assert_eq!(schema["name"], "valid_transactions");
    assert_eq!(schema["version"], "1");
    let names: Vec<&str> = schema["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    for field in expected_tx[0].as_object().expect("event").keys() {
        assert!(names.contains(&field.as_str()), "{field} is described");
    }
    assert_eq!(
        transactions.line().await,
        json!({"versions": ["1", null]}),
        "the versions vector of the stream and of a stream that does not exist"
    );
    assert_eq!(blocks.line().await["schema"]["name"], "valid_blocks");
    transactions.finish().await;
    blocks.line().await;
    blocks.finish().await;
}

/// A JWT signed with the identity provider's HS256 secret.
fn jwt(streams: &[&str], expires_in: i64) -> String {
    let now = planetmint_streams_auth::unix_now() as i64;
    let claims =
        json!({"sub": "dashboard", "iat": now, "exp": now + expires_in, "streams": streams});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()).expect("an HS256 key"),
    )
    .expect("a JWT")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_mode_refuses_a_wrong_secret_and_admits_a_client_a_token_and_a_jwt() {
    let harness = Harness::start_with(|config| {
        signed_with_key(config);
        config.auth.clients = vec![ClientConfig {
            id: "indexer".into(),
            secret_hash: Some(
                SecretHash::new(CLIENT_SECRET)
                    .expect("a strong secret")
                    .to_string(),
            ),
            streams: vec!["valid_transactions".into()],
            ..ClientConfig::default()
        }];
        config.auth.jwt.keys = vec![JwtKeyConfig {
            algorithm: Some(JwtAlgorithm::HS256),
            secret: Some(SecretString::new(JWT_SECRET)),
            ..JwtKeyConfig::default()
        }];
    })
    .await;
    let port = harness.node().streams_addr.port();

    // stream-sea's own library: a wrong secret is refused, the configured client admitted.
    let mut wrong = Library::start(port, "indexer", "not-the-secret", "valid_transactions", 1);
    assert!(wrong.line().await["refused"].is_string());
    wrong.finish().await;
    let mut client = Library::start(port, "indexer", CLIENT_SECRET, "valid_transactions", 2);
    assert_eq!(client.line().await, json!({"subscribed": true}));
    // A token the node issued, as the secret.
    let token = issue_token(
        harness.node(),
        [planetmint_streams_auth::Stream::ValidBlocks],
        None,
    );
    let mut with_token = Library::start(port, "anyone", &token, "valid_blocks", 1);
    assert_eq!(with_token.line().await, json!({"subscribed": true}));

    // A JWT from the operator's identity provider (the library sends only basic: a raw
    // client here), bounded by the streams its claim names.
    let base = harness.streams_base();
    let mut dashboard = StreamSeaClient::connect(&base).await;
    let answer = dashboard
        .authenticate(
            json!({"type": "jwt", "clientId": "dashboard", "jwt": jwt(&["valid_blocks"], 60)}),
        )
        .await;
    assert_eq!(answer["success"], true, "{answer}");
    let (_, refused) = dashboard.subscribe("valid_transactions", None).await;
    assert_eq!(refused["success"], false, "not a stream of the JWT's claim");
    assert_eq!(refused["payload"]["reason"], "stream_not_allowed");
    let (blocks_id, accepted) = dashboard.subscribe("valid_blocks", None).await;
    assert_eq!(
        accepted,
        json!({"id": blocks_id, "action": "subscription", "success": true, "streamName": "valid_blocks", "payload": blocks_id})
    );
    // An expired JWT is refused and the connection closed with 1008.
    let mut late = StreamSeaClient::connect(&base).await;
    let answer = late
        .authenticate(
            json!({"type": "jwt", "clientId": "dashboard", "jwt": jwt(&["valid_blocks"], -120)}),
        )
        .await;
    assert_eq!(answer["success"], false);
    let (_, close) = late.until_close(Duration::from_secs(10)).await;
    assert_eq!(close.expect("a close frame").code, 1008);

    harness.commit(synthetic_block(1, 2, KEY)).await;
    for _ in 0..2 {
        assert_eq!(client.line().await["event"]["height"], 1);
    }
    assert_eq!(with_token.line().await["event"]["height"], 1);
    let delivery = dashboard.next().await;
    assert_eq!(delivery["id"], blocks_id);
    assert_eq!(delivery["payload"]["height"], 1);
}

const GROUP: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

/// Transaction ids in the deliveries `member` has read (until it is told to stop).
fn ids(deliveries: &[Value]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| {
            d["payload"]["transaction_id"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

/// Reads deliveries of `member` until it has none for `quiet`.
async fn drain(member: &mut StreamSeaClient, quiet: Duration) -> Vec<Value> {
    let mut out = Vec::new();
    while let Ok(Some(Ok(message))) = tokio::time::timeout(quiet, member.ws.next()).await {
        if let Message::Text(text) = message {
            out.push(serde_json::from_str(&text).expect("JSON"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_splits_every_event_once_as_members_join_and_leave() {
    let harness = Harness::start_with(|_| {}).await;
    let base = harness.streams_base();
    let mut members = Vec::new();
    for _ in 0..3 {
        let mut member = StreamSeaClient::connect(&base).await;
        assert_eq!(
            member
                .authenticate(json!({"type": "basic", "clientId": "w", "clientSecret": "x"}))
                .await["success"],
            true
        );
        let (_, answer) = member.subscribe("valid_transactions", Some(GROUP)).await;
        assert_eq!(answer["success"], true, "{answer}");
        members.push(member);
    }
    let mut all = Vec::new();
    let mut commit = |height: u64| {
        let block = synthetic_block(height, 12, KEY);
        all.extend(block.transactions.iter().map(|t| t.id.clone()));
        block
    };
    for height in 1..=5 {
        harness.commit(commit(height)).await;
    }
    // A fourth member joins mid-stream; a first one leaves (it reads until our close frame
    // answers its own: whatever the node handed its socket, it got).
    let mut joining = StreamSeaClient::connect(&base).await;
    joining
        .authenticate(json!({"type": "basic", "clientId": "w", "clientSecret": "x"}))
        .await;
    let (_, answer) = joining.subscribe("valid_transactions", Some(GROUP)).await;
    assert_eq!(answer["success"], true);
    members.push(joining);
    for height in 6..=10 {
        harness.commit(commit(height)).await;
    }
    let mut leaving = members.remove(0);
    leaving.ws.close(None).await.expect("close");
    let (left_with, _) = leaving.until_close(Duration::from_secs(10)).await;
    for height in 11..=15 {
        harness.commit(commit(height)).await;
    }
    let mut received = ids(&left_with);
    let mut shares = Vec::new();
    for member in &mut members {
        let share = ids(&drain(member, Duration::from_millis(500)).await);
        shares.push(share.len());
        received.extend(share);
    }
    received.sort();
    let mut expected = all.clone();
    expected.sort();
    assert_eq!(
        received.len(),
        expected.len(),
        "nothing lost, nothing twice"
    );
    assert_eq!(received, expected);
    assert!(
        shares.iter().all(|&n| n > 0),
        "every member had a share: {shares:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_protocol_answers_mistakes_without_disturbing_other_subscriptions() {
    // One block in memory: older history comes from the source.
    let harness = Harness::start_with(|c| c.streams.ring_blocks = 1).await;
    let base = harness.streams_base();
    // Anything before authenticate: refused, and the connection is closed with 1008.
    let mut early = StreamSeaClient::connect(&base).await;
    let (id, answer) = early.subscribe("valid_blocks", None).await;
    assert_eq!(
        answer,
        json!({"id": id, "action": "subscribe", "success": false, "payload": {"error": "authenticate first"}})
    );
    let (_, close) = early.until_close(Duration::from_secs(10)).await;
    assert_eq!(close.expect("close").code, 1008);

    let mut client = StreamSeaClient::connect(&base).await;
    client
        .authenticate(json!({"type": "basic", "clientId": "c", "clientSecret": "s"}))
        .await;
    let (live, answer) = client.subscribe("valid_blocks", None).await;
    assert_eq!(answer["success"], true);
    for (stream, group, parameter) in [
        ("valid_things", None, "stream"),
        ("valid_transactions?public_key=0OIl", None, "public_key"),
        ("valid_transactions?from_height=x", None, "from_height"),
        ("valid_transactions", Some("not-a-uuid"), "groupId"),
        (
            "valid_transactions?from_height=3",
            Some(GROUP),
            "from_height",
        ),
        ("valid_transactions?partition=0/2", Some(GROUP), "partition"),
    ] {
        let (id, answer) = client.subscribe(stream, group).await;
        assert_eq!(answer["id"], id);
        assert_eq!(answer["action"], "subscription");
        assert_eq!(answer["success"], false, "{stream}");
        assert_eq!(answer["payload"]["parameter"], parameter, "{answer}");
    }
    let id = client
        .send(json!({"action": "publish", "payload": {}}))
        .await;
    let answer = client.answer(id).await;
    assert_eq!(answer["success"], false);
    assert_eq!(answer["action"], "publish");
    client
        .ws
        .send(Message::text("not json"))
        .await
        .expect("send");
    assert_eq!(client.answer(0).await["id"], Value::Null);
    // History no longer stored: refused with the lowest height, before any delivery.
    harness.source.commit(synthetic_block(1, 1, KEY));
    harness.commit(synthetic_block(2, 1, KEY)).await;
    harness.source.prune_below(2);
    let (id, answer) = client.subscribe("valid_blocks?from_height=0", None).await;
    assert_eq!(answer["id"], id);
    assert_eq!(answer["success"], false);
    assert_eq!(answer["payload"]["lowest_height"], 2);
    // The first subscription went on through all of it.
    harness.commit(synthetic_block(3, 1, KEY)).await;
    let mut heights = Vec::new();
    while heights.last() != Some(&3) {
        let delivery = client.next().await;
        assert_eq!(delivery["id"], live);
        heights.push(delivery["payload"]["height"].as_u64().expect("height"));
    }
    assert_eq!(heights, [1, 2, 3]);
    // Unsubscribe by the subscribe request's id.
    let id = client
        .send(json!({"action": "unsubscribe", "payload": live}))
        .await;
    let answer = client.answer(id).await;
    assert_eq!(answer["success"], true);
    assert_eq!(answer["payload"], live);
    harness.commit(synthetic_block(4, 1, KEY)).await;
    client.assert_silent(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_are_served_on_both_ports_as_the_library_asks_and_publishing_is_refused() {
    let harness = Harness::start_with(|_| {}).await;
    for addr in [harness.node().streams_addr, harness.node().api_addr] {
        let addr = addr.to_string();
        // The library sends Content-Encoding: gzip even on a GET without a body.
        let (status, body) = http_request(
            &addr,
            &format!("GET /api/v1/streams/valid_blocks/schema HTTP/1.1\r\nHost: {addr}\r\nContent-Encoding: gzip\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let schema: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(schema["name"], "valid_blocks");
        let (status, _) = http_get(&addr, "/api/v1/streams/valid_things/schema").await;
        assert_eq!(status, 404);
        let gzip = |text: &str| {
            use std::io::Write;
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(text.as_bytes()).expect("gzip");
            encoder.finish().expect("gzip")
        };
        let body = gzip(r#"{"schemaNames": ["valid_blocks", "valid_transactions", "x"]}"#);
        let mut request = format!("POST /api/v1/schema-versions-vector HTTP/1.1\r\nHost: {addr}\r\nContent-Encoding: gzip\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
        request.extend_from_slice(&body);
        let (status, body) = http_request_bytes(&addr, &request).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).expect("JSON"),
            json!({"versionsVector": ["1", "1", null]})
        );
        for action in ["publish", "define"] {
            let (status, body) = http_request(
                &addr,
                &format!("POST /api/v1/streams/valid_transactions/{action} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"),
            )
            .await;
            assert_eq!(status, 405, "{action}: {body}");
        }
    }
}
