//! Fan-out cost per block with many filtered subscribers (not a test: prints numbers).
//!
//! `cargo bench -p planetmint-streams-broadcaster --bench fanout`
//!
//! Scenario: 10,000 wallets, each subscribed to `valid_transactions?public_key=<its own key>`;
//! blocks of 100 transactions with 1 to 3 output keys each, 10 % of them paying a subscribed
//! wallet. Compared: the hub's indexed fan-out, the obvious way (check every subscriber's
//! filter against every transaction), and 10,000 unfiltered subscribers (pushing shared bytes).

use std::collections::HashSet;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use planetmint_streams_broadcaster::hub::Selection;
use planetmint_streams_broadcaster::published::PublishedBlock;
use planetmint_streams_broadcaster::queue::QueueLimits;
use planetmint_streams_broadcaster::subscription::{Filter, Framing, Payload, StreamKind};
use planetmint_streams_broadcaster::{BroadcastMetrics, Hub, SubscriberQueue};
use planetmint_streams_model::{AssetIdsEntry, BlockSink, CommittedBlock, CommittedTransaction};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SUBSCRIBERS: usize = 10_000;
const BLOCKS: u64 = 200;
const TXS: usize = 100;

fn key(i: u64) -> String {
    format!("wallet-key-{i:032}")
}

fn block(rng: &mut StdRng, height: u64) -> Arc<CommittedBlock> {
    let transactions = (0..TXS)
        .map(|n| {
            let outputs = 1 + rng.gen::<u64>() % 3;
            let output_public_keys = (0..outputs)
                .map(|_| {
                    if rng.gen::<u64>().is_multiple_of(10) {
                        key(rng.gen::<u64>() % SUBSCRIBERS as u64)
                    } else {
                        format!("stranger-{}", rng.gen::<u64>())
                    }
                })
                .collect();
            let id = format!("{height:032x}{n:032x}");
            CommittedTransaction {
                asset_id: id.clone(),
                asset_ids: vec![AssetIdsEntry::Id(id.clone())],
                id,
                operation: "TRANSFER".into(),
                output_public_keys,
                input_owners: vec![format!("stranger-{}", rng.gen::<u64>())],
            }
        })
        .collect();
    Arc::new(CommittedBlock::synthetic(height, transactions))
}

fn drain(queues: &[Arc<SubscriberQueue>]) -> usize {
    let mut cx = Context::from_waker(Waker::noop());
    let mut n = 0;
    for q in queues {
        while q.poll_next(&mut cx).is_ready() {
            n += 1;
        }
    }
    n
}

fn report(name: &str, mut times: Vec<Duration>, delivered: usize) {
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    let p = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "{name:<44} mean {:>9.1} us  p50 {:>9.1} us  p99 {:>9.1} us  per block; {delivered} batches delivered",
        mean.as_secs_f64() * 1e6,
        p(0.5).as_secs_f64() * 1e6,
        p(0.99).as_secs_f64() * 1e6,
    );
}

fn selections(filtered: bool) -> Vec<Arc<Selection>> {
    (0..SUBSCRIBERS as u64)
        .map(|i| {
            let mut filter = Filter::default();
            if filtered {
                filter.public_keys = HashSet::from([key(i)]);
            }
            Arc::new(Selection {
                stream: StreamKind::ValidTransactions,
                filter,
                framing: Framing::PerEvent,
                payload: Payload::Event,
                key: 0,
                envelope: None,
            })
        })
        .collect()
}

fn run_hub(name: &str, filtered: bool) {
    let hub = Hub::new(16, BroadcastMetrics::unregistered().expect("metrics"));
    hub.start_after(0);
    let limits = QueueLimits {
        max_blocks: 4096,
        max_bytes: 1 << 30,
    };
    let queues: Vec<Arc<SubscriberQueue>> = selections(filtered)
        .iter()
        .map(|selection| {
            let queue = Arc::new(SubscriberQueue::new(limits));
            hub.attach_live(&queue, selection);
            queue
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(42);
    let blocks: Vec<_> = (1..=BLOCKS).map(|h| block(&mut rng, h)).collect();
    let mut times = Vec::with_capacity(blocks.len());
    let mut delivered = 0;
    for block in blocks {
        let start = Instant::now();
        hub.publish(block);
        times.push(start.elapsed());
        delivered += drain(&queues);
    }
    report(name, times, delivered);
}

fn run_naive() {
    let selections = selections(true);
    let mut rng = StdRng::seed_from_u64(42);
    let mut times = Vec::new();
    let mut delivered = 0;
    for height in 1..=BLOCKS {
        let published = PublishedBlock::new(block(&mut rng, height));
        let start = Instant::now();
        for selection in &selections {
            if selection.frames(&published).is_some() {
                delivered += 1;
            }
        }
        times.push(start.elapsed());
    }
    report(
        "10k public_key filters, every filter checked",
        times,
        delivered,
    );
}

fn main() {
    println!(
        "fan-out of one block of {TXS} transactions to {SUBSCRIBERS} subscribers ({BLOCKS} blocks)"
    );
    run_hub("10k public_key filters, indexed (the hub)", true);
    run_naive();
    run_hub("10k unfiltered subscribers (shared bytes)", false);
}
