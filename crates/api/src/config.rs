//! Settings of the HTTP API (`[api]` in the configuration file).

use serde::{Deserialize, Serialize};

/// Default bind address: Planetmint's HTTP API port.
pub const DEFAULT_BIND: &str = "0.0.0.0:9984";

/// `[api]`: discovery, health, readiness and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on.
    pub bind: String,
    /// `/ready` answers 503 when the last streamed height is more than this many blocks
    /// behind Tarantool's head.
    pub ready_max_lag_blocks: u64,
    /// Worker threads; 0 means one.
    pub workers: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            bind: DEFAULT_BIND.to_owned(),
            ready_max_lag_blocks: 10,
            workers: 1,
        }
    }
}

impl ApiConfig {
    /// Checks the values; the error names the offending key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.bind.trim().is_empty() {
            return Err(("api.bind", "must be an address such as 0.0.0.0:9984".into()));
        }
        Ok(())
    }
}
