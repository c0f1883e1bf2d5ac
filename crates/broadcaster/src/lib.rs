//! Broadcaster: the WebSocket server on the stream port (9985 by default) and the fan-out of
//! committed blocks to its subscribers.
//!
//! Data flows one way: the ingest hands each block to the [`Hub`] (a
//! [`BlockSink`](planetmint_streams_model::BlockSink)), which frames its messages once
//! ([`published`], [`frame`]) and pushes the shared bytes into every matching subscriber's
//! bounded [`SubscriberQueue`] ([`queue`]). Each connection's response body ([`body`]) writes
//! a whole block per write; a small task per connection ([`session`]) handles pings
//! ([`keepalive`]), inbound frames ([`utf8`]) and the close ([`close`]); [`replay`] brings
//! subscribers that resume by height up to the live stream, sharing history reads between
//! them within a read budget that protects Planetmint's Tarantool. [`subscription`] parses what a URL asks for,
//! [`server`] holds the routes and JSON errors, [`config`] the settings, [`metrics`] the
//! Prometheus metrics. [`rpc`] is the one-socket JSON-RPC channel (`/api/v1/streams`), whose
//! subscriptions go through the same hub, queues and replay.
#![forbid(unsafe_code)]

pub mod body;
pub mod close;
pub mod config;
pub mod hub;
pub mod index;
pub mod keepalive;
pub mod limits;
pub mod metrics;
pub mod published;
pub mod queue;
pub mod replay;
pub mod rpc;
pub mod selection;
pub mod server;
pub mod session;
mod shrink;
pub mod subscription;
pub mod utf8;
/// Server-to-client WebSocket frames (shared with the load tools, so it lives in the model).
pub use planetmint_streams_model::frame;

use std::sync::Arc;

use planetmint_streams_model::BlockSource;
use tokio_util::sync::CancellationToken;

pub use config::StreamsConfig;
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
    /// Open-subscription counts (total and per IP).
    pub limiter: Arc<limits::ConnectionLimiter>,
    /// Replays from the source per IP (`streams.replay_max_per_ip`).
    pub replay_limiter: Arc<limits::ConnectionLimiter>,
    /// Signed stream URLs: who may subscribe to what (`None`: open, Planetmint's behaviour).
    pub auth: Option<Arc<planetmint_streams_auth::TokenAuthority>>,
    /// Close connections (1008) when their token expires.
    pub close_on_expiry: bool,
    /// The stream catalogue (`GET /api/v1/streams` on the API port), whose entries the
    /// JSON-RPC `describe` returns.
    pub catalogue: Option<Arc<serde_json::Value>>,
}

impl StreamContext {
    /// Everything a stream server needs; the connection limiter comes from `config`.
    pub fn new(
        hub: Arc<Hub>,
        source: Arc<dyn BlockSource>,
        config: StreamsConfig,
        shutdown: CancellationToken,
    ) -> Self {
        let limiter = Arc::new(limits::ConnectionLimiter::new(
            config.max_connections,
            config.max_connections_per_ip,
        ));
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
        }
    }

    /// Answers the JSON-RPC `describe` with the entries of `catalogue`.
    pub fn with_catalogue(mut self, catalogue: serde_json::Value) -> Self {
        self.catalogue = Some(Arc::new(catalogue));
        self
    }

    /// Requires signed stream URLs checked by `authority`.
    pub fn with_auth(
        mut self,
        authority: Arc<planetmint_streams_auth::TokenAuthority>,
        close_on_expiry: bool,
    ) -> Self {
        self.auth = Some(authority);
        self.close_on_expiry = close_on_expiry;
        self
    }
}
