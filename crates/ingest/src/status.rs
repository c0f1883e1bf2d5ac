//! What the ingest knows about its source, shared with readiness checks and `/metrics`.
//!
//! The values are Prometheus gauges and counters (atomics), so reading them for `/ready`
//! and exporting them cost nothing extra.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Source reachability and heights, updated by the follower.
#[derive(Debug)]
pub struct IngestStatus {
    reachable: AtomicBool,
    started: AtomicBool,
    /// `planetmint_streams_source_head_height`: highest committed height in Tarantool.
    pub head_height: IntGauge,
    /// `planetmint_streams_streamed_height`: last height handed to the broadcaster.
    pub streamed_height: IntGauge,
    /// `planetmint_streams_source_up`: 1 while the source answers.
    pub source_up: IntGauge,
    /// `planetmint_streams_blocks_ingested_total`.
    pub blocks_ingested: IntCounter,
    /// `planetmint_streams_transactions_ingested_total`.
    pub transactions_ingested: IntCounter,
    /// `planetmint_streams_source_errors_total{kind}`.
    pub source_errors: IntCounterVec,
    /// `planetmint_streams_source_reconnects_total`: connections re-established after a loss.
    pub source_reconnects: IntCounter,
    /// `planetmint_streams_source_failovers_total`: switches between Tarantool endpoints.
    pub source_failovers: IntCounter,
    /// `planetmint_streams_unusable_rows_total{space}`: reads held back by a stored row the
    /// stream cannot use (counted at every retry while it stays so).
    pub unusable_rows: IntCounterVec,
    /// `planetmint_streams_source_stalled`: 1 while streaming waits on an unusable row.
    pub stalled: IntGauge,
    stalled_reason: Mutex<Option<String>>,
}

impl IngestStatus {
    /// Status whose metrics are registered in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let status = Self::unregistered()?;
        registry.register(Box::new(status.head_height.clone()))?;
        registry.register(Box::new(status.streamed_height.clone()))?;
        registry.register(Box::new(status.source_up.clone()))?;
        registry.register(Box::new(status.blocks_ingested.clone()))?;
        registry.register(Box::new(status.transactions_ingested.clone()))?;
        registry.register(Box::new(status.source_errors.clone()))?;
        registry.register(Box::new(status.source_reconnects.clone()))?;
        registry.register(Box::new(status.source_failovers.clone()))?;
        registry.register(Box::new(status.unusable_rows.clone()))?;
        registry.register(Box::new(status.stalled.clone()))?;
        Ok(status)
    }

    /// Status not exported anywhere (tests).
    pub fn unregistered() -> prometheus::Result<Self> {
        Ok(Self {
            reachable: AtomicBool::new(false),
            started: AtomicBool::new(false),
            head_height: IntGauge::new(
                "planetmint_streams_source_head_height",
                "Highest committed block height in Tarantool, as last read",
            )?,
            streamed_height: IntGauge::new(
                "planetmint_streams_streamed_height",
                "Last block height handed to the broadcaster",
            )?,
            source_up: IntGauge::new(
                "planetmint_streams_source_up",
                "1 while Tarantool answers the ingest, 0 otherwise",
            )?,
            blocks_ingested: IntCounter::new(
                "planetmint_streams_blocks_ingested_total",
                "Committed blocks read from Tarantool and handed to the broadcaster",
            )?,
            transactions_ingested: IntCounter::new(
                "planetmint_streams_transactions_ingested_total",
                "Transactions of the blocks handed to the broadcaster",
            )?,
            source_errors: IntCounterVec::new(
                Opts::new(
                    "planetmint_streams_source_errors_total",
                    "Failed reads from Tarantool, by kind (unavailable, refused, corrupt)",
                ),
                &["kind"],
            )?,
            source_reconnects: IntCounter::new(
                "planetmint_streams_source_reconnects_total",
                "Times the ingest got Tarantool back after losing it",
            )?,
            source_failovers: IntCounter::new(
                "planetmint_streams_source_failovers_total",
                "Switches between configured Tarantool endpoints (tarantool.address, tarantool.fallbacks)",
            )?,
            unusable_rows: IntCounterVec::new(
                Opts::new(
                    "planetmint_streams_unusable_rows_total",
                    "Reads held back by a stored row the stream cannot use, by space (counted at every retry)",
                ),
                &["space"],
            )?,
            stalled: IntGauge::new(
                "planetmint_streams_source_stalled",
                "1 while streaming waits for an unusable row to become readable, 0 otherwise",
            )?,
            stalled_reason: Mutex::new(None),
        })
    }

    /// Whether the last request to the source succeeded.
    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Acquire)
    }

    /// Whether the follower knows where it starts (it has reached the source once).
    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// Why streaming is held back, while a stored row cannot be used.
    pub fn stalled_reason(&self) -> Option<String> {
        self.stalled_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records that streaming waits on an unusable row in `space`; returns the previous reason.
    pub(crate) fn mark_stalled(&self, space: &str, reason: String) -> Option<String> {
        self.unusable_rows.with_label_values(&[space]).inc();
        self.stalled.set(1);
        self.stalled_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(reason)
    }

    /// Records that reading works again; returns the reason it was held back, if it was.
    pub(crate) fn clear_stalled(&self) -> Option<String> {
        let previous = self
            .stalled_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if previous.is_some() {
            self.stalled.set(0);
        }
        previous
    }

    /// Blocks between the source's head and the last streamed height.
    pub fn lag_blocks(&self) -> u64 {
        let head = self.head_height.get();
        let streamed = self.streamed_height.get();
        u64::try_from(head.saturating_sub(streamed)).unwrap_or(0)
    }

    pub(crate) fn mark_started(&self, cursor: u64) {
        self.streamed_height.set(gauge_value(cursor));
        self.started.store(true, Ordering::Release);
    }

    /// Records a successful read; returns true when the source was unreachable before.
    pub(crate) fn mark_reachable(&self, head: u64) -> bool {
        self.head_height.set(gauge_value(head));
        self.source_up.set(1);
        let was = self.reachable.swap(true, Ordering::AcqRel);
        !was
    }

    /// Records a failed read; returns true when the source was reachable before.
    pub(crate) fn mark_failed(&self, kind: &str, unreachable: bool) -> bool {
        self.source_errors.with_label_values(&[kind]).inc();
        if unreachable {
            self.source_up.set(0);
            return self.reachable.swap(false, Ordering::AcqRel);
        }
        false
    }
}

fn gauge_value(height: u64) -> i64 {
    i64::try_from(height).unwrap_or(i64::MAX)
}
