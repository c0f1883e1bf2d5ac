//! Filters and block framing end to end, on the blocks Planetmint 2.5.3 wrote. What each
//! subscription must receive is computed here from the fixture files, independently of the
//! server's filter code.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::support::*;
use planetmint_streams_devchain::fixtures::Planetmint253;
use serde_json::{json, Value};

/// One expected transaction with what filters look at.
struct Tx {
    event: Value,
    height: u64,
    operation: String,
    asset_id: String,
    output_keys: HashSet<String>,
    input_keys: HashSet<String>,
}

fn fixture_txs(fixtures: &Planetmint253) -> Vec<Tx> {
    fixtures
        .expected_transactions
        .iter()
        .map(|e| {
            let id = e["transaction_id"].as_str().unwrap_or_default();
            let row = fixtures
                .transactions
                .iter()
                .find(|t| t[0] == id)
                .expect("row of every transaction");
            let input_keys = row[5]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|input| input["owners_before"].as_array().into_iter().flatten())
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect();
            Tx {
                event: json!({
                    "transaction_id": e["transaction_id"], "asset_id": e["asset_id"],
                    "asset_ids": e["asset_ids"], "height": e["height"],
                }),
                height: e["height"].as_u64().unwrap_or_default(),
                operation: e["operation"].as_str().unwrap_or_default().to_owned(),
                asset_id: e["asset_id"].as_str().unwrap_or_default().to_owned(),
                output_keys: e["public_keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect(),
                input_keys,
            }
        })
        .collect()
}

/// The most frequent value of `f` among the transactions.
fn most_common(txs: &[Tx], f: impl Fn(&Tx) -> Vec<String>) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for tx in txs {
        for v in f(tx) {
            *counts.entry(v).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(v, _)| v)
        .unwrap_or_default()
}

fn events(txs: &[Tx], keep: impl Fn(&Tx) -> bool) -> Vec<Value> {
    txs.iter()
        .filter(|tx| keep(tx))
        .map(|tx| tx.event.clone())
        .collect()
}

fn batches(txs: &[Tx], keep: impl Fn(&Tx) -> bool) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for tx in txs.iter().filter(|tx| keep(tx)) {
        match out.last_mut() {
            Some(batch) if batch["height"] == tx.height => {
                if let Some(list) = batch["transactions"].as_array_mut() {
                    list.push(tx.event.clone());
                }
            }
            _ => out.push(json!({"height": tx.height, "transactions": [tx.event.clone()]})),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_and_combination_yields_exactly_the_matching_events() {
    let harness = Harness::start().await;
    let fixtures = Planetmint253::load().expect("fixtures");
    let txs = fixture_txs(&fixtures);
    let key = most_common(&txs, |tx| tx.output_keys.iter().cloned().collect());
    let other_key = most_common(&txs, |tx| {
        tx.output_keys
            .iter()
            .filter(|k| **k != key)
            .cloned()
            .collect()
    });
    let spender = most_common(&txs, |tx| tx.input_keys.iter().cloned().collect());
    let asset = most_common(&txs, |tx| {
        if tx.operation == "TRANSFER" {
            vec![tx.asset_id.clone()]
        } else {
            vec![]
        }
    });

    let base = format!("{}/api/v1/streams", harness.streams_base());
    type Keep = Box<dyn Fn(&Tx) -> bool + Send>;
    let cases: Vec<(String, Keep, bool)> = vec![
        (
            format!("valid_transactions?public_key={key}"),
            Box::new({
                let k = key.clone();
                move |t: &Tx| t.output_keys.contains(&k)
            }),
            false,
        ),
        (
            format!("valid_transactions?public_key={key}&public_key={other_key}"),
            Box::new({
                let (a, b) = (key.clone(), other_key.clone());
                move |t: &Tx| t.output_keys.contains(&a) || t.output_keys.contains(&b)
            }),
            false,
        ),
        (
            "valid_transactions?operation=CREATE".into(),
            Box::new(|t: &Tx| t.operation == "CREATE"),
            false,
        ),
        (
            "valid_transactions?operation=transfer".into(),
            Box::new(|t: &Tx| t.operation == "TRANSFER"),
            false,
        ),
        (
            format!("valid_transactions?asset_id={asset}"),
            Box::new({
                let a = asset.clone();
                move |t: &Tx| t.asset_id == a
            }),
            false,
        ),
        (
            format!("valid_transactions?public_key={key}&operation=TRANSFER"),
            Box::new({
                let k = key.clone();
                move |t: &Tx| t.output_keys.contains(&k) && t.operation == "TRANSFER"
            }),
            false,
        ),
        (
            format!("valid_transactions?public_key={spender}&public_key_in=inputs"),
            Box::new({
                let k = spender.clone();
                move |t: &Tx| t.input_keys.contains(&k)
            }),
            false,
        ),
        (
            format!("valid_transactions?public_key={spender}&public_key_in=any"),
            Box::new({
                let k = spender.clone();
                move |t: &Tx| t.input_keys.contains(&k) || t.output_keys.contains(&k)
            }),
            false,
        ),
        (
            "valid_transactions?batch=block".into(),
            Box::new(|_: &Tx| true),
            true,
        ),
        (
            format!("valid_transactions?batch=block&public_key={key}"),
            Box::new({
                let k = key.clone();
                move |t: &Tx| t.output_keys.contains(&k)
            }),
            true,
        ),
    ];
    let mut clients = Vec::new();
    for (query, keep, batched) in cases {
        let expected = if batched {
            batches(&txs, &keep)
        } else {
            events(&txs, &keep)
        };
        assert!(
            !expected.is_empty(),
            "{query} matches something in the fixtures"
        );
        assert!(
            expected.len() < 36 || batched || query.contains("batch"),
            "{query} filters something out"
        );
        let ws = UrlStream::connect(&format!("{base}/{query}")).await;
        clients.push((query, expected, ws));
    }
    // valid_blocks with a filter: the blocks holding a matching transaction, whole.
    let block_heights: Vec<u64> = {
        let mut h: Vec<u64> = txs
            .iter()
            .filter(|t| t.output_keys.contains(&key))
            .map(|t| t.height)
            .collect();
        h.dedup();
        h
    };
    let mut blocks_ws = UrlStream::connect(&format!("{base}/valid_blocks?public_key={key}")).await;

    harness.writer().await.write_fixtures(&fixtures).await;
    for (query, expected, mut ws) in clients {
        let got = ws.take(expected.len(), Duration::from_secs(10)).await;
        assert_eq!(got, expected, "{query}");
        ws.assert_silent(Duration::from_millis(200)).await;
    }
    let got = blocks_ws
        .take(block_heights.len(), Duration::from_secs(10))
        .await;
    let heights: Vec<u64> = got
        .iter()
        .map(|b| b["height"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(heights, block_heights);
    for block in &got {
        let want = fixtures
            .expected_blocks
            .iter()
            .find(|b| b["height"] == block["height"])
            .expect("block");
        assert_eq!(block, want, "whole valid_blocks message");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_apply_to_replayed_history_too() {
    // A two-block ring: most of the history is read back from the source.
    let harness = Harness::start_with(|c| c.streams.ring_blocks = 2).await;
    let fixtures = Planetmint253::load().expect("fixtures");
    let txs = fixture_txs(&fixtures);
    harness.writer().await.write_fixtures(&fixtures).await;
    let key = most_common(&txs, |tx| tx.output_keys.iter().cloned().collect());
    // Resume once the node has published everything: the history is in the past.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, ready) = get_json(&harness.node().api_addr.to_string(), "/ready").await;
        if ready["streamed_height"] == 8 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node reached height 8"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut live = UrlStream::connect(&format!(
        "{}/api/v1/streams/valid_transactions?from_height=2&public_key={key}&operation=CREATE",
        harness.streams_base()
    ))
    .await;
    let expected = events(&txs, |t| {
        t.height > 2 && t.output_keys.contains(&key) && t.operation == "CREATE"
    });
    assert!(!expected.is_empty());
    let got = live.take(expected.len(), Duration::from_secs(10)).await;
    assert_eq!(got, expected);
    live.assert_silent(Duration::from_millis(200)).await;

    let mut batched = UrlStream::connect(&format!(
        "{}/api/v1/streams/valid_transactions?from_height=0&batch=block",
        harness.streams_base()
    ))
    .await;
    let expected = batches(&txs, |_| true);
    assert_eq!(
        batched.take(expected.len(), Duration::from_secs(10)).await,
        expected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_filter_values_and_limits_get_400_naming_the_parameter() {
    let harness = Harness::start_with(|c| {
        c.streams.max_filter_values = 3;
        c.streams.max_query_length = 1024;
    })
    .await;
    let streams = harness.node().streams_addr.to_string();
    let key = "4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW";
    let too_many: String = (0..4).map(|i| format!("asset_id={:064x}&", i)).collect();
    let too_long = format!("from_height=1&{}", "operation=CREATE&".repeat(70));
    for (query, parameter) in [
        ("public_key=not-base58-0OIl", "public_key"),
        ("public_key=abc", "public_key"),
        ("asset_id=1234", "asset_id"),
        (
            "asset_id=zz00000000000000000000000000000000000000000000000000000000000000",
            "asset_id",
        ),
        ("operation=MINT", "operation"),
        ("batch=transaction", "batch"),
        ("public_key_in=inputs", "public_key_in"),
        (
            &format!("public_key={key}&public_key_in=nowhere"),
            "public_key_in",
        ),
        (too_many.as_str(), "asset_id"),
        (too_long.as_str(), "query"),
    ] {
        let (status, body) = get_json(
            &streams,
            &format!("/api/v1/streams/valid_transactions?{query}"),
        )
        .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["parameter"], parameter, "{query}: {body}");
        assert!(body["error"].is_string());
    }
}
