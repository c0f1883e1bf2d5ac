//! The one-socket JSON-RPC channel (`/api/v1/streams`) end to end: an independent Python
//! `websockets` client authenticates in signed mode, subscribes to both streams with filters
//! and `from_height`, updates a filter mid-stream and unsubscribes over one connection, and must receive exactly what the equivalent URL streams deliver (and what
//! the written chain says, computed here from the generator's facts). Then the spec's errors,
//! the token's bounds, the limits, `-32003`, shutdown (1001) and too slow (4000) with
//! `last_heights`.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use crate::support::*;
use planetmint_streams::config::Config;
use planetmint_streams_auth::{
    AuthMode, Grant, KeyConfig, KeyRing, SecretString, Stream, TokenAuthority, TokenPolicy,
};
use planetmint_streams_devchain::generate::{ChainGenerator, GeneratedBlock};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn signed(config: &mut Config) {
    config.auth.mode = AuthMode::Signed;
    config.auth.keys = vec![KeyConfig {
        id: "k1".into(),
        secret: Some(SecretString::new(SECRET)),
        secret_file: None,
    }];
    config.auth.issuing_key = Some("k1".into());
}

fn issue(grant: &Grant) -> String {
    let secret: Vec<u8> = (0..SECRET.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&SECRET[i..i + 2], 16).unwrap_or(0))
        .collect();
    TokenAuthority::new(
        KeyRing::new("k1", &secret).expect("key"),
        TokenPolicy {
            default_ttl: Duration::from_secs(600),
            max_ttl: Duration::from_secs(3600),
            clock_skew: Duration::from_secs(30),
        },
    )
    .issue(grant, None)
    .expect("issue")
    .token
}

/// What a `valid_transactions` URL stream filtered by output keys / operations sends, from
/// the generator's facts.
fn tx_events(
    blocks: &[GeneratedBlock],
    after: u64,
    keys: &[&str],
    operations: &[&str],
) -> Vec<(u64, Value)> {
    blocks
        .iter()
        .filter(|b| b.height > after)
        .flat_map(|b| {
            b.transactions.iter().filter_map(move |tx| {
                let key_ok =
                    keys.is_empty() || tx.output_keys.iter().any(|k| keys.contains(&k.as_str()));
                let op_ok = operations.is_empty() || operations.contains(&tx.operation.as_str());
                (key_ok && op_ok).then(|| {
                    (
                        b.height,
                        json!({"transaction_id": tx.id, "asset_id": tx.asset_id,
                               "asset_ids": tx.asset_ids, "height": b.height}),
                    )
                })
            })
        })
        .collect()
}

fn block_message(b: &GeneratedBlock) -> Value {
    json!({"height": b.height, "hash": b.app_hash, "transaction_ids": b.transaction_ids()})
}

/// Reads `n` messages of a URL stream.
async fn url_messages(base: &str, path_and_query: &str, n: usize) -> Vec<Value> {
    let mut ws = UrlStream::connect(&format!("{base}{path_and_query}")).await;
    let messages = ws.take(n, Duration::from_secs(20)).await;
    ws.close().await;
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_gets_over_one_socket_what_the_url_streams_deliver() {
    let harness = Harness::start_with(signed).await;
    let mut generator = ChainGenerator::new(1818, 1, 6);
    let wallets: Vec<String> = generator.wallets().to_vec();
    let (k1, k2, k3) = (&wallets[0], &wallets[1], &wallets[2]);
    let blocks: Vec<GeneratedBlock> = (0..16).map(|_| generator.block(3)).collect();
    let mut writer = harness.writer().await;
    for block in &blocks[..6] {
        writer.write(block).await;
    }
    let token = issue(&Grant::new(Stream::ALL));

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/rpc_session.py");
    let mut child = tokio::process::Command::new(python())
        .args([script, &harness.api(), &token, k1, k2, k3, "16"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python runs");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("python subscribes in time")
        .expect("read")
        .expect("a line");
    assert_eq!(first, "ready");
    // The rest is written while the client follows, updates and unsubscribes.
    for block in &blocks[6..] {
        writer.write(block).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("python finishes in time")
        .expect("read")
        .expect("the result line");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("python exits")
        .expect("wait");
    assert!(status.success());
    let out: Value = serde_json::from_str(&last).expect("JSON");

    // Discovery and the refusal of a connection that does not authenticate.
    assert_eq!(
        out["rpc_url"],
        format!("{}/api/v1/streams", harness.streams_base())
    );
    assert_eq!(out["unauthenticated_answer"]["id"], 1);
    assert_eq!(error_code(&out["unauthenticated_answer"]), -32001);
    assert_eq!(out["unauthenticated_close"][0], 1008);
    // Malformed requests got their errors and did not disturb the connection.
    let malformed = out["malformed_answers"].as_array().expect("answers");
    assert_eq!(malformed.len(), 2, "{malformed:?}");
    assert_eq!(malformed[0]["id"], Value::Null);
    assert_eq!(error_code(&malformed[0]), -32700);
    assert_eq!(malformed[1]["id"], "m");
    assert_eq!(error_code(&malformed[1]), -32601);
    let answers = &out["answers"];
    assert_eq!(
        answers["auth"]["result"]["streams"],
        json!(["valid_transactions", "valid_blocks"])
    );
    assert!(answers["auth"]["result"]["expires_at"].is_u64());
    assert_eq!(error_code(&answers["bad"]), -32602);
    assert_eq!(answers["bad"]["error"]["data"]["parameter"], "asset_id");

    let ids = &out["ids"];
    let id = |name: &str| ids[name].as_str().expect("subscription id").to_owned();
    let notes = |name: &str| out["notifications"][id(name)].clone();
    let base = harness.streams_base();

    // s0: valid_blocks from 0, every block; the same as the URL stream.
    let expected: Vec<Value> = blocks.iter().map(block_message).collect();
    let signed_url = |query: &str| format!("{query}&token={token}");
    let url = url_messages(
        &base,
        &signed_url("/api/v1/streams/valid_blocks?from_height=0"),
        expected.len(),
    )
    .await;
    assert_eq!(url, expected);
    assert_eq!(notes("s0"), json!(url));

    // s1: valid_transactions with public_key k1 from 0, then k1 or k3 after the update.
    let after = answers["update"]["result"]["applies_after_height"]
        .as_u64()
        .expect("applies_after_height");
    assert!(
        (9..16).contains(&after),
        "updated mid-stream, after {after}"
    );
    let before_update = tx_events(&blocks, 0, &[k1], &[]);
    let with_k3 = tx_events(&blocks, 0, &[k1, k3], &[]);
    let url_k1 = url_messages(
        &base,
        &signed_url(&format!(
            "/api/v1/streams/valid_transactions?from_height=0&public_key={k1}"
        )),
        before_update.len(),
    )
    .await;
    let url_k1_k3 = url_messages(
        &base,
        &signed_url(&format!(
            "/api/v1/streams/valid_transactions?from_height=0&public_key={k1}&public_key={k3}"
        )),
        with_k3.len(),
    )
    .await;
    let height = |m: &Value| m["height"].as_u64().unwrap_or(0);
    let expected_s1: Vec<Value> = url_k1
        .iter()
        .filter(|m| height(m) <= after)
        .chain(url_k1_k3.iter().filter(|m| height(m) > after))
        .cloned()
        .collect();
    let independent: Vec<Value> = before_update
        .iter()
        .filter(|(h, _)| *h <= after)
        .chain(with_k3.iter().filter(|(h, _)| *h > after))
        .map(|(_, e)| e.clone())
        .collect();
    assert_eq!(
        expected_s1, independent,
        "the URL streams deliver the chain"
    );
    assert!(
        with_k3
            .iter()
            .any(|(h, e)| *h > after && !before_update.iter().any(|(_, b)| b == e)),
        "the update let k3's transactions through (choose another seed otherwise)"
    );
    assert_eq!(notes("s1"), json!(expected_s1));

    // s2: CREATEs in block batches from 4, unsubscribed once the clock passed 11: a prefix
    // of the URL stream holding at least every block up to 11.
    assert_eq!(answers["unsubscribe"]["result"], true);
    let creates: Vec<u64> = {
        let mut heights: Vec<u64> = tx_events(&blocks, 4, &[], &["CREATE"])
            .iter()
            .map(|(h, _)| *h)
            .collect();
        heights.dedup();
        heights
    };
    let url_s2 = url_messages(
        &base,
        &signed_url(
            "/api/v1/streams/valid_transactions?from_height=4&operation=CREATE&batch=block",
        ),
        creates.len(),
    )
    .await;
    let got_s2 = notes("s2").as_array().cloned().unwrap_or_default();
    assert_eq!(got_s2[..], url_s2[..got_s2.len()], "a prefix, in order");
    assert!(
        got_s2.len() >= creates.iter().filter(|&&h| h <= 11).count(),
        "everything up to the unsubscribe"
    );
    assert!(got_s2.len() < url_s2.len(), "nothing after the unsubscribe");

    // s3: valid_blocks holding a transaction to k2, from 2.
    let k2_blocks: Vec<Value> = blocks
        .iter()
        .filter(|b| b.height > 2 && b.transactions.iter().any(|t| t.output_keys.contains(k2)))
        .map(block_message)
        .collect();
    let url_s3 = url_messages(
        &base,
        &signed_url(&format!(
            "/api/v1/streams/valid_blocks?from_height=2&public_key={k2}"
        )),
        k2_blocks.len(),
    )
    .await;
    assert_eq!(url_s3, k2_blocks);
    assert_eq!(notes("s3"), json!(url_s3));

    // describe answers with the catalogue's own entry.
    let (_, catalogue) = get_json(&harness.node().api_addr.to_string(), "/api/v1/streams").await;
    assert_eq!(answers["describe"]["result"], catalogue["streams"][0]);
    assert!(answers["barrier"]["result"]["applies_after_height"].as_u64() >= Some(16));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_spec_errors_and_tokens_bound_every_subscription() {
    let harness = Harness::start_with(signed).await;
    let rpc_url = format!("{}/api/v1/streams", harness.streams_base());
    let streams = harness.node().streams_addr.to_string();
    const K1: &str = "4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW";
    const K2: &str = "zeLcy7Xzntvupb1PChe1B3KjxRKcCdM1zJEKyKpc653";

    // A token in the URL: refused before the upgrade when bad, accepted when good.
    let forged = TokenAuthority::new(
        KeyRing::new("k1", &[7u8; 32]).expect("key"),
        TokenPolicy::default(),
    )
    .issue(&Grant::new(Stream::ALL), None)
    .expect("issue")
    .token;
    let (status, _) = upgrade_status(&streams, &format!("/api/v1/streams?token={forged}")).await;
    assert_eq!(status, 403, "signed with another secret");
    let (status, _) = upgrade_status(&streams, "/api/v1/streams?token=garbage").await;
    assert_eq!(status, 401);

    // A wallet's token: valid_transactions only, pinned to K1.
    let wallet = issue(&Grant::new([Stream::ValidTransactions]).public_key(K1));
    let mut rpc = RpcClient::connect(&format!("{rpc_url}?token={wallet}")).await;
    let answer = rpc
        .call("subscribe", json!({"stream": "valid_transactions"}))
        .await;
    assert_eq!(error_code(&answer), -32001, "no filter would be every tx");
    assert_eq!(answer["error"]["data"]["parameter"], "public_key");
    let answer = rpc
        .call(
            "subscribe",
            json!({"stream": "valid_blocks", "public_key": [K1]}),
        )
        .await;
    assert_eq!(error_code(&answer), -32001);
    assert_eq!(answer["error"]["data"]["reason"], "stream_not_allowed");
    let sub = rpc
        .subscribe(json!({"stream": "valid_transactions", "public_key": [K1]}))
        .await;
    let answer = rpc
        .call(
            "update",
            json!({"subscription": sub, "add": {"public_key": [K2]}}),
        )
        .await;
    assert_eq!(error_code(&answer), -32001, "K2 is not in the token");
    let answer = rpc
        .call(
            "update",
            json!({"subscription": sub, "remove": {"public_key": [K1]}}),
        )
        .await;
    assert_eq!(error_code(&answer), -32602, "removing the last key widens");
    assert_eq!(answer["error"]["data"]["parameter"], "remove");
    let answer = rpc.call("unsubscribe", json!({"subscription": "99"})).await;
    assert_eq!(error_code(&answer), -32602);
    assert_eq!(answer["error"]["data"]["parameter"], "subscription");
    let answer = rpc.call("unsubscribe", json!({"subscription": sub})).await;
    assert_eq!(answer["result"], true);

    let answer = rpc
        .call("describe", json!({"stream": "valid_blocks"}))
        .await;
    assert_eq!(answer["result"]["name"], "valid_blocks");
    rpc.close().await;

    // Authenticating with a bad token is refused; the connection then still needs one.
    let mut rpc = RpcClient::connect(&rpc_url).await;
    let answer = rpc.call("authenticate", json!({"token": "v1.nope"})).await;
    assert_eq!(error_code(&answer), -32001);
    let answer = rpc
        .call("subscribe", json!({"stream": "valid_blocks"}))
        .await;
    assert_eq!(error_code(&answer), -32001);
    let closed = rpc.next().await.expect_err("closed");
    assert_eq!(closed.map(|c| c.code), Some(1008));

    // Before authenticating, a message that is not a request is answered and changes nothing;
    // any other method, an unknown one too, gets -32001 and the close.
    let mut rpc = RpcClient::connect(&rpc_url).await;
    rpc.send_text("not json").await;
    let answer = rpc.next().await.expect("an answer");
    assert_eq!(error_code(&answer), -32700);
    let answer = rpc.call("no_such_method", json!({})).await;
    assert_eq!(error_code(&answer), -32001, "{answer}");
    let closed = rpc.next().await.expect_err("closed");
    assert_eq!(closed.map(|c| c.code), Some(1008));

    let (_, metrics) = http_get(&harness.node().api_addr.to_string(), "/metrics").await;
    assert!(
        metric(
            &metrics,
            "planetmint_streams_rpc_requests_total",
            "code=\"-32001\""
        ) >= 5.0
    );
    assert!(
        metric(
            &metrics,
            "planetmint_streams_rpc_requests_total",
            "code=\"ok\",method=\"subscribe\""
        ) >= 1.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_and_limits_disturb_nothing_else() {
    let harness = Harness::start_with(|c| {
        c.streams.rpc_max_subscriptions = 3;
        c.streams.rpc_max_filter_values = 4;
    })
    .await;
    let bystander = Bystander::start(&harness, 77).await;
    let rpc_url = format!("{}/api/v1/streams", harness.streams_base());
    let mut rpc = RpcClient::connect(&rpc_url).await;
    // A live subscription on the connection keeps getting its blocks throughout.
    let blocks = rpc.subscribe(json!({"stream": "valid_blocks"})).await;
    // Every kind of malformed request gets its error; the connection goes on.
    for (text, code) in [
        ("{\"jsonrpc\": \"2.0\", \"id\": 1", -32700),
        ("[1, 2]", -32600),
        ("{\"jsonrpc\": \"2.0\", \"method\": \"describe\"}", -32600),
        ("{\"jsonrpc\": \"2.0\", \"id\": \"q\", \"method\": \"nope\"}", -32601),
        (
            "{\"jsonrpc\": \"2.0\", \"id\": 5, \"method\": \"subscribe\", \"params\": {\"stream\": \"valid_transactions\", \"from_height\": -3}}",
            -32602,
        ),
    ] {
        rpc.send_text(text).await;
        let answer = rpc.answer().await;
        assert_eq!(error_code(&answer), code, "{text}: {answer}");
    }
    // Junk of every shape, then a request that still works.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..40 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let alphabet = b"{}[]\":,0ae-\\ t";
        let junk: String = (0..seed % 300)
            .map(|i| char::from(alphabet[((seed >> (i % 50)) % alphabet.len() as u64) as usize]))
            .collect();
        rpc.send_text(&junk).await;
        let answer = rpc.answer().await;
        assert!(answer["error"]["code"].is_i64(), "{junk}: {answer}");
    }
    let answer = rpc
        .call("describe", json!({"stream": "valid_blocks"}))
        .await;
    assert_eq!(answer["result"]["name"], "valid_blocks");

    // Limits: 3 subscriptions, 4 filter values per connection (one is open already).
    let answer = rpc.call("authenticate", json!({"token": "anything"})).await;
    assert_eq!(answer["result"]["expires_at"], Value::Null, "open mode");
    rpc.subscribe(
        json!({"stream": "valid_transactions", "operation": ["CREATE", "TRANSFER", "VOTE"]}),
    )
    .await;
    let answer = rpc
        .call(
            "subscribe",
            json!({"stream": "valid_blocks", "operation": ["CREATE", "TRANSFER"]}),
        )
        .await;
    assert_eq!(error_code(&answer), -32002);
    assert_eq!(answer["error"]["data"]["limit"], "filter_values");
    rpc.subscribe(json!({"stream": "valid_blocks", "batch": "block"}))
        .await;
    let answer = rpc
        .call("subscribe", json!({"stream": "valid_blocks"}))
        .await;
    assert_eq!(error_code(&answer), -32002);
    assert_eq!(answer["error"]["data"]["limit"], "subscriptions");

    // The blocks subscription still gets every block, in order.
    rpc.until(|n| {
        n.iter()
            .filter(|m| m["params"]["subscription"] == blocks)
            .count()
            >= 3
    })
    .await;
    let heights: Vec<u64> = rpc
        .results(&blocks)
        .iter()
        .filter_map(|m| m["height"].as_u64())
        .collect();
    assert!(heights.len() >= 2, "{heights:?}");
    assert!(
        heights.windows(2).all(|w| w[1] == w[0] + 1),
        "every block, in order: {heights:?}"
    );
    rpc.close().await;
    // Meanwhile a URL subscriber on the same node got every event.
    bystander.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_height_below_the_stored_history_gets_32003() {
    // The chain starts at 100: heights below are gone (pruned).
    let blocks = chain(41, 100, 5, 1);
    let harness = Harness::over(&blocks, |_| {}).await;
    let node = harness.node();
    let mut rpc = RpcClient::connect(&format!("ws://{}/api/v1/streams", node.streams_addr)).await;
    let answer = rpc
        .call(
            "subscribe",
            json!({"stream": "valid_transactions", "from_height": 5}),
        )
        .await;
    assert_eq!(error_code(&answer), -32003);
    assert_eq!(answer["error"]["data"]["lowest_height"], 100);
    // Right below the lowest stored block is fine.
    let id = rpc
        .subscribe(json!({"stream": "valid_transactions", "from_height": 99}))
        .await;
    rpc.until(|n| n.len() >= 5).await;
    assert_eq!(json!(rpc.results(&id)), json!(expected_events(&blocks)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_with_1001_and_every_subscriptions_last_height() {
    let mut harness = Harness::start().await;
    let blocks = chain(52, 1, 6, 2);
    let keys: Vec<String> = blocks[0].transactions[0].output_keys.clone();
    let mut rpc = RpcClient::connect(&format!("{}/api/v1/streams", harness.streams_base())).await;
    let all = rpc.subscribe(json!({"stream": "valid_blocks"})).await;
    let one = rpc
        .subscribe(json!({"stream": "valid_transactions", "public_key": [keys[0]]}))
        .await;
    let mut writer = harness.writer().await;
    for block in &blocks {
        writer.write(block).await;
    }
    rpc.until(|n| {
        n.iter()
            .any(|m| m["params"]["subscription"] == all && m["params"]["result"]["height"] == 6)
    })
    .await;
    let node = harness.node.take().expect("node");
    let stop = tokio::spawn(node.shutdown());
    // The closing notification, then the close frame, both with last_heights.
    let closing = rpc.closing().await;
    let heights = &closing["params"]["last_heights"];
    assert_eq!(closing["params"]["code"], 1001);
    assert_eq!(heights[&all], 6);
    let last_of_one = rpc
        .results(&one)
        .last()
        .and_then(|e| e["height"].as_u64())
        .expect("the key's first transaction was streamed");
    assert_eq!(heights[&one], last_of_one);
    let closed = rpc.next().await.expect_err("closed").expect("close frame");
    assert_eq!(closed.code, 1001);
    let reason = closed.reason_json();
    assert_eq!(reason["reason"], "server shutting down");
    assert_eq!(&reason["last_heights"], heights);
    stop.await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_stops_reading_gets_4000_and_resumes_each_subscription() {
    let harness = Harness::start_with(|c| {
        c.streams.queue_max_blocks = 4;
        c.streams.queue_max_bytes = 1 << 18;
        c.streams.rpc_max_subscriptions = 2;
        // No pings: the client would answer them after the server closed, and the reset
        // that answer draws would drop what the client has not read yet.
        c.streams.ping_interval = Duration::from_secs(300);
        c.streams.pong_timeout = Duration::from_secs(120);
    })
    .await;
    let rpc_url = format!("{}/api/v1/streams", harness.streams_base());
    let mut slow = RpcClient::connect(&rpc_url).await;
    let blocks_sub = slow.subscribe(json!({"stream": "valid_blocks"})).await;
    let tx_sub = slow
        .subscribe(json!({"stream": "valid_transactions", "batch": "block"}))
        .await;
    let blocks = chain(61, 1, 1500, 40);
    // The first block reaches the connection (its socket holds it, unread); then blocks come
    // until both subscriptions have been found too slow. (Without that first wait, a burst
    // of blocks can overflow the queue before anything was written to the socket: a close at
    // height 0 with nothing to check.)
    harness.writer().await.write(&blocks[0]).await;
    slow.wait_unread(Duration::from_secs(30)).await;
    let written = 1 + write_until_metric(
        &harness,
        &blocks[1..],
        "planetmint_streams_disconnects_total",
        "reason=\"too_slow\"",
        2.0,
        None,
    )
    .await;
    assert!(
        written < blocks.len(),
        "the connection overflowed its queue"
    );
    // Now it reads: whole blocks up to each last height, the closing notification, the close.
    let closing = slow.closing().await;
    assert_eq!(closing["params"]["code"], 4000);
    assert_eq!(closing["params"]["reason"], "too slow");
    let closed = slow.next().await.expect_err("closed").expect("close frame");
    assert_eq!(closed.code, 4000);
    let reason = closed.reason_json();
    assert_eq!(reason["last_heights"], closing["params"]["last_heights"]);
    let heights: BTreeMap<String, Option<u64>> =
        serde_json::from_value(closing["params"]["last_heights"].clone()).expect("heights");
    for (id, framing_height) in [(&blocks_sub, "height"), (&tx_sub, "height")] {
        let got = slow.results(id);
        let last = heights[id.as_str()].expect("a last height");
        assert!((last as usize) < written, "{last} of {written}");
        assert_eq!(
            got.last().and_then(|m| m[framing_height].as_u64()),
            Some(last),
            "subscription {id} ends with whole block last_height"
        );
        let heights_got: Vec<u64> = got.iter().filter_map(|m| m["height"].as_u64()).collect();
        assert_eq!(heights_got, (1..=last).collect::<Vec<_>>(), "no gap");
    }
    // Resuming each from its last height continues without gap or duplicate.
    let mut again = RpcClient::connect(&rpc_url).await;
    let last = heights[tx_sub.as_str()].expect("height");
    let id = again
        .subscribe(json!({"stream": "valid_transactions", "batch": "block", "from_height": last}))
        .await;
    again.until(|n| !n.is_empty()).await;
    assert_eq!(again.results(&id)[0]["height"], last + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_and_asyncapi_describe_the_channel() {
    let harness = Harness::start().await;
    let api = harness.node().api_addr.to_string();
    let (_, catalogue) = get_json(&api, "/api/v1/streams").await;
    let rpc_url = format!("{}/api/v1/streams", harness.streams_base());
    assert_eq!(catalogue["rpc_url"], rpc_url);
    let (_, doc) = get_json(&api, "/api/v1/streams/asyncapi.json").await;
    let channel = &doc["channels"]["rpc"];
    assert_eq!(channel["address"], "/api/v1/streams");
    for message in [
        "request",
        "answer",
        "notification",
        "closing",
        "subscriptionError",
    ] {
        let name = channel["messages"][message]["$ref"]
            .as_str()
            .expect("a reference");
        let pointer = name.strip_prefix('#').expect("local");
        assert!(doc.pointer(pointer).is_some(), "{name}");
    }
    // describe answers with exactly the catalogue's entries.
    let mut rpc = RpcClient::connect(&rpc_url).await;
    for (i, stream) in ["valid_transactions", "valid_blocks"].iter().enumerate() {
        let answer = rpc.call("describe", json!({"stream": stream})).await;
        assert_eq!(answer["result"], catalogue["streams"][i]);
    }
    // A request as the AsyncAPI document describes it is one the server accepts.
    let request = json!({"jsonrpc": "2.0", "id": 9, "method": "subscribe",
                         "params": {"stream": "valid_blocks", "batch": "block"}});
    let request_schema = doc["components"]["messages"]["request"]["payload"].clone();
    let validator = jsonschema::validator_for(&request_schema).expect("schema");
    assert!(validator.is_valid(&request));
    assert!(
        !validator.is_valid(&json!({"jsonrpc": "2.0", "id": 9, "method": "subscribe",
                                        "params": {"stream": "valid_blocks", "token": "x"}}))
    );
    rpc.send_text(&request.to_string()).await;
    assert!(rpc.answer().await["result"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_during_replay_applies_once_caught_up_with_nothing_skipped_or_repeated() {
    // History read from the source one block per request: the update arrives while the
    // subscription is still replaying.
    let harness = Harness::start_with(|c| {
        c.streams.ring_blocks = 1;
        c.streams.replay_batch_blocks = 1;
    })
    .await;
    let mut generator = ChainGenerator::new(2024, 1, 6);
    let wallets: Vec<String> = generator.wallets().to_vec();
    let (a, b) = (&wallets[0], &wallets[1]);
    let blocks: Vec<GeneratedBlock> = (0..240).map(|_| generator.block(3)).collect();
    let mut writer = harness.writer().await;
    for block in &blocks[..200] {
        writer.write(block).await;
    }
    let mut rpc = RpcClient::connect(&format!("{}/api/v1/streams", harness.streams_base())).await;
    // The first subscription's id is "1": the update goes out with the subscribe, while the
    // subscription replays its history (it is applied once that has caught up).
    rpc.send_text(
        &json!({"jsonrpc": "2.0", "id": 1, "method": "subscribe",
                "params": {"stream": "valid_transactions", "public_key": [a], "from_height": 0}})
        .to_string(),
    )
    .await;
    rpc.send_text(
        &json!({"jsonrpc": "2.0", "id": 2, "method": "update",
                "params": {"subscription": "1", "add": {"public_key": [b]}}})
        .to_string(),
    )
    .await;
    let subscribed = rpc.answer().await;
    assert_eq!(subscribed["result"], "1");
    let updated = rpc.answer().await;
    assert_eq!(updated["id"], 2);
    let after = updated["result"]["applies_after_height"]
        .as_u64()
        .expect("applies_after_height");
    assert_eq!(after, 200, "applied once the replay caught up");
    for block in &blocks[200..] {
        writer.write(block).await;
    }
    // A no-op update as a barrier once everything is published.
    while harness.node().hub.last_published() < Some(240) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let barrier = rpc
        .call("update", json!({"subscription": "1", "add": {}}))
        .await;
    assert_eq!(barrier["result"]["applies_after_height"], 240);
    let old = tx_events(&blocks, 0, &[a], &[]);
    let new = tx_events(&blocks, 0, &[a, b], &[]);
    let expected: Vec<Value> = old
        .iter()
        .filter(|(h, _)| *h <= after)
        .chain(new.iter().filter(|(h, _)| *h > after))
        .map(|(_, e)| e.clone())
        .collect();
    assert!(new
        .iter()
        .any(|(h, e)| *h > after && !old.iter().any(|(_, o)| o == e)));
    assert_eq!(json!(rpc.results("1")), json!(expected));
}
