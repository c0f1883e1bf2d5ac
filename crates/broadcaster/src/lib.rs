//! Broadcaster: the stream server on the stream port (9985 by default) and the fan-out of
//! committed blocks to its subscribers.
//!
//! Data flows one way: the ingest hands each block to the [`Hub`] (a
//! [`BlockSink`](planetmint_streams_model::BlockSink)), which frames its messages once
//! ([`published`], [`frame`]) and pushes the shared bytes into every matching subscription's
//! connection queue ([`queue`]); the connection's response body ([`engine::body`]) writes a
//! whole block per write, wrapped by the subscription's [`envelope`] where its dialect wraps
//! messages. [`replay`] brings subscriptions that resume by height up to the live stream,
//! sharing history reads between them within a read budget that protects Planetmint's
//! Tarantool.
//!
//! Every way in is a dialect over one connection engine ([`engine`]): [`admission`] admits a
//! request the same way whatever its protocol, [`server`] upgrades it and hands it to the
//! driver, and a dialect ([`dialects`]: the URL streams, the JSON-RPC channel) only turns
//! client messages into the connection's operations and frames what the client is told.
//! [`subscription`] declares what a stream takes and parses what a URL asks for,
//! [`catalogue`] describes the streams and protocols from those declarations, [`limits`]
//! holds the connection, address and frame budgets, [`config`] the settings, [`metrics`]
//! the Prometheus metrics, [`http`] the paths and JSON errors.
#![forbid(unsafe_code)]

pub mod admission;
pub mod catalogue;
pub mod config;
pub mod dialects;
pub mod engine;
pub mod envelope;
pub mod frame;
pub mod groups;
pub mod http;
pub mod hub;
pub mod index;
pub mod limits;
pub mod metrics;
pub mod published;
pub mod queue;
pub mod replay;
pub mod selection;
pub mod server;
mod shrink;
pub mod subscription;

use std::sync::Arc;

use planetmint_streams_model::BlockSource;
use tokio_util::sync::CancellationToken;

pub use config::StreamsConfig;
/// WebSocket close codes the server sends.
pub use engine::close::codes as close_codes;
pub use hub::Hub;
pub use metrics::BroadcastMetrics;
pub use queue::SubscriberQueue;

/// What every connection of the stream server shares.
pub struct StreamContext {
    /// The fan-out point.
    pub hub: Arc<Hub>,
    /// Where history comes from for resumes older than the in-memory ring.
    pub source: Arc<dyn BlockSource>,
    /// Brings resuming subscribers up to the live stream, sharing history reads.
    pub replay: replay::Replayer,
    /// Settings.
    pub config: StreamsConfig,
    /// Cancelled when the server shuts down: every session closes with 1001.
    pub shutdown: CancellationToken,
    /// Open connections (total and per IP), and each address's budget.
    pub limiter: Arc<limits::ConnectionLimiter>,
    /// Replays from the source per IP (`streams.replay_max_per_ip`).
    pub replay_limiter: Arc<limits::ConnectionLimiter>,
    /// Signed stream URLs: who may subscribe to what (`None`: open, Planetmint's behaviour).
    pub auth: Option<planetmint_streams_auth::Gatekeeper>,
    /// Close connections (1008) when their token expires.
    pub close_on_expiry: bool,
    /// The stream catalogue (`GET /api/v1/streams` on the API port), whose entries the
    /// JSON-RPC `describe` returns.
    pub catalogue: Option<Arc<serde_json::Value>>,
    /// Consumer groups (stream-sea's `groupId`).
    pub groups: groups::Groups,
}

impl StreamContext {
    /// Everything a stream server needs; the connection limiter comes from `config`.
    pub fn new(
        hub: Arc<Hub>,
        source: Arc<dyn BlockSource>,
        config: StreamsConfig,
        shutdown: CancellationToken,
    ) -> Self {
        let limiter = Arc::new(
            limits::ConnectionLimiter::with_address_limits(
                config.max_connections,
                config.max_connections_per_ip,
                config.address_limits(),
            )
            .counting_queue_refusals(
                hub.metrics()
                    .address_limit_refusals
                    .with_label_values(&["queued_bytes"]),
            ),
        );
        let replay_limiter = Arc::new(limits::ConnectionLimiter::new(
            usize::MAX,
            config.replay_max_per_ip,
        ));
        let replay = replay::Replayer::new(hub.clone(), source.clone(), config.replay_settings());
        Self {
            hub,
            source,
            replay,
            config,
            shutdown,
            limiter,
            replay_limiter,
            auth: None,
            close_on_expiry: false,
            catalogue: None,
            groups: groups::Groups::default(),
        }
    }

    /// Answers the JSON-RPC `describe` with the entries of `catalogue`.
    pub fn with_catalogue(mut self, catalogue: serde_json::Value) -> Self {
        self.catalogue = Some(Arc::new(catalogue));
        self
    }

    /// Requires credentials (stream tokens, configured clients, JWTs) checked by
    /// `gatekeeper`.
    pub fn with_auth(
        mut self,
        authority: planetmint_streams_auth::Gatekeeper,
        close_on_expiry: bool,
    ) -> Self {
        self.auth = Some(authority);
        self.close_on_expiry = close_on_expiry;
        self
    }
}
