//! Prometheus metrics of the broadcaster, named after what they measure.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::subscription::StreamKind;

/// Every metric the broadcaster exports.
#[derive(Debug, Clone)]
pub struct BroadcastMetrics {
    /// `planetmint_streams_subscribers{stream}`: open subscriptions.
    pub subscribers: IntGaugeVec,
    /// `planetmint_streams_connections_total{stream}`: subscriptions opened.
    pub connections: IntCounterVec,
    /// `planetmint_streams_events_sent_total{stream}`: messages handed to sockets.
    pub events_sent: IntCounterVec,
    /// `planetmint_streams_bytes_sent_total{stream}`: frame bytes handed to sockets.
    pub bytes_sent: IntCounterVec,
    /// `planetmint_streams_batches_sent_total{stream}`: block batches (one write each).
    pub batches_sent: IntCounterVec,
    /// `planetmint_streams_disconnects_total{reason}`: closed subscriptions by reason.
    pub disconnects: IntCounterVec,
    /// `planetmint_streams_rejected_connections_total{reason}`: refused before the upgrade.
    pub rejected: IntCounterVec,
    /// `planetmint_streams_replay_requests_total{stream}`: subscriptions with `from_height`.
    pub replay_requests: IntCounterVec,
    /// `planetmint_streams_replayed_blocks_total{from}`: history blocks queued, by where they
    /// came from (`memory` ring or `source`).
    pub replayed_blocks: IntCounterVec,
    /// `planetmint_streams_replay_source_reads_total`: history reads sent to the source for
    /// replays (shared by every subscriber that needed them).
    pub replay_source_reads: IntCounter,
    /// `planetmint_streams_replay_source_blocks_total`: blocks those reads returned.
    pub replay_source_blocks: IntCounter,
    /// `planetmint_streams_replay_source_errors_total{kind}`: failed history reads (retried).
    pub replay_source_errors: IntCounterVec,
    /// `planetmint_streams_replay_cache_hits_total`: history segments a replay took from the
    /// shared cache or a read already in flight instead of reading them again.
    pub replay_cache_hits: IntCounter,
    /// `planetmint_streams_replay_cache_bytes`: memory held by the shared history cache.
    pub replay_cache_bytes: IntGauge,
    /// `planetmint_streams_replay_waits_total{reason}`: times a replay waited for the read
    /// budget (`reads_in_flight`, `read_rate`, `concurrent_replays`).
    pub replay_waits: IntCounterVec,
    /// `planetmint_streams_blocks_published_total`: blocks fanned out.
    pub blocks_published: IntCounter,
    /// `planetmint_streams_published_height`: last height fanned out.
    pub published_height: IntGauge,
    /// `planetmint_streams_commit_to_send_seconds`: from Tarantool committing a block (when
    /// the source knows when; else from the ingest reading it) to its batch being handed to a
    /// subscriber's socket.
    pub commit_to_send: Histogram,
    /// `planetmint_streams_rpc_connections`: open JSON-RPC connections.
    pub rpc_connections: IntGauge,
    /// `planetmint_streams_rpc_subscriptions{stream}`: open subscriptions on JSON-RPC
    /// connections (also counted in `planetmint_streams_subscribers`).
    pub rpc_subscriptions: IntGaugeVec,
    /// `planetmint_streams_rpc_requests_total{method, code}`: JSON-RPC requests by method
    /// (`none` when unreadable) and answer (`ok` or the error code).
    pub rpc_requests: IntCounterVec,
    /// `planetmint_streams_credential_refusals_total{reason}`: credentials refused on every
    /// way in (before an upgrade, and by `authenticate` on the channel), by reason.
    pub credential_refusals: IntCounterVec,
    /// `planetmint_streams_address_limit_refusals_total{limit}`: subscriptions refused, and
    /// queues closed, because one address reached a limit across all its connections
    /// (`subscriptions`, `filter_values`, `queued_bytes`).
    pub address_limit_refusals: IntCounterVec,
    /// `planetmint_streams_transactions_unrebuildable_total`: transactions sent with
    /// `"transaction": null` (`include=transaction`) because their stored rows could not be
    /// rebuilt into the document Planetmint's API serves.
    pub transactions_unrebuildable: IntCounter,
}

impl BroadcastMetrics {
    /// Metrics registered in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self::unregistered()?;
        registry.register(Box::new(metrics.subscribers.clone()))?;
        registry.register(Box::new(metrics.connections.clone()))?;
        registry.register(Box::new(metrics.events_sent.clone()))?;
        registry.register(Box::new(metrics.bytes_sent.clone()))?;
        registry.register(Box::new(metrics.batches_sent.clone()))?;
        registry.register(Box::new(metrics.disconnects.clone()))?;
        registry.register(Box::new(metrics.rejected.clone()))?;
        registry.register(Box::new(metrics.replay_requests.clone()))?;
        registry.register(Box::new(metrics.replayed_blocks.clone()))?;
        registry.register(Box::new(metrics.replay_source_reads.clone()))?;
        registry.register(Box::new(metrics.replay_source_blocks.clone()))?;
        registry.register(Box::new(metrics.replay_source_errors.clone()))?;
        registry.register(Box::new(metrics.replay_cache_hits.clone()))?;
        registry.register(Box::new(metrics.replay_cache_bytes.clone()))?;
        registry.register(Box::new(metrics.replay_waits.clone()))?;
        registry.register(Box::new(metrics.blocks_published.clone()))?;
        registry.register(Box::new(metrics.published_height.clone()))?;
        registry.register(Box::new(metrics.commit_to_send.clone()))?;
        registry.register(Box::new(metrics.rpc_connections.clone()))?;
        registry.register(Box::new(metrics.rpc_subscriptions.clone()))?;
        registry.register(Box::new(metrics.rpc_requests.clone()))?;
        registry.register(Box::new(metrics.transactions_unrebuildable.clone()))?;
        registry.register(Box::new(metrics.address_limit_refusals.clone()))?;
        registry.register(Box::new(metrics.credential_refusals.clone()))?;
        Ok(metrics)
    }

    /// Metrics not exported anywhere (tests).
    pub fn unregistered() -> prometheus::Result<Self> {
        let by_stream =
            |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["stream"]);
        let metrics = Self {
            subscribers: IntGaugeVec::new(
                Opts::new("planetmint_streams_subscribers", "Open subscriptions per stream"),
                &["stream"],
            )?,
            connections: by_stream("planetmint_streams_connections_total", "Subscriptions opened per stream")?,
            events_sent: by_stream("planetmint_streams_events_sent_total", "Messages handed to subscriber sockets")?,
            bytes_sent: by_stream("planetmint_streams_bytes_sent_total", "WebSocket frame bytes handed to subscriber sockets")?,
            batches_sent: by_stream("planetmint_streams_batches_sent_total", "Block batches handed to subscriber sockets (one write each)")?,
            disconnects: IntCounterVec::new(
                Opts::new(
                    "planetmint_streams_disconnects_total",
                    "Closed subscriptions by reason (client, too_slow, pong_timeout, frame_too_big, protocol_error, invalid_text, history_unavailable, shutdown, socket)",
                ),
                &["reason"],
            )?,
            rejected: IntCounterVec::new(
                Opts::new(
                    "planetmint_streams_rejected_connections_total",
                    "Requests to stream paths refused before the upgrade, by reason (bad_parameter, origin, not_websocket, server_full, too_many_from_ip, too_many_replays_from_ip)",
                ),
                &["reason"],
            )?,
            replay_requests: by_stream("planetmint_streams_replay_requests_total", "Subscriptions that asked for from_height")?,
            replayed_blocks: IntCounterVec::new(
                Opts::new("planetmint_streams_replayed_blocks_total", "History blocks queued for resuming subscribers, by origin"),
                &["from"],
            )?,
            replay_source_reads: IntCounter::new(
                "planetmint_streams_replay_source_reads_total",
                "History reads sent to the source for replays (each shared by every subscriber that needed it)",
            )?,
            replay_source_blocks: IntCounter::new(
                "planetmint_streams_replay_source_blocks_total",
                "Blocks returned by history reads for replays",
            )?,
            replay_source_errors: IntCounterVec::new(
                Opts::new("planetmint_streams_replay_source_errors_total", "Failed history reads for replays, retried with backoff, by kind"),
                &["kind"],
            )?,
            replay_cache_hits: IntCounter::new(
                "planetmint_streams_replay_cache_hits_total",
                "History segments a replay took from the shared cache or a read in flight instead of reading them again",
            )?,
            replay_cache_bytes: IntGauge::new(
                "planetmint_streams_replay_cache_bytes",
                "Approximate memory held by the shared history cache",
            )?,
            replay_waits: IntCounterVec::new(
                Opts::new(
                    "planetmint_streams_replay_waits_total",
                    "Times a replay waited for the read budget, by reason (reads_in_flight, read_rate, concurrent_replays)",
                ),
                &["reason"],
            )?,
            blocks_published: IntCounter::new("planetmint_streams_blocks_published_total", "Committed blocks fanned out")?,
            published_height: IntGauge::new("planetmint_streams_published_height", "Last block height fanned out")?,
            commit_to_send: Histogram::with_opts(
                HistogramOpts::new(
                    "planetmint_streams_commit_to_send_seconds",
                    "Time from Tarantool committing a block (else from the ingest reading it) to its batch reaching a subscriber's socket",
                )
                .buckets(vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            )?,
            rpc_connections: IntGauge::new("planetmint_streams_rpc_connections", "Open JSON-RPC stream connections")?,
            rpc_subscriptions: IntGaugeVec::new(
                Opts::new("planetmint_streams_rpc_subscriptions", "Open subscriptions on JSON-RPC connections, per stream"),
                &["stream"],
            )?,
            rpc_requests: IntCounterVec::new(
                Opts::new(
                    "planetmint_streams_rpc_requests_total",
                    "JSON-RPC requests by method (authenticate, subscribe, unsubscribe, update, describe; none when unreadable) and answer (ok or the JSON-RPC error code)",
                ),
                &["method", "code"],
            )?,
            credential_refusals: IntCounterVec::new(
                Opts::new(
                    "planetmint_streams_credential_refusals_total",
                    "Credentials refused on every way in (before an upgrade, and by authenticate on the channel), by reason",
                ),
                &["reason"],
            )?,
            address_limit_refusals: IntCounterVec::new(
                Opts::new(
                    "planetmint_streams_address_limit_refusals_total",
                    "Subscriptions refused, and queues closed, because one address reached a limit across all its connections, by limit (subscriptions, filter_values, queued_bytes)",
                ),
                &["limit"],
            )?,
            transactions_unrebuildable: IntCounter::new(
                "planetmint_streams_transactions_unrebuildable_total",
                "Transactions sent with \"transaction\": null (include=transaction) because their stored rows could not be rebuilt",
            )?,
        };
        for limit in ["subscriptions", "filter_values", "queued_bytes"] {
            metrics.address_limit_refusals.with_label_values(&[limit]);
        }
        // Make every stream's series visible from the start.
        for reason in ["reads_in_flight", "read_rate", "concurrent_replays"] {
            metrics.replay_waits.with_label_values(&[reason]);
        }
        for stream in StreamKind::ALL {
            metrics
                .rpc_subscriptions
                .with_label_values(&[stream.name()]);
            metrics.subscribers.with_label_values(&[stream.name()]);
            metrics.events_sent.with_label_values(&[stream.name()]);
            metrics.bytes_sent.with_label_values(&[stream.name()]);
        }
        Ok(metrics)
    }
}

/// One open connection or subscription counted in a gauge: counted when made, uncounted when
/// dropped. Made in the upgrade handler, so a client whose handshake was answered is already
/// counted when it scrapes `/metrics`; dropped with the session, whatever way it ends.
#[derive(Debug)]
pub(crate) struct GaugeCount(IntGauge);

impl GaugeCount {
    /// Counts one more in `gauge`.
    pub(crate) fn new(gauge: IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for GaugeCount {
    fn drop(&mut self) {
        self.0.dec();
    }
}
