//! Planetmint fidelity end to end, on a real Tarantool with real WebSocket clients:
//! - every operation kind and both transaction versions, as Planetmint 2.5.3's own storage code
//!   wrote them (`tests/fixtures/planetmint-2.5.3-all-ops`), stream message for message as
//!   Planetmint's own code computes them (`expected-*.jsonl`), live and replayed, per event and
//!   per block, with an `asset_id` filter;
//! - rows that grow trailing fields stream normally; a row that cannot be used holds the stream
//!   (visibly: `/ready`, metric) and it resumes by itself, losing nothing, once the row is fixed;
//! - the empty block row `init_chain` stores after a chain migration gets no `valid_blocks`
//!   message, as with Planetmint.
//!
//! Expected messages come from the fixture files, never from the server's own rules.

use std::time::Duration;

use crate::support::*;
use planetmint_streams_devchain::fixtures::Planetmint253;
use planetmint_streams_devchain::generate::ChainGenerator;
use planetmint_streams_devchain::writer::PlanetmintWriter;
use planetmint_streams_ingest::tarantool::ReadMode;
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(15);

/// The four stream fields of an expected-transactions line.
fn event(e: &Value) -> Value {
    json!({
        "transaction_id": e["transaction_id"], "asset_id": e["asset_id"],
        "asset_ids": e["asset_ids"], "height": e["height"],
    })
}

/// The documented `asset_id=` rule, written out independently of the server: the event's
/// `asset_id`, an id in `asset_ids`, or the `id` of a version 2.0 asset object there.
fn names_asset(e: &Value, asset: &str) -> bool {
    e["asset_id"] == asset
        || e["asset_ids"].as_array().into_iter().flatten().any(|a| {
            a.as_str() == Some(asset) || a.get("id").and_then(Value::as_str) == Some(asset)
        })
}

/// `batch=block` messages for the events (already in block order).
fn batches(events: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for e in events {
        match out.last_mut() {
            Some(batch) if batch["height"] == e["height"] => {
                if let Some(list) = batch["transactions"].as_array_mut() {
                    list.push(e.clone());
                }
            }
            _ => out.push(json!({"height": e["height"], "transactions": [e.clone()]})),
        }
    }
    out
}

async fn write_all(fixtures: &Planetmint253, writer: &PlanetmintWriter) {
    for height in fixtures.heights() {
        fixtures.write_block(writer, height).await.expect("write");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_kind_streams_as_planetmint_computes_it() {
    let harness = TarantoolHarness::start().await;
    let fixtures = Planetmint253::load_all_ops().expect("all-ops fixture");
    let writer = PlanetmintWriter::connect(&harness.tarantool.address())
        .await
        .expect("writer");
    let base = harness.streams_base();
    let expected: Vec<Value> = fixtures.expected_transactions.iter().map(event).collect();
    assert_eq!(expected.len(), 64);

    // An asset named by transactions of several kinds: the validator election (its own id)
    // and its votes; and a v2.0 asset, named in a v2.0 TRANSFER only through its object.
    let election = fixtures
        .expected_transactions
        .iter()
        .find(|e| e["operation"] == "VALIDATOR_ELECTION")
        .and_then(|e| e["transaction_id"].as_str())
        .expect("an election")
        .to_owned();
    let v2_asset = fixtures
        .expected_transactions
        .iter()
        .find(|e| e["operation"] == "TRANSFER" && e["version"] == "2.0")
        .and_then(|e| e["asset_ids"][0]["id"].as_str())
        .expect("a v2.0 TRANSFER")
        .to_owned();
    let filtered = |asset: &str| -> Vec<Value> {
        expected
            .iter()
            .filter(|e| names_asset(e, asset))
            .cloned()
            .collect()
    };
    let election_events = filtered(&election);
    let v2_events = filtered(&v2_asset);
    assert!(election_events.len() >= 5, "the election and its votes");
    assert!(v2_events.len() >= 2, "the v2.0 CREATE and its TRANSFER");

    let tx_url = format!("{base}/api/v1/streams/valid_transactions");
    let blocks_url = format!("{base}/api/v1/streams/valid_blocks");
    let mut live = UrlStream::connect(&tx_url).await;
    let mut live_blocks = UrlStream::connect(&blocks_url).await;
    let mut live_batches = UrlStream::connect(&format!("{tx_url}?batch=block")).await;
    let mut by_election = UrlStream::connect(&format!("{tx_url}?asset_id={election}")).await;
    let mut by_v2_asset = UrlStream::connect(&format!(
        "{tx_url}?asset_id={v2_asset}&batch=block&_=cache-buster"
    ))
    .await;
    write_all(&fixtures, &writer).await;

    assert_eq!(live.take(64, WITHIN).await, expected);
    assert_eq!(
        live_blocks
            .take(fixtures.expected_blocks.len(), WITHIN)
            .await,
        fixtures.expected_blocks
    );
    let expected_batches = batches(&expected);
    assert_eq!(
        live_batches.take(expected_batches.len(), WITHIN).await,
        expected_batches
    );
    assert_eq!(
        by_election.take(election_events.len(), WITHIN).await,
        election_events
    );
    let v2_batches = batches(&v2_events);
    assert_eq!(by_v2_asset.take(v2_batches.len(), WITHIN).await, v2_batches);

    // Replay of what is already committed: the same messages.
    let mut replay = UrlStream::connect(&format!("{tx_url}?from_height=0")).await;
    assert_eq!(replay.take(64, WITHIN).await, expected);
    let mut replay_blocks = UrlStream::connect(&format!("{blocks_url}?from_height=0")).await;
    assert_eq!(
        replay_blocks
            .take(fixtures.expected_blocks.len(), WITHIN)
            .await,
        fixtures.expected_blocks
    );
    let from = 3;
    let later: Vec<Value> = expected
        .iter()
        .filter(|e| e["height"].as_u64() > Some(from))
        .cloned()
        .collect();
    let later_batches = batches(&later);
    let mut replay_batches =
        UrlStream::connect(&format!("{tx_url}?from_height={from}&batch=block")).await;
    assert_eq!(
        replay_batches.take(later_batches.len(), WITHIN).await,
        later_batches
    );
    let mut replay_filtered =
        UrlStream::connect(&format!("{tx_url}?from_height=0&asset_id={election}")).await;
    assert_eq!(
        replay_filtered.take(election_events.len(), WITHIN).await,
        election_events
    );
    // Nothing more than that on any of them.
    for ws in [&mut live, &mut live_blocks, &mut by_election, &mut replay] {
        ws.assert_silent(Duration::from_millis(300)).await;
    }
}

/// A row of a space as the fixture holds it, with `edit` applied.
fn edited(row: &Value, edit: impl FnOnce(&mut Vec<Value>)) -> rmpv::Value {
    let mut fields = row.as_array().cloned().expect("a tuple");
    edit(&mut fields);
    rmpv::ext::to_value(Value::Array(fields)).expect("msgpack")
}

async fn space_id(writer: &PlanetmintWriter, name: &str) -> u32 {
    writer.space_id(name).await.expect("space exists")
}

async fn bad_row_holds_the_stream_until_fixed(mode: ReadMode) {
    let harness = TarantoolHarness::start_with(|config| config.tarantool.mode = mode).await;
    let api = harness.node().api_addr.to_string();
    let fixtures = Planetmint253::load_all_ops().expect("all-ops fixture");
    let writer = PlanetmintWriter::connect(&harness.tarantool.address())
        .await
        .expect("writer");
    let transactions = space_id(&writer, "transactions").await;
    let outputs = space_id(&writer, "outputs").await;
    let blocks = space_id(&writer, "blocks").await;
    let events = |height: u64| -> Vec<Value> { fixtures.expected_events(height) };
    let mut ws = UrlStream::connect(&format!(
        "{}/api/v1/streams/valid_transactions",
        harness.streams_base()
    ))
    .await;

    // Rows of a grown schema (extra trailing fields) stream as usual.
    fixtures.write_block(&writer, 0).await.expect("genesis");
    fixtures.write_block(&writer, 1).await.expect("block 1");
    let block1 = &fixtures.blocks[1];
    for id in block1[3].as_array().expect("ids") {
        if let Some(row) = fixtures.transactions.iter().find(|t| t[0] == *id) {
            let grown = edited(row, |f| {
                f.push(json!("a new field"));
                f.push(json!({"nested": [1, 2]}));
            });
            writer
                .replace_row(transactions, &grown)
                .await
                .expect("grown tx");
        }
    }
    for row in fixtures
        .outputs
        .iter()
        .filter(|o| block1[3].as_array().is_some_and(|ids| ids.contains(&o[5])))
    {
        writer
            .replace_row(outputs, &edited(row, |f| f.push(json!(7))))
            .await
            .expect("grown output");
    }
    writer
        .replace_row(blocks, &edited(block1, |f| f.push(json!("trailing"))))
        .await
        .expect("grown block row");
    assert_eq!(ws.take(events(1).len(), WITHIN).await, events(1));

    // Block 2 holds a transaction row whose inputs' owners are not a list of keys: Tarantool
    // accepts it (the field is not indexed), the stream cannot use it. Written as Planetmint
    // writes a block (transactions, outputs, then the block row), then block 3 after it.
    let block2 = &fixtures.blocks[2];
    let ids2: Vec<&Value> = block2[3].as_array().expect("ids").iter().collect();
    let bad_id = ids2
        .iter()
        .find(|id| fixtures.transactions.iter().any(|t| t[0] == ***id))
        .and_then(|id| id.as_str())
        .expect("a transactions row in block 2")
        .to_owned();
    let good_row = fixtures
        .transactions
        .iter()
        .find(|t| t[0] == bad_id.as_str())
        .expect("row");
    let bad_row = edited(good_row, |f| {
        if let Some(input) = f[5].get_mut(0) {
            input["owners_before"] = json!(42);
        }
    });
    let rows2: Vec<rmpv::Value> = ids2
        .iter()
        .filter_map(|id| {
            fixtures
                .transactions
                .iter()
                .chain(&fixtures.governance)
                .find(|t| t[0] == **id)
        })
        .map(|row| {
            if row[0] == bad_id.as_str() {
                bad_row.clone()
            } else {
                edited(row, |_| {})
            }
        })
        .collect();
    let outputs2: Vec<rmpv::Value> = fixtures
        .outputs
        .iter()
        .filter(|o| ids2.contains(&&o[5]))
        .map(|o| edited(o, |_| {}))
        .collect();
    writer
        .write_rows(&rows2, &outputs2, &edited(block2, |_| {}))
        .await
        .expect("block 2 with a bad row");
    fixtures.write_block(&writer, 3).await.expect("block 3");

    // /ready turns 503 naming the space, key and problem; the metric counts it.
    let deadline = tokio::time::Instant::now() + WITHIN;
    let reason = loop {
        let (status, body) = get_json(&api, "/ready").await;
        if status == 503 && body["reason"].as_str().is_some_and(|r| r.contains(&bad_id)) {
            break body["reason"].as_str().unwrap_or_default().to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "never 503: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(reason.contains("`transactions`"), "{reason}");
    assert!(reason.contains("after height 1"), "{reason}");
    let (_, metrics) = http_get(&api, "/metrics").await;
    assert!(
        metric(
            &metrics,
            "planetmint_streams_unusable_rows_total",
            "space=\"transactions\""
        ) >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "planetmint_streams_source_stalled", ""),
        1.0
    );
    // Nothing of block 2 or 3 was sent, and block 2 was not skipped.
    ws.assert_silent(Duration::from_millis(300)).await;

    // Fix the row: the stream resumes by itself with blocks 2 and 3, nothing lost.
    writer
        .replace_row(transactions, &edited(good_row, |_| {}))
        .await
        .expect("fix row");
    let mut resumed = events(2);
    resumed.extend(events(3));
    assert_eq!(ws.take(resumed.len(), WITHIN).await, resumed);
    harness.wait_ready().await;
    let (_, metrics) = http_get(&api, "/metrics").await;
    assert_eq!(
        metric(&metrics, "planetmint_streams_source_stalled", ""),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_holds_the_pushed_stream_visibly_until_fixed() {
    bad_row_holds_the_stream_until_fixed(ReadMode::Push).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_holds_the_polled_stream_visibly_until_fixed() {
    bad_row_holds_the_stream_until_fixed(ReadMode::Poll).await;
}

async fn no_block_message_for_init_chain(mode: ReadMode) {
    let harness = TarantoolHarness::start_with(|config| config.tarantool.mode = mode).await;
    let writer = PlanetmintWriter::connect(&harness.tarantool.address())
        .await
        .expect("writer");
    let mut chain = ChainGenerator::new(5, 1, 4);
    let url = format!("{}/api/v1/streams/valid_blocks", harness.streams_base());
    let mut live = UrlStream::connect(&url).await;
    let mut written = Vec::new();
    for _ in 0..2 {
        let block = chain.block(3);
        writer.write_block(&block).await.expect("write");
        written.push(block);
    }
    // A chain migration concluded at height 2: Planetmint's `init_chain` for the new chain
    // stores an empty block row at height 3, repeating the app hash, and publishes nothing.
    let app_hash = written[1].app_hash.clone();
    writer
        .migrate_chain("test-chain-migrated-at-height-2", 3, &app_hash, "abc0")
        .await
        .expect("migration rows");
    chain.skip_heights(1);
    for _ in 0..2 {
        let block = chain.block(2);
        writer.write_block(&block).await.expect("write");
        written.push(block);
    }
    let heights = |messages: &[Value]| -> Vec<u64> {
        messages
            .iter()
            .filter_map(|m| m["height"].as_u64())
            .collect()
    };
    assert_eq!(heights(&live.take(4, WITHIN).await), vec![1, 2, 4, 5]);
    live.assert_silent(Duration::from_millis(300)).await;
    let mut replay = UrlStream::connect(&format!("{url}?from_height=0")).await;
    assert_eq!(heights(&replay.take(4, WITHIN).await), vec![1, 2, 4, 5]);
    replay.assert_silent(Duration::from_millis(300)).await;
    // An ordinary empty block is still announced.
    let empty = chain.block(0);
    writer.write_block(&empty).await.expect("write");
    assert_eq!(heights(&live.take(1, WITHIN).await), vec![6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_valid_blocks_message_for_the_row_init_chain_stores_pushed() {
    no_block_message_for_init_chain(ReadMode::Push).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_valid_blocks_message_for_the_row_init_chain_stores_polled() {
    no_block_message_for_init_chain(ReadMode::Poll).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_blocks_of_every_kind_stream_with_the_fields_they_were_built_with() {
    let harness = TarantoolHarness::start().await;
    let writer = PlanetmintWriter::connect(&harness.tarantool.address())
        .await
        .expect("writer");
    let mut ws = UrlStream::connect(&format!(
        "{}/api/v1/streams/valid_transactions",
        harness.streams_base()
    ))
    .await;
    let mut chain = ChainGenerator::new(9, 1, 6).with_all_operations();
    let blocks: Vec<_> = (0..12).map(|_| chain.block(8)).collect();
    for block in &blocks {
        writer.write_block(block).await.expect("write");
    }
    let expected = expected_events(&blocks);
    let operations: std::collections::BTreeSet<&str> = blocks
        .iter()
        .flat_map(|b| &b.transactions)
        .map(|tx| tx.operation.as_str())
        .collect();
    assert_eq!(operations.len(), 7, "every operation kind: {operations:?}");
    assert_eq!(ws.take(expected.len(), WITHIN).await, expected);
}
