//! The tier's Prometheus metrics, registered in the node's registry (`/metrics`).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// `reason` labels of [`JetStreamMetrics::publish_errors`].
pub mod reason {
    /// Another publisher got there first (optimistic concurrency): resynced, nothing lost.
    pub const WRONG_LAST_SEQUENCE: &str = "wrong_last_sequence";
    /// No acknowledgement in time.
    pub const TIMEOUT: &str = "timeout";
    /// NATS could not be reached, or the connection broke.
    pub const UNAVAILABLE: &str = "unavailable";
    /// A stream could not be created, or an existing one does not fit.
    pub const STREAM: &str = "stream";
    /// Reading history from the source failed.
    pub const SOURCE: &str = "source";
    /// JetStream refused the message for another reason.
    pub const REFUSED: &str = "refused";
    /// Every reason, for tests and dashboards.
    pub const ALL: [&str; 6] = [
        WRONG_LAST_SEQUENCE,
        TIMEOUT,
        UNAVAILABLE,
        STREAM,
        SOURCE,
        REFUSED,
    ];
}

/// Buckets of the commit-to-acknowledgement latency, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

/// What the publisher reports.
#[derive(Debug, Clone)]
pub struct JetStreamMetrics {
    /// `planetmint_streams_jetstream_published_events_total{stream}`: messages JetStream
    /// stored (duplicates it dropped not counted).
    pub published_events: IntCounterVec,
    /// `planetmint_streams_jetstream_already_stored_events_total{stream}`: events JetStream
    /// already held (another node, or a publish whose acknowledgement was lost) and dropped
    /// by `Nats-Msg-Id`.
    pub already_stored_events: IntCounterVec,
    /// `planetmint_streams_jetstream_publish_errors_total{reason}`.
    pub publish_errors: IntCounterVec,
    /// `planetmint_streams_jetstream_published_height`: every event up to this height is in
    /// both streams.
    pub published_height: IntGauge,
    /// `planetmint_streams_jetstream_head_height`: the highest committed height the publisher
    /// knows of.
    pub head_height: IntGauge,
    /// `planetmint_streams_jetstream_lag_blocks`: head minus published height.
    pub lag_blocks: IntGauge,
    /// `planetmint_streams_jetstream_up`: 1 while connected with both streams checked.
    pub up: IntGauge,
    /// `planetmint_streams_jetstream_live_dropped_blocks_total`: live blocks the publisher's
    /// queue had no room for (read again from the source).
    pub live_dropped_blocks: IntCounter,
    /// `planetmint_streams_jetstream_catchup_blocks_total`: blocks read from the source.
    pub catchup_blocks: IntCounter,
    /// `planetmint_streams_jetstream_resyncs_total`: times the publisher re-read where the
    /// streams stand.
    pub resyncs: IntCounter,
    /// `planetmint_streams_jetstream_commit_to_ack_seconds`: from the block's commit in
    /// Tarantool to JetStream's acknowledgement of its last event (live blocks).
    pub commit_to_ack: Histogram,
}

impl JetStreamMetrics {
    /// Metrics registered in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self::unregistered()?;
        registry.register(Box::new(metrics.published_events.clone()))?;
        registry.register(Box::new(metrics.already_stored_events.clone()))?;
        registry.register(Box::new(metrics.publish_errors.clone()))?;
        registry.register(Box::new(metrics.published_height.clone()))?;
        registry.register(Box::new(metrics.head_height.clone()))?;
        registry.register(Box::new(metrics.lag_blocks.clone()))?;
        registry.register(Box::new(metrics.up.clone()))?;
        registry.register(Box::new(metrics.live_dropped_blocks.clone()))?;
        registry.register(Box::new(metrics.catchup_blocks.clone()))?;
        registry.register(Box::new(metrics.resyncs.clone()))?;
        registry.register(Box::new(metrics.commit_to_ack.clone()))?;
        Ok(metrics)
    }

    /// Metrics exported nowhere (tests).
    pub fn unregistered() -> prometheus::Result<Self> {
        let publish_errors = IntCounterVec::new(
            Opts::new(
                "planetmint_streams_jetstream_publish_errors_total",
                "Failed JetStream publishes and setup steps, by reason",
            ),
            &["reason"],
        )?;
        for reason in reason::ALL {
            publish_errors.with_label_values(&[reason]);
        }
        let published_events = IntCounterVec::new(
            Opts::new(
                "planetmint_streams_jetstream_published_events_total",
                "Events stored in JetStream by this node, by stream",
            ),
            &["stream"],
        )?;
        let already_stored_events = IntCounterVec::new(
            Opts::new(
                "planetmint_streams_jetstream_already_stored_events_total",
                "Events JetStream already held and dropped as duplicates (Nats-Msg-Id), by stream",
            ),
            &["stream"],
        )?;
        for stream in planetmint_streams_model::vocabulary::StreamKind::ALL {
            published_events.with_label_values(&[stream.name()]);
            already_stored_events.with_label_values(&[stream.name()]);
        }
        Ok(Self {
            published_events,
            already_stored_events,
            publish_errors,
            published_height: IntGauge::new(
                "planetmint_streams_jetstream_published_height",
                "Every event up to this block height is in both JetStream streams",
            )?,
            head_height: IntGauge::new(
                "planetmint_streams_jetstream_head_height",
                "Highest committed block height the JetStream publisher knows of",
            )?,
            lag_blocks: IntGauge::new(
                "planetmint_streams_jetstream_lag_blocks",
                "Committed head height minus the height published into JetStream",
            )?,
            up: IntGauge::new(
                "planetmint_streams_jetstream_up",
                "1 while connected to NATS with both streams checked, 0 otherwise",
            )?,
            live_dropped_blocks: IntCounter::new(
                "planetmint_streams_jetstream_live_dropped_blocks_total",
                "Live blocks the publisher's queue had no room for (read again from Tarantool)",
            )?,
            catchup_blocks: IntCounter::new(
                "planetmint_streams_jetstream_catchup_blocks_total",
                "Blocks the publisher read from Tarantool to catch up",
            )?,
            resyncs: IntCounter::new(
                "planetmint_streams_jetstream_resyncs_total",
                "Times the publisher re-read from JetStream where both streams stand",
            )?,
            commit_to_ack: Histogram::with_opts(
                HistogramOpts::new(
                    "planetmint_streams_jetstream_commit_to_ack_seconds",
                    "From a live block's commit in Tarantool to JetStream's acknowledgement of its last event",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )?,
        })
    }

    /// Counts one failure.
    pub fn error(&self, reason: &'static str) {
        self.publish_errors.with_label_values(&[reason]).inc();
    }

    /// Records the heights and the lag between them.
    pub fn heights(&self, published: u64, head: u64) {
        let published = i64::try_from(published).unwrap_or(i64::MAX);
        let head = i64::try_from(head).unwrap_or(i64::MAX).max(published);
        self.published_height.set(published);
        self.head_height.set(head);
        self.lag_blocks.set(head - published);
    }
}
