//! `partition=i/n` end to end: four workers together receive every
//! event of the chain exactly once, each its share in chain order, across replay and live;
//! a worker resumes by height on its own; valid_blocks are shared by height; the JSON-RPC
//! channel takes the same option; bad values are refused naming `partition`. Each worker's
//! share is computed here from the transaction ids, independently of the server's code.

use std::time::Duration;

use crate::support::*;
use serde_json::{json, Value};

const WORKERS: u64 = 4;

/// The worker (of `n`) that owns an event: its transaction id's first 16 hex digits as a
/// number, modulo `n`.
fn owner(event: &Value, n: u64) -> u64 {
    let id = event["transaction_id"].as_str().expect("transaction_id");
    u64::from_str_radix(&id[..16], 16).expect("hex id") % n
}

fn share(events: &[Value], i: u64, n: u64) -> Vec<Value> {
    events
        .iter()
        .filter(|e| owner(e, n) == i)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_get_every_event_exactly_once_and_each_resumes_by_height() {
    let harness = Harness::start().await;
    let base = harness.streams_base();
    let history = chain(191, 1, 12, 9);
    let live = chain(192, 13, 12, 9);
    let all: Vec<_> = history.iter().chain(&live).cloned().collect();
    let expected = expected_events(&all);
    let (writer, written) = spawn_writer(harness.store(), history, Duration::from_millis(0));
    writer.await.expect("history written");
    assert_eq!(*written.borrow(), 12);

    // Workers replay from 0 while the rest of the chain is committed.
    let mut workers = Vec::new();
    for i in 0..WORKERS {
        workers.push(
            UrlStream::connect(&format!(
                "{base}/api/v1/streams/valid_transactions?partition={i}/{WORKERS}&from_height=0"
            ))
            .await,
        );
    }
    let (writer, _) = spawn_writer(harness.store(), live, Duration::from_millis(5));
    let mut received = 0;
    for (i, ws) in workers.iter_mut().enumerate() {
        let want = share(&expected, i as u64, WORKERS);
        assert!(!want.is_empty(), "worker {i} has a share of the chain");
        let got = ws.take(want.len(), Duration::from_secs(30)).await;
        assert!(got == want, "worker {i}: its share, in chain order");
        received += got.len();
    }
    writer.await.expect("live written");
    assert_eq!(
        received,
        expected.len(),
        "together: every event exactly once"
    );
    for ws in &mut workers {
        ws.assert_silent(Duration::from_millis(200)).await;
    }

    // Worker 2 stopped after height 15 and resumes alone.
    let mut resumed = UrlStream::connect(&format!(
        "{base}/api/v1/streams/valid_transactions?partition=2/{WORKERS}&from_height=15"
    ))
    .await;
    let want: Vec<Value> = share(&expected, 2, WORKERS)
        .into_iter()
        .filter(|e| e["height"].as_u64() > Some(15))
        .collect();
    assert_eq!(
        resumed.take(want.len(), Duration::from_secs(30)).await,
        want
    );

    // batch=block: each worker's blocks hold only its share.
    let mut batched = UrlStream::connect(&format!(
        "{base}/api/v1/streams/valid_transactions?partition=1/{WORKERS}&batch=block&from_height=20"
    ))
    .await;
    let want: Vec<Value> = all
        .iter()
        .filter(|b| b.height > 20)
        .filter_map(|b| {
            let events = share(&expected_events(std::slice::from_ref(b)), 1, WORKERS);
            (!events.is_empty()).then(|| json!({"height": b.height, "transactions": events}))
        })
        .collect();
    assert_eq!(
        batched.take(want.len(), Duration::from_secs(30)).await,
        want
    );

    // valid_blocks: by height.
    let mut blocks = UrlStream::connect(&format!(
        "{base}/api/v1/streams/valid_blocks?partition=2/3&from_height=0"
    ))
    .await;
    let got = blocks.take(8, Duration::from_secs(30)).await;
    let heights: Vec<u64> = got.iter().filter_map(|b| b["height"].as_u64()).collect();
    assert_eq!(heights, vec![2, 5, 8, 11, 14, 17, 20, 23]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rpc_channel_takes_partition_and_bad_values_name_it() {
    let harness = Harness::start().await;
    let streams = harness.node().streams_addr.to_string();
    let blocks = chain(193, 1, 6, 8);
    let expected = expected_events(&blocks);
    let (writer, _) = spawn_writer(harness.store(), blocks, Duration::from_millis(0));
    writer.await.expect("written");

    for query in [
        "partition=4/4",
        "partition=0/1025",
        "partition=1",
        "partition=a/4",
    ] {
        let (status, body) = get_json(
            &streams,
            &format!("/api/v1/streams/valid_transactions?{query}"),
        )
        .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["parameter"], "partition", "{query}: {body}");
    }

    let mut rpc = RpcClient::connect(&format!("ws://{streams}/api/v1/streams")).await;
    let answer = rpc
        .call(
            "subscribe",
            json!({"stream": "valid_transactions", "partition": "9/4"}),
        )
        .await;
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    assert_eq!(
        answer["error"]["data"]["parameter"], "partition",
        "{answer}"
    );

    let answer = rpc
        .call(
            "subscribe",
            json!({"stream": "valid_transactions", "partition": "3/4", "from_height": 0}),
        )
        .await;
    let id = answer["result"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_owned();
    let want = share(&expected, 3, 4);
    let got = rpc.next_results(&id, want.len()).await;
    assert_eq!(
        got, want,
        "the RPC subscription gets what partition=3/4 does"
    );
}
