//! What one subscriber saw ([`Received`]) and the summaries the report is made of.
//!
//! Per message the hot path does a clock read, a JSON parse and two pushes onto vectors sized
//! in advance; duplicates and latency percentiles are computed after the run, by sorting.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use crate::commit_time;

/// Seconds from `from_ns` to `to_ns` and the events per second over them; `None` for an empty
/// or reversed span (nothing was received).
pub fn throughput(events: u64, from_ns: u64, to_ns: u64) -> Option<(f64, f64)> {
    (to_ns > from_ns).then(|| {
        let seconds = (to_ns - from_ns) as f64 / 1e9;
        (seconds, events as f64 / seconds)
    })
}

/// The first five kinds of error (in name order) with their counts, as `"Nx error"` lines.
pub fn error_lines(errors: std::collections::BTreeMap<String, usize>) -> Vec<String> {
    errors
        .into_iter()
        .take(5)
        .map(|(err, n)| format!("{n}x {err}"))
        .collect()
}

/// Latency percentiles in milliseconds (nearest-rank over all samples).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Number of samples.
    pub samples: u64,
    /// Smallest.
    pub min_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    /// Summarizes nanosecond samples (sorts them).
    pub fn from_nanos(samples: &mut [u64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let n = samples.len();
        let ms = |ns: u64| ns as f64 / 1e6;
        let rank = |q: f64| {
            let idx = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            ms(samples[idx])
        };
        let sum: u128 = samples.iter().map(|&v| u128::from(v)).sum();
        Self {
            samples: n as u64,
            min_ms: ms(samples[0]),
            mean_ms: (sum as f64 / n as f64) / 1e6,
            p50_ms: rank(0.50),
            p90_ms: rank(0.90),
            p99_ms: rank(0.99),
            p999_ms: rank(0.999),
            max_ms: ms(samples[n - 1]),
        }
    }
}

/// One message as the streams send it: a transaction event, a `batch=block` message or a
/// `valid_blocks` message. Unknown fields are ignored; every field is still parsed.
#[derive(Debug, Deserialize)]
pub struct Incoming<'a> {
    /// `valid_transactions`: the transaction.
    #[serde(borrow, default)]
    pub transaction_id: Option<std::borrow::Cow<'a, str>>,
    /// `valid_transactions`: its asset.
    #[serde(borrow, default)]
    pub asset_id: Option<std::borrow::Cow<'a, str>>,
    /// `valid_transactions`: its assets (ids, or version 2.0 asset objects).
    #[serde(borrow, default)]
    pub asset_ids: Option<Vec<planetmint_streams_model::event::AssetIdsItem<'a>>>,
    /// Every kind: the block height.
    #[serde(default)]
    pub height: Option<u64>,
    /// `batch=block`: the block's events.
    #[serde(borrow, default)]
    pub transactions: Option<Vec<Incoming<'a>>>,
    /// `valid_blocks`: the block's transaction ids.
    #[serde(borrow, default)]
    pub transaction_ids: Option<Vec<std::borrow::Cow<'a, str>>>,
    /// `valid_blocks`: the block hash.
    #[serde(borrow, default)]
    pub hash: Option<std::borrow::Cow<'a, str>>,
}

/// Everything one subscriber received, kept for analysis after the run.
#[derive(Debug, Default)]
pub struct Received {
    /// Transaction events (a `batch=block` or `valid_blocks` message counts its transactions).
    pub events: u64,
    /// WebSocket text messages.
    pub messages: u64,
    /// Binary messages (none expected).
    pub binary: u64,
    /// Text that is not JSON.
    pub parse_errors: u64,
    /// JSON that is none of the known messages.
    pub unrecognized: u64,
    /// Events whose id is not a commit-time encoding (no latency; duplicates by hash).
    pub foreign_ids: u64,
    /// Events whose commit time is later than their arrival (clock stepped back).
    pub negative_latency: u64,
    /// Arrivals with an id not above the highest seen so far (duplicates included).
    order_breaks: u64,
    /// Arrivals with a height below the highest seen so far.
    pub height_regressions: u64,
    max_id: u64,
    max_height: u64,
    /// Commit times (ids) of events, in arrival order, up to the sample cap.
    ids: Vec<u64>,
    /// Hashes of foreign ids, up to the sample cap.
    foreign: Vec<u64>,
    /// Latencies (ns), up to the sample cap.
    latencies: Vec<u64>,
    /// `batch=block` messages: arrival minus the block's earliest commit time (ns), up to the
    /// sample cap.
    block_latencies: Vec<u64>,
    cap: usize,
    /// Samples were dropped because the cap was reached.
    pub truncated: bool,
    /// Arrival time (ns since epoch) of the first and last event.
    pub first_ns: Option<u64>,
    /// See `first_ns`.
    pub last_ns: u64,
    /// Earliest commit time among the events (ns since epoch; `u64::MAX`: none).
    pub min_commit_ns: u64,
}

/// Per-subscriber verdict after the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Distinct events.
    pub unique: u64,
    /// Events received more than once (extra copies).
    pub duplicates: u64,
    /// Events that arrived after an event committed later (not counting duplicates).
    pub out_of_order: u64,
    /// Expected events that never came (`expect - unique`, when an expectation was given).
    pub lost: u64,
}

impl Received {
    /// Ready to record; `expect` sizes the buffers, `cap` bounds them.
    pub fn new(expect: Option<u64>, cap: usize) -> Self {
        let reserve = expect.map_or(0, |e| usize::try_from(e).unwrap_or(cap).min(cap));
        Self {
            ids: Vec::with_capacity(reserve),
            latencies: Vec::with_capacity(reserve),
            cap,
            min_commit_ns: u64::MAX,
            ..Self::default()
        }
    }

    /// Records one text message that arrived at `now_ns`.
    pub fn on_text(&mut self, text: &str, now_ns: u64) {
        self.messages += 1;
        let message: Incoming<'_> = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(_) => {
                self.parse_errors += 1;
                return;
            }
        };
        let height = message.height;
        if let Some(id) = message.transaction_id.as_deref() {
            self.on_event(id, height, now_ns);
        } else if let Some(batch) = &message.transactions {
            let mut first_commit = u64::MAX;
            for tx in batch {
                match tx.transaction_id.as_deref() {
                    Some(id) => {
                        if let Some(committed) = commit_time::decode(id) {
                            first_commit = first_commit.min(committed);
                        }
                        self.on_event(id, tx.height.or(height), now_ns);
                    }
                    None => self.unrecognized += 1,
                }
            }
            if first_commit != u64::MAX && self.block_latencies.len() < self.cap {
                self.block_latencies
                    .push(now_ns.saturating_sub(first_commit));
            }
        } else if let Some(ids) = &message.transaction_ids {
            for id in ids {
                self.on_event(id, height, now_ns);
            }
        } else {
            self.unrecognized += 1;
        }
    }

    fn on_event(&mut self, id: &str, height: Option<u64>, now_ns: u64) {
        self.events += 1;
        if self.first_ns.is_none() {
            self.first_ns = Some(now_ns);
        }
        self.last_ns = now_ns;
        if let Some(h) = height {
            if h < self.max_height {
                self.height_regressions += 1;
            }
            self.max_height = self.max_height.max(h);
        }
        let keep = self.ids.len() + self.foreign.len() < self.cap;
        if !keep {
            self.truncated = true;
        }
        match commit_time::decode(id) {
            Some(committed) => {
                if committed <= self.max_id {
                    self.order_breaks += 1;
                }
                self.max_id = self.max_id.max(committed);
                self.min_commit_ns = self.min_commit_ns.min(committed);
                if now_ns < committed {
                    self.negative_latency += 1;
                }
                if keep {
                    self.ids.push(committed);
                    self.latencies.push(now_ns.saturating_sub(committed));
                }
            }
            None => {
                self.foreign_ids += 1;
                if keep {
                    let mut h = DefaultHasher::new();
                    id.hash(&mut h);
                    self.foreign.push(h.finish());
                }
            }
        }
    }

    /// Counts duplicates, order breaks and loss against `expect`; sorts the id samples.
    pub fn verdict(&mut self, expect: Option<u64>) -> Verdict {
        fn repeats(values: &mut [u64]) -> u64 {
            values.sort_unstable();
            values.windows(2).filter(|w| w[0] == w[1]).count() as u64
        }
        let timed_duplicates = repeats(&mut self.ids);
        let duplicates = timed_duplicates + repeats(&mut self.foreign);
        let unique = self.events.saturating_sub(duplicates);
        // Every duplicate arrives with an id at or below the highest seen, so the order
        // breaks that are not duplicates are events delivered out of order.
        Verdict {
            unique,
            duplicates,
            out_of_order: self.order_breaks.saturating_sub(timed_duplicates),
            lost: expect.map_or(0, |e| e.saturating_sub(unique)),
        }
    }

    /// Moves the latency samples out (for merging across subscribers).
    pub fn take_latencies(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.latencies)
    }

    /// Moves the per-block latency samples of `batch=block` messages out.
    pub fn take_block_latencies(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.block_latencies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commit_time::encode;

    fn tx(id: u64, height: u64) -> String {
        format!(
            r#"{{"transaction_id":"{i}","asset_id":"{i}","asset_ids":["{i}"],"height":{height}}}"#,
            i = encode(id)
        )
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut samples: Vec<u64> = (1..=1000).map(|ms| ms * 1_000_000).collect();
        samples.reverse();
        let l = Latency::from_nanos(&mut samples);
        assert_eq!(l.samples, 1000);
        assert_eq!(l.min_ms, 1.0);
        assert_eq!(l.p50_ms, 500.0);
        assert_eq!(l.p99_ms, 990.0);
        assert_eq!(l.p999_ms, 999.0);
        assert_eq!(l.max_ms, 1000.0);
        assert_eq!(l.mean_ms, 500.5);
        assert_eq!(Latency::from_nanos(&mut []), Latency::default());
    }

    #[test]
    fn counts_latency_loss_duplicates_and_order() {
        let mut r = Received::new(Some(6), 1000);
        r.on_text(&tx(100, 1), 150);
        r.on_text(&tx(101, 1), 160);
        r.on_text(&tx(103, 2), 170);
        r.on_text(&tx(102, 1), 180); // out of order (and a height regression)
        r.on_text(&tx(103, 2), 190); // duplicate
        assert_eq!(r.events, 5);
        assert_eq!(r.height_regressions, 1);
        assert_eq!(r.min_commit_ns, 100);
        let v = r.verdict(Some(6));
        assert_eq!(
            v,
            Verdict {
                unique: 4,
                duplicates: 1,
                out_of_order: 1,
                lost: 2
            }
        );
        let mut lat = r.take_latencies();
        let l = Latency::from_nanos(&mut lat);
        assert_eq!(l.samples, 5);
        assert_eq!(l.min_ms, 50.0 / 1e6);
        assert_eq!(l.max_ms, 87.0 / 1e6);
    }

    #[test]
    fn reads_batches_blocks_and_foreign_ids() {
        let mut r = Received::new(None, 1000);
        let batch = format!(
            r#"{{"height":3,"transactions":[{},{}]}}"#,
            tx(1, 3),
            tx(2, 3)
        );
        r.on_text(&batch, 10);
        assert_eq!(
            r.take_block_latencies(),
            vec![9],
            "one block sample: arrival minus the block's earliest commit"
        );
        let block = format!(
            r#"{{"height":4,"hash":"ab","transaction_ids":["{}","{}"]}}"#,
            encode(3),
            "f".repeat(64)
        );
        r.on_text(&block, 11);
        r.on_text("not json", 12);
        r.on_text(r#"{"hello":1}"#, 13);
        assert_eq!(r.messages, 4);
        assert_eq!(r.events, 4);
        assert_eq!(r.foreign_ids, 1);
        assert_eq!(r.parse_errors, 1);
        assert_eq!(r.unrecognized, 1);
        r.on_text(
            &format!(r#"{{"transaction_id":"{}","height":5}}"#, "f".repeat(64)),
            14,
        );
        let v = r.verdict(None);
        assert_eq!(v.duplicates, 1, "a repeated foreign id is a duplicate");
        assert_eq!(v.unique, 4);
    }

    #[test]
    fn the_sample_cap_bounds_memory() {
        let mut r = Received::new(Some(10), 3);
        for i in 0..10 {
            r.on_text(&tx(i + 1, 1), 100);
        }
        assert_eq!(r.events, 10);
        assert!(r.truncated);
        assert_eq!(r.take_latencies().len(), 3);
    }
}
