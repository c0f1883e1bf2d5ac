//! `include=transaction` end to end, on the blocks Planetmint 2.5.3's own storage code wrote
//! with every operation kind (`tests/fixtures/planetmint-2.5.3-all-ops`), committed as those
//! rows (the in-memory source assembles them with the Tarantool source's decoder; both read
//! modes of a real Tarantool: `tarantool::include`):
//! - every event carries its whole transaction, live and replayed, per event and in
//!   `batch=block`, filtered or not, and on the JSON-RPC channel;
//! - an independent indexer (Python `websockets`, four partitioned workers) gets every event
//!   exactly once and trusts each transaction by Planetmint's own rule: its id is the SHA3-256 of
//!   its canonical JSON;
//! - bad values, and the option on valid_blocks, are refused naming `include`.
//!
//! What a transaction must be is worked out here from the fixture rows and Planetmint's
//! hashing rule (`model::api::planetmint_id`, which the rebuild does not use; the Python
//! indexer checks the same rule with Python's own `json` and `hashlib`), never from the code
//! that rebuilds transactions.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use crate::support::*;
use planetmint_streams_devchain::fixtures::Planetmint253;
use planetmint_streams_model::api::planetmint_id;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

const WITHIN: Duration = Duration::from_secs(30);

/// Checks one event's `transaction` against Planetmint's hashing rule and the stored rows.
pub(crate) struct Rows {
    /// Transaction rows (`transactions` and `governance`) by id.
    transactions: HashMap<String, Value>,
    /// Output rows by transaction id.
    outputs: HashMap<String, Vec<Value>>,
}

impl Rows {
    pub(crate) fn of(fixtures: &Planetmint253) -> Self {
        let transactions = fixtures
            .transactions
            .iter()
            .chain(&fixtures.governance)
            .map(|row| (row[0].as_str().expect("id").to_owned(), row.clone()))
            .collect();
        let mut outputs: HashMap<String, Vec<Value>> = HashMap::new();
        for row in &fixtures.outputs {
            outputs
                .entry(row[5].as_str().expect("tx id").to_owned())
                .or_default()
                .push(row.clone());
        }
        Self {
            transactions,
            outputs,
        }
    }

    pub(crate) fn check(&self, event: &Value) {
        let id = event["transaction_id"].as_str().expect("transaction_id");
        let tx = &event["transaction"];
        assert_eq!(tx["id"], id, "{event}");
        assert_eq!(planetmint_id(tx), id, "not exactly what was signed: {tx}");
        let row = &self.transactions[id];
        assert_eq!(tx["operation"], row[1]);
        assert_eq!(tx["version"], row[2]);
        assert_eq!(tx["metadata"], row[3]);
        assert_eq!(
            tx["inputs"].as_array().map(Vec::len),
            row[5].as_array().map(Vec::len)
        );
        // Planetmint's API: outputs in output_index order, amounts as decimal strings.
        let mut outputs = self.outputs.get(id).cloned().unwrap_or_default();
        outputs.sort_by_key(|o| o[4].as_u64());
        let api_outputs = tx["outputs"].as_array().expect("outputs");
        assert_eq!(api_outputs.len(), outputs.len(), "{tx}");
        for (api, row) in api_outputs.iter().zip(&outputs) {
            assert_eq!(api["amount"], json!(row[1].to_string()), "{tx}");
            assert_eq!(api["public_keys"], row[2], "{tx}");
        }
        // Version 2.0: the one asset object; later versions: the list.
        if tx["version"] == "2.0" {
            assert!(tx["assets"].is_object(), "{tx}");
        } else {
            assert!(tx["assets"].is_array(), "{tx}");
        }
    }
}

/// The four stream fields of an event (the rest is `transaction`).
fn stream_fields(event: &Value) -> Value {
    json!({
        "transaction_id": event["transaction_id"], "asset_id": event["asset_id"],
        "asset_ids": event["asset_ids"], "height": event["height"],
    })
}

fn expected(fixtures: &Planetmint253) -> Vec<Value> {
    fixtures
        .heights()
        .into_iter()
        .flat_map(|h| fixtures.expected_events(h))
        .collect()
}

/// The all-ops fixture, its rows, and the events it must give.
fn all_ops() -> (Planetmint253, Rows, Vec<Value>) {
    let fixtures = Planetmint253::load_all_ops().expect("all-ops fixture");
    let rows = Rows::of(&fixtures);
    let expected = expected(&fixtures);
    assert_eq!(expected.len(), 64);
    (fixtures, rows, expected)
}

/// A node with the all-ops fixture committed, its rows and the events it must give.
async fn all_ops_node() -> (Harness, Rows, Vec<Value>) {
    let harness = Harness::start().await;
    let (fixtures, rows, expected) = all_ops();
    harness.writer().await.write_fixtures(&fixtures).await;
    (harness, rows, expected)
}

/// Every event carries its whole transaction, live and replayed, per event and in
/// `batch=block`, filtered or not, on `harness` (a node with nothing committed yet).
pub(crate) async fn every_event_carries_its_whole_transaction(harness: &impl NodeUnderTest) {
    let (fixtures, rows, expected) = all_ops();
    let base = harness.streams_base();
    let url = |query: &str| format!("{base}/api/v1/streams/valid_transactions?{query}");

    // Live: one subscriber with whole transactions, one without, one filtered with them.
    let mut live = UrlStream::connect(&url("include=transaction")).await;
    let mut plain = UrlStream::connect(&url("")).await;
    let mut votes = UrlStream::connect(&url("include=transaction&operation=VOTE")).await;
    harness.writer().await.write_fixtures(&fixtures).await;

    let got = live.take(64, WITHIN).await;
    assert_eq!(got.iter().map(stream_fields).collect::<Vec<_>>(), expected);
    got.iter().for_each(|e| rows.check(e));
    let kinds: std::collections::BTreeSet<(String, String)> = got
        .iter()
        .map(|e| {
            (
                e["transaction"]["operation"].to_string(),
                e["transaction"]["version"].to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds.len(),
        9,
        "every operation kind and both versions: {kinds:?}"
    );

    // Subscribers without the option get Planetmint's messages, unchanged.
    let got_plain = plain.take(64, WITHIN).await;
    assert_eq!(got_plain, expected);

    let want_votes: Vec<&Value> = got
        .iter()
        .filter(|e| e["transaction"]["operation"] == "VOTE")
        .collect();
    assert_eq!(want_votes.len(), 4);
    let got_votes = votes.take(4, WITHIN).await;
    assert_eq!(got_votes.iter().collect::<Vec<_>>(), want_votes);

    // Replayed from the source, one message per block: the same transactions.
    let mut replay =
        UrlStream::connect(&url("include=transaction&batch=block&from_height=0")).await;
    let batches = replay.take(8, WITHIN).await;
    let replayed: Vec<Value> = batches
        .iter()
        .flat_map(|b| b["transactions"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(
        replayed, got,
        "replayed batches carry the same whole transactions"
    );
    assert_eq!(
        harness
            .node()
            .hub
            .metrics()
            .transactions_unrebuildable
            .get(),
        0,
        "every row Planetmint's storage wrote rebuilds"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_carries_its_whole_transaction_as_the_tarantool_source_assembles_it() {
    every_event_carries_its_whole_transaction(&Harness::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_indexer_with_four_workers_trusts_every_transaction_without_the_api() {
    let harness = Harness::start().await;
    let (fixtures, rows, expected) = all_ops();
    let mut writer = harness.writer().await;
    // Half the chain is history when the indexer starts, the rest is committed live.
    let heights = fixtures.heights();
    let (history, live) = heights.split_at(heights.len() / 2);
    for &height in history {
        writer.write_fixture(&fixtures, height).await;
    }

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/indexer.py");
    let mut child = tokio::process::Command::new(python())
        .args([script, &harness.streams_base(), "4", "64", "0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python runs");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut written_live = false;
    let mut by_worker: HashMap<u64, Vec<Value>> = HashMap::new();
    let mut all = Vec::new();
    while all.len() < 64 {
        let line = tokio::time::timeout(WITHIN, lines.next_line())
            .await
            .expect("events in time")
            .expect("read")
            .expect("the indexer ended early");
        let line: Value = serde_json::from_str(&line).expect("JSON line");
        assert_eq!(line["verified"], true, "Planetmint's id rule holds: {line}");
        rows.check(&line["event"]);
        let worker = line["worker"].as_u64().expect("worker");
        let id = line["event"]["transaction_id"].as_str().expect("id");
        let number = u64::from_str_radix(&id[..16], 16).expect("hex");
        assert_eq!(
            number % 4,
            worker,
            "each event goes to its partition's worker"
        );
        by_worker
            .entry(worker)
            .or_default()
            .push(line["event"].clone());
        all.push(stream_fields(&line["event"]));
        if !written_live {
            written_live = true;
            for &height in live {
                writer.write_fixture(&fixtures, height).await;
            }
        }
    }
    let _ = child.kill().await;
    // Exactly once: the workers' events are the chain's, each worker's in chain order.
    let position: HashMap<String, usize> = expected
        .iter()
        .enumerate()
        .map(|(i, e)| (e["transaction_id"].as_str().expect("id").to_owned(), i))
        .collect();
    let mut sorted = all.clone();
    sorted.sort_by_key(|e| position[e["transaction_id"].as_str().expect("id")]);
    assert_eq!(sorted, expected);
    for (worker, events) in by_worker {
        let order: Vec<usize> = events
            .iter()
            .map(|e| position[e["transaction_id"].as_str().expect("id")])
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "worker {worker} in order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rpc_channel_takes_include_and_bad_values_name_it() {
    let (harness, rows, expected) = all_ops_node().await;
    let streams = harness.node().streams_addr.to_string();

    for query in [
        "valid_transactions?include=everything",
        "valid_transactions?include=transaction&include=none",
        "valid_blocks?include=transaction",
    ] {
        let (status, body) = get_json(&streams, &format!("/api/v1/streams/{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["parameter"], "include", "{query}: {body}");
    }

    let mut rpc = RpcClient::connect(&format!("ws://{streams}/api/v1/streams")).await;
    let answer = rpc
        .call(
            "subscribe",
            json!({"stream": "valid_blocks", "include": "transaction"}),
        )
        .await;
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    assert_eq!(answer["error"]["data"]["parameter"], "include", "{answer}");

    let answer = rpc
        .call(
            "subscribe",
            json!({"stream": "valid_transactions", "include": "transaction", "from_height": 0}),
        )
        .await;
    let id = answer["result"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_owned();
    let events = rpc.next_results(&id, expected.len()).await;
    events.iter().for_each(|e| rows.check(e));
    let got: Vec<Value> = events.iter().map(stream_fields).collect();
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscribe_command_takes_include_and_partition_in_both_modes() {
    let (harness, rows, expected) = all_ops_node().await;
    let owner = |e: &Value| {
        let id = e["transaction_id"].as_str().expect("id");
        u64::from_str_radix(&id[..16], 16).expect("hex") % 2
    };
    let run = |args: Vec<String>| async move {
        let output = tokio::time::timeout(
            WITHIN,
            tokio::process::Command::new(BIN)
                .args(&args)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("exits in time")
        .expect("runs");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
            .collect::<Vec<Value>>()
    };
    let mut union = Vec::new();
    for worker in 0..2 {
        let share: Vec<Value> = expected
            .iter()
            .filter(|e| owner(e) == worker)
            .cloned()
            .collect();
        // One stream URL per worker...
        let url_mode = run(vec![
            "subscribe".into(),
            harness.api(),
            "--from-height".into(),
            "0".into(),
            "--include".into(),
            "transaction".into(),
            "--partition".into(),
            format!("{worker}/2"),
            "--limit".into(),
            share.len().to_string(),
        ])
        .await;
        url_mode.iter().for_each(|e| rows.check(e));
        assert_eq!(
            url_mode.iter().map(stream_fields).collect::<Vec<_>>(),
            share
        );
        // ...and the same subscription over the JSON-RPC channel.
        let rpc_mode = run(vec![
            "subscribe".into(),
            harness.api(),
            "--subscribe".into(),
            format!("w=valid_transactions?include=transaction&partition={worker}/2&from_height=0"),
            "--limit".into(),
            share.len().to_string(),
        ])
        .await;
        let results: Vec<Value> = rpc_mode
            .iter()
            .map(|line| {
                assert_eq!(line["subscription"], "w", "{line}");
                line["result"].clone()
            })
            .collect();
        assert_eq!(results, url_mode, "both modes print the same events");
        union.extend(share);
    }
    assert_eq!(union.len(), expected.len());
}
