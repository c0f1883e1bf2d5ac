//! Settings of the stream server (`[streams]` in the configuration file).

use std::time::Duration;

use planetmint_streams_model::ConfigProblem;
use serde::{Deserialize, Serialize};

use crate::dialects::rpc::limits::{
    RpcLimits, DEFAULT_RPC_MAX_FILTER_VALUES, DEFAULT_RPC_MAX_SUBSCRIPTIONS,
    DEFAULT_RPC_REQUESTS_BURST, DEFAULT_RPC_REQUESTS_PER_SECOND,
};
use crate::limits::AddressLimits;
use crate::queue::QueueLimits;
use crate::subscription::ParamLimits;

/// Default bind address: Planetmint's event stream port.
pub const DEFAULT_BIND: &str = "0.0.0.0:9985";
/// Default ping interval: well under the 30 s idle timeouts of common proxies.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(15);
/// Default time a client has to answer a ping.
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(20);
/// Default most blocks waiting for one subscriber's socket.
pub const DEFAULT_QUEUE_MAX_BLOCKS: usize = 256;
/// Default most bytes waiting for one subscriber's socket.
pub const DEFAULT_QUEUE_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Default number of recent blocks kept in memory for resumes.
pub const DEFAULT_RING_BLOCKS: usize = 1024;
/// Default most bytes the recent blocks kept for resumes may hold (big blocks: fewer of them).
pub const DEFAULT_RING_MAX_BYTES: usize = 128 * 1024 * 1024;
/// Default largest frame a client may send (clients send only pings, pongs and close).
pub const DEFAULT_MAX_FRAME_SIZE: usize = 64 * 1024;
/// Default most open subscriptions.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default most open subscriptions from one IP address.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;
/// Default time a client has to send its HTTP request (upgrade included).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default frames per second a client may send (it only needs pongs, pings, close).
pub const DEFAULT_INBOUND_FRAMES_PER_SECOND: u32 = 10;
/// Default burst of frames a client may send above the rate.
pub const DEFAULT_INBOUND_FRAMES_BURST: u32 = 50;
/// Default blocks per history read.
pub const DEFAULT_REPLAY_BATCH_BLOCKS: usize = 50;
/// Default memory for history shared between replaying subscribers.
pub const DEFAULT_REPLAY_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Default history reads in flight at once (live ingest is not counted).
pub const DEFAULT_REPLAY_READS_IN_FLIGHT: usize = 1;
/// Default transactions per second replays may read from Tarantool: about a tenth of what one
/// Tarantool transaction thread reads flat out (~120,000/s of Planetmint's ~1 KB rows on 2
/// cores), so replays never take the thread Planetmint commits through.
pub const DEFAULT_REPLAY_TRANSACTIONS_PER_SECOND: u32 = 10_000;
/// Default subscribers replaying from Tarantool at once; the others wait for a turn.
pub const DEFAULT_REPLAY_MAX_CONCURRENT: usize = 32;
/// Default subscribers replaying from Tarantool at once from one address; beyond, HTTP 429.
pub const DEFAULT_REPLAY_MAX_PER_IP: usize = 8;
/// Default time unacknowledged data may wait before the kernel drops the connection.
pub const DEFAULT_TCP_USER_TIMEOUT: Duration = Duration::from_secs(60);
/// Default most subscriptions one address holds over all its connections: 64 JSON-RPC
/// connections with the most subscriptions each (about 1 KB of the node's memory apiece).
pub const DEFAULT_MAX_SUBSCRIPTIONS_PER_IP: usize = 16_384;
/// Default most filter values one address holds over all its subscriptions.
pub const DEFAULT_MAX_FILTER_VALUES_PER_IP: usize = 65_536;
/// Default most bytes queued for one address's sockets that only its connections hold
/// (answers, frames built for its filters, each queued block's bookkeeping); a block's shared
/// frames are not counted.
pub const DEFAULT_MAX_QUEUED_BYTES_PER_IP: usize = 64 * 1024 * 1024;

/// `[streams]`: the WebSocket server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamsConfig {
    /// Address to listen on.
    pub bind: String,
    /// Scheme clients use to reach the streams (`ws` or `wss`), as published in the API's
    /// root document (Planetmint's `wsserver.advertised_scheme`); default: `wss` when the
    /// node serves TLS itself, else `ws`.
    pub advertised_scheme: Option<String>,
    /// Host clients use to reach the streams (Planetmint's `wsserver.advertised_host`).
    pub advertised_host: String,
    /// Port clients use to reach the streams; defaults to the port of `bind`.
    pub advertised_port: Option<u16>,
    /// Worker threads serving connections; 0 means one per CPU.
    pub workers: usize,
    /// How often the server pings each subscriber.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// How long after a ping the pong may come before the connection is closed.
    #[serde(with = "humantime_serde")]
    pub pong_timeout: Duration,
    /// Most blocks waiting for one subscriber's socket before it counts as too slow.
    pub queue_max_blocks: usize,
    /// Most bytes waiting for one subscriber's socket before it counts as too slow.
    pub queue_max_bytes: usize,
    /// Recent blocks kept in memory to serve `from_height` without reading Tarantool.
    pub ring_blocks: usize,
    /// Most bytes those recent blocks may hold (frames, decoded block, stored rows): when
    /// blocks are big, fewer than `ring_blocks` are kept, and older resumes read Tarantool.
    pub ring_max_bytes: usize,
    /// Blocks read from Tarantool per request when replaying older history.
    pub replay_batch_blocks: usize,
    /// Most bytes of replayed history kept for other subscribers resuming from nearby heights.
    pub replay_cache_bytes: usize,
    /// History reads sent to Tarantool at once for replays.
    pub replay_reads_in_flight: usize,
    /// Transactions per second replays may read from Tarantool, on average (0: unlimited).
    pub replay_transactions_per_second: u32,
    /// Subscribers replaying from Tarantool at once; the others wait (connected) for a turn.
    pub replay_max_concurrent: usize,
    /// Subscribers replaying from Tarantool at once from one address; beyond, HTTP 429 before
    /// the upgrade.
    pub replay_max_per_ip: usize,
    /// Largest frame accepted from a client (bigger: close 1009).
    pub max_frame_size: usize,
    /// Longest accepted query string.
    pub max_query_length: usize,
    /// Most values of one repeatable filter parameter.
    pub max_filter_values: usize,
    /// On shutdown, how long connections get to drain after their close frame.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Most open subscriptions; beyond, HTTP 503 before the upgrade.
    pub max_connections: usize,
    /// Most open subscriptions from one IP address; beyond, HTTP 429 before the upgrade.
    pub max_connections_per_ip: usize,
    /// Time a client has to send its whole HTTP request (slow ones are dropped with 408).
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Frames per second read from a client on average; beyond the burst the rest waits in
    /// TCP (the client is slowed, not closed).
    pub inbound_frames_per_second: u32,
    /// Frames a client may send in a burst above the average rate.
    pub inbound_frames_burst: u32,
    /// Browser Origins allowed to subscribe; empty allows every Origin (as Planetmint does).
    /// Requests without an Origin header (non-browser clients) are always allowed.
    pub allowed_origins: Vec<String>,
    /// How long data the client does not acknowledge may wait before the kernel drops the
    /// connection (TCP_USER_TIMEOUT); bounds sockets of clients that stopped reading.
    #[serde(with = "humantime_serde")]
    pub tcp_user_timeout: Duration,
    /// Most subscriptions on one JSON-RPC connection (`/api/v1/streams`).
    pub rpc_max_subscriptions: usize,
    /// Most filter values over all subscriptions of one JSON-RPC connection.
    pub rpc_max_filter_values: usize,
    /// Frames per second read from a JSON-RPC connection on average; beyond the burst the
    /// rest waits in TCP (requests are answered later, none is refused).
    pub rpc_requests_per_second: u32,
    /// Frames a JSON-RPC connection may send in a burst above the average rate.
    pub rpc_requests_burst: u32,
    /// Most subscriptions one address holds over all its connections, whatever their
    /// protocol (a URL stream is one).
    pub max_subscriptions_per_ip: usize,
    /// Most filter values one address holds over all its subscriptions.
    pub max_filter_values_per_ip: usize,
    /// Most bytes queued for one address's sockets that only its connections hold; a
    /// connection whose push would pass it is closed as too slow.
    pub max_queued_bytes_per_ip: usize,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        Self {
            bind: DEFAULT_BIND.to_owned(),
            advertised_scheme: None,
            advertised_host: "localhost".to_owned(),
            advertised_port: None,
            workers: 0,
            ping_interval: DEFAULT_PING_INTERVAL,
            pong_timeout: DEFAULT_PONG_TIMEOUT,
            queue_max_blocks: DEFAULT_QUEUE_MAX_BLOCKS,
            queue_max_bytes: DEFAULT_QUEUE_MAX_BYTES,
            ring_blocks: DEFAULT_RING_BLOCKS,
            ring_max_bytes: DEFAULT_RING_MAX_BYTES,
            replay_batch_blocks: DEFAULT_REPLAY_BATCH_BLOCKS,
            replay_cache_bytes: DEFAULT_REPLAY_CACHE_BYTES,
            replay_reads_in_flight: DEFAULT_REPLAY_READS_IN_FLIGHT,
            replay_transactions_per_second: DEFAULT_REPLAY_TRANSACTIONS_PER_SECOND,
            replay_max_concurrent: DEFAULT_REPLAY_MAX_CONCURRENT,
            replay_max_per_ip: DEFAULT_REPLAY_MAX_PER_IP,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_query_length: ParamLimits::default().max_query_len,
            max_filter_values: ParamLimits::default().max_values,
            shutdown_grace: Duration::from_secs(5),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            inbound_frames_per_second: DEFAULT_INBOUND_FRAMES_PER_SECOND,
            inbound_frames_burst: DEFAULT_INBOUND_FRAMES_BURST,
            allowed_origins: Vec::new(),
            tcp_user_timeout: DEFAULT_TCP_USER_TIMEOUT,
            rpc_max_subscriptions: DEFAULT_RPC_MAX_SUBSCRIPTIONS,
            rpc_max_filter_values: DEFAULT_RPC_MAX_FILTER_VALUES,
            rpc_requests_per_second: DEFAULT_RPC_REQUESTS_PER_SECOND,
            rpc_requests_burst: DEFAULT_RPC_REQUESTS_BURST,
            max_subscriptions_per_ip: DEFAULT_MAX_SUBSCRIPTIONS_PER_IP,
            max_filter_values_per_ip: DEFAULT_MAX_FILTER_VALUES_PER_IP,
            max_queued_bytes_per_ip: DEFAULT_MAX_QUEUED_BYTES_PER_IP,
        }
    }
}

impl StreamsConfig {
    /// Checks the values; the error names the offending key.
    pub fn validate(&self) -> Result<(), ConfigProblem> {
        if let Some(scheme) = self
            .advertised_scheme
            .as_deref()
            .filter(|s| !matches!(*s, "ws" | "wss"))
        {
            return Err(ConfigProblem::new(
                "streams.advertised_scheme",
                format!("expected \"ws\" or \"wss\", got {scheme:?}"),
            ));
        }
        if self.advertised_host.trim().is_empty() || self.advertised_host.contains('/') {
            return Err(ConfigProblem::new(
                "streams.advertised_host",
                format!("expected a host name, got {:?}", self.advertised_host),
            ));
        }
        if self.advertised_port == Some(0) {
            return Err(ConfigProblem::new(
                "streams.advertised_port",
                "must be a port from 1 to 65535",
            ));
        }
        if self.ping_interval.is_zero() {
            return Err(ConfigProblem::new(
                "streams.ping_interval",
                "must be greater than zero",
            ));
        }
        if self.ping_interval > Duration::from_secs(300) {
            return Err(ConfigProblem::new(
                "streams.ping_interval",
                "must be at most 300s",
            ));
        }
        if self.pong_timeout.is_zero() {
            return Err(ConfigProblem::new(
                "streams.pong_timeout",
                "must be greater than zero",
            ));
        }
        for (key, value) in [
            ("streams.queue_max_blocks", self.queue_max_blocks),
            ("streams.queue_max_bytes", self.queue_max_bytes),
            ("streams.replay_batch_blocks", self.replay_batch_blocks),
            ("streams.ring_max_bytes", self.ring_max_bytes),
            ("streams.max_query_length", self.max_query_length),
            ("streams.max_filter_values", self.max_filter_values),
            (
                "streams.replay_reads_in_flight",
                self.replay_reads_in_flight,
            ),
            ("streams.replay_max_concurrent", self.replay_max_concurrent),
            ("streams.replay_max_per_ip", self.replay_max_per_ip),
        ] {
            if value == 0 {
                return Err(ConfigProblem::new(key, "must be at least 1"));
            }
        }
        for (key, value) in [
            ("streams.max_connections", self.max_connections),
            (
                "streams.max_connections_per_ip",
                self.max_connections_per_ip,
            ),
            (
                "streams.inbound_frames_per_second",
                self.inbound_frames_per_second as usize,
            ),
            (
                "streams.inbound_frames_burst",
                self.inbound_frames_burst as usize,
            ),
            ("streams.rpc_max_subscriptions", self.rpc_max_subscriptions),
            ("streams.rpc_max_filter_values", self.rpc_max_filter_values),
            (
                "streams.rpc_requests_per_second",
                self.rpc_requests_per_second as usize,
            ),
            (
                "streams.rpc_requests_burst",
                self.rpc_requests_burst as usize,
            ),
            (
                "streams.max_subscriptions_per_ip",
                self.max_subscriptions_per_ip,
            ),
            (
                "streams.max_filter_values_per_ip",
                self.max_filter_values_per_ip,
            ),
            (
                "streams.max_queued_bytes_per_ip",
                self.max_queued_bytes_per_ip,
            ),
        ] {
            if value == 0 {
                return Err(ConfigProblem::new(key, "must be at least 1"));
            }
        }
        if self.handshake_timeout.is_zero() {
            return Err(ConfigProblem::new(
                "streams.handshake_timeout",
                "must be greater than zero",
            ));
        }
        if self.tcp_user_timeout.is_zero() {
            return Err(ConfigProblem::new(
                "streams.tcp_user_timeout",
                "must be greater than zero",
            ));
        }
        if let Some(origin) = self
            .allowed_origins
            .iter()
            .find(|o| !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/'))
        {
            return Err(ConfigProblem::new(
                "streams.allowed_origins",
                format!("{origin:?} is not an origin like https://wallet.example.com (scheme and host, no path)"),
            ));
        }
        if self.max_frame_size < 125 {
            return Err(ConfigProblem::new(
                "streams.max_frame_size",
                "must be at least 125 (a control frame)",
            ));
        }
        Ok(())
    }

    /// Limits of each subscriber's queue.
    pub fn queue_limits(&self) -> QueueLimits {
        QueueLimits {
            max_blocks: self.queue_max_blocks,
            max_bytes: self.queue_max_bytes,
        }
    }

    /// Settings of history replays.
    pub fn replay_settings(&self) -> crate::replay::ReplaySettings {
        crate::replay::ReplaySettings {
            batch_blocks: self.replay_batch_blocks,
            cache_bytes: self.replay_cache_bytes,
            budget: crate::replay::BudgetLimits {
                reads_in_flight: self.replay_reads_in_flight,
                transactions_per_second: self.replay_transactions_per_second,
                max_concurrent_replays: self.replay_max_concurrent,
            },
        }
    }

    /// Limits of each JSON-RPC connection.
    pub fn rpc_limits(&self) -> RpcLimits {
        RpcLimits {
            max_subscriptions: self.rpc_max_subscriptions,
            max_filter_values: self.rpc_max_filter_values,
            requests_per_second: self.rpc_requests_per_second,
            requests_burst: self.rpc_requests_burst,
            queue: RpcLimits::connection_queue(self.queue_limits(), self.rpc_max_subscriptions),
        }
    }

    /// What each address may hold over all its connections.
    pub fn address_limits(&self) -> AddressLimits {
        AddressLimits {
            max_subscriptions: self.max_subscriptions_per_ip,
            max_filter_values: self.max_filter_values_per_ip,
            max_queued_bytes: self.max_queued_bytes_per_ip,
        }
    }

    /// Limits on stream URLs.
    pub fn param_limits(&self) -> ParamLimits {
        ParamLimits {
            max_query_len: self.max_query_length,
            max_values: self.max_filter_values,
        }
    }
}
