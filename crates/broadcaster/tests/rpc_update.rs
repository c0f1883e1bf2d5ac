//! `update` of a JSON-RPC subscription at the hub: while blocks are being published from
//! another thread, the selection is swapped under the publishing lock; every block up to the
//! returned height went out with the old filter, every later one with the new, none twice and
//! none skipped, and each message is the URL stream's message wrapped in the notification.

use std::collections::HashSet;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use planetmint_streams_broadcaster::dialects::rpc::envelope;
use planetmint_streams_broadcaster::envelope::{write, Envelope};
use planetmint_streams_broadcaster::hub::Selection;
use planetmint_streams_broadcaster::published::PublishedBlock;
use planetmint_streams_broadcaster::queue::{QueueLimits, SubscriberQueue};
use planetmint_streams_broadcaster::subscription::{Filter, Framing, Payload, StreamKind};
use planetmint_streams_broadcaster::{BroadcastMetrics, Hub};
use planetmint_streams_model::block::AssetIdsEntry;
use planetmint_streams_model::{BlockSink, CommittedBlock, CommittedTransaction};
use serde_json::{json, Value};

fn block(height: u64) -> Arc<CommittedBlock> {
    // Every block pays key A and key B once each.
    let tx = |n: u64, key: &str| CommittedTransaction {
        id: format!("{:064x}", height * 10 + n),
        operation: "CREATE".into(),
        asset_id: format!("{:064x}", height * 10 + n),
        asset_ids: vec![AssetIdsEntry::Id(format!("{:064x}", height * 10 + n))],
        output_public_keys: vec![key.into()],
        input_owners: vec![],
    };
    Arc::new(CommittedBlock {
        height,
        hash: format!("h{height}"),
        transactions: vec![tx(1, "A"), tx(2, "B")],
        chain_start: false,
        rows: None,
        committed_at: None,
    })
}

fn selection(key: &str, envelope: &Arc<dyn Envelope>) -> Arc<Selection> {
    Arc::new(Selection {
        stream: StreamKind::ValidTransactions,
        filter: Filter {
            public_keys: HashSet::from([key.to_owned()]),
            ..Filter::default()
        },
        framing: Framing::PerEvent,
        payload: Payload::Event,
        key: 7,
        envelope: Some(envelope.clone()),
    })
}

/// The JSON payloads of whole unmasked frames back to back.
fn payloads(mut bytes: &[u8]) -> Vec<Value> {
    let mut out = Vec::new();
    while bytes.len() >= 2 {
        let (len, header) = match bytes[1] & 0x7f {
            126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => panic!("no frame that large here"),
            n => (usize::from(n), 2),
        };
        out.push(serde_json::from_slice(&bytes[header..header + len]).expect("JSON"));
        bytes = &bytes[header + len..];
    }
    out
}

#[test]
fn update_switches_filters_at_the_returned_height_with_nothing_skipped_or_repeated() {
    let hub = Arc::new(Hub::new(
        16,
        BroadcastMetrics::unregistered().expect("metrics"),
    ));
    hub.start_after(0);
    let queue = Arc::new(SubscriberQueue::new(QueueLimits {
        max_blocks: 10_000,
        max_bytes: usize::MAX,
    }));
    let envelope: Arc<dyn Envelope> = Arc::new(envelope(7));
    let id = hub.attach_live(&queue, &selection("A", &envelope));
    let publisher = {
        let hub = hub.clone();
        std::thread::spawn(move || {
            for height in 1..=2000 {
                hub.publish(block(height));
            }
        })
    };
    // Swap while the publisher runs.
    while hub.last_published() < Some(500) {
        std::thread::yield_now();
    }
    let after = hub
        .update_selection(id, &selection("B", &envelope))
        .expect("attached");
    publisher.join().expect("publisher");
    assert!(
        (500..2000).contains(&after),
        "swapped mid-stream at {after}"
    );

    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut got = Vec::new();
    while let Poll::Ready(queued) = queue.poll_next(&mut cx) {
        assert_eq!(queued.subscription.map(|tag| tag.key), Some(7));
        // What the socket is given: each message wrapped when it is taken off the queue.
        let mut written = Vec::new();
        write(&queued, &mut written);
        got.extend(payloads(&written));
    }
    // What the URL stream with each filter sends, wrapped in subscription 7's notification.
    let expected: Vec<Value> = (1..=2000u64)
        .map(|height| {
            let index = if height <= after { 0 } else { 1 };
            let published = PublishedBlock::new(block(height));
            let message: Value = {
                let frames = published.transaction_frames_of(Payload::Event, &[index]);
                payloads(&frames).remove(0)
            };
            json!({"jsonrpc": "2.0", "method": "subscription",
                   "params": {"subscription": "7", "result": message}})
        })
        .collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "one message per block, none twice"
    );
    assert!(
        got == expected,
        "old filter up to {after}, the new one after"
    );
}
