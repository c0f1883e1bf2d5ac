//! Settings of the HTTP API (`[api]` in the configuration file).

use std::time::Duration;

use planetmint_streams_model::ConfigProblem;
use serde::{Deserialize, Serialize};

/// Default bind address: Planetmint's HTTP API port.
pub const DEFAULT_BIND: &str = "0.0.0.0:9984";
/// Default largest forwarded request body: 1 MiB, Tendermint's default `max_tx_bytes`, so no
/// transaction Planetmint could commit is refused.
pub const DEFAULT_UPSTREAM_MAX_BODY: usize = 1024 * 1024;
/// Default time a whole request body may take to arrive (from the end of its headers).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on open connections to the API port.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default cap on open connections to the API port from one client (an IPv4 address or an
/// IPv6 /64).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 64;

/// `[api]`: discovery, health, readiness and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on.
    pub bind: String,
    /// `/ready` answers 503 when the last streamed height is more than this many blocks
    /// behind Tarantool's head.
    pub ready_max_lag_blocks: u64,
    /// Worker threads (the API also forwards Planetmint's requests in drop-in mode).
    pub workers: usize,
    /// Drop-in mode: Planetmint's own API (e.g. `http://127.0.0.1:9986`). Every request the API
    /// does not answer itself is forwarded there unchanged, and the root documents are
    /// Planetmint's with our stream URLs.
    pub upstream: Option<String>,
    /// Limit for one forwarded request (until the response headers arrive).
    #[serde(with = "humantime_serde")]
    pub upstream_timeout: Duration,
    /// Largest request body forwarded upstream, in bytes (bigger: HTTP 413).
    pub upstream_max_body: usize,
    /// How long a forwarded request's body may take to arrive, from the end of its headers
    /// (slower: HTTP 408 and the connection is closed).
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Open connections to the API port, in all (beyond: HTTP 503 and close).
    pub max_connections: usize,
    /// Open connections to the API port from one client, an IPv4 address or an IPv6 /64
    /// (beyond: HTTP 429 and close).
    pub max_connections_per_ip: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            bind: DEFAULT_BIND.to_owned(),
            ready_max_lag_blocks: 10,
            workers: 2,
            upstream: None,
            upstream_timeout: Duration::from_secs(10),
            upstream_max_body: DEFAULT_UPSTREAM_MAX_BODY,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
        }
    }
}

impl ApiConfig {
    /// Checks the values; the error names the offending key.
    pub fn validate(&self) -> Result<(), ConfigProblem> {
        if self.bind.trim().is_empty() {
            return Err(ConfigProblem::new(
                "api.bind",
                "must be an address such as 0.0.0.0:9984",
            ));
        }
        if let Some(upstream) = &self.upstream {
            let rest = upstream
                .strip_prefix("http://")
                .or_else(|| upstream.strip_prefix("https://"));
            if rest.is_none_or(|host| host.is_empty() || host.starts_with('/')) {
                return Err(ConfigProblem::new(
                    "api.upstream",
                    format!("expected http://host:port, got {upstream:?}"),
                ));
            }
            if upstream.starts_with("https://") {
                return Err(ConfigProblem::new(
                    "api.upstream",
                    "https upstreams are not supported: point it at Planetmint's plain HTTP port",
                ));
            }
        }
        if self.upstream_timeout.is_zero() {
            return Err(ConfigProblem::new(
                "api.upstream_timeout",
                "must be greater than zero",
            ));
        }
        if self.upstream_max_body == 0 {
            return Err(ConfigProblem::new(
                "api.upstream_max_body",
                "must be at least 1",
            ));
        }
        if self.body_timeout.is_zero() {
            return Err(ConfigProblem::new(
                "api.body_timeout",
                "must be greater than zero",
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigProblem::new(
                "api.max_connections",
                "must be at least 1",
            ));
        }
        if self.max_connections_per_ip == 0 {
            return Err(ConfigProblem::new(
                "api.max_connections_per_ip",
                "must be at least 1",
            ));
        }
        if self.max_connections_per_ip > self.max_connections {
            return Err(ConfigProblem::new(
                "api.max_connections_per_ip",
                format!(
                    "must not exceed api.max_connections ({})",
                    self.max_connections
                ),
            ));
        }
        Ok(())
    }
}
