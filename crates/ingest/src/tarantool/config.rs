//! Settings for reading Planetmint's Tarantool (`[tarantool]` in the configuration file).

use std::time::Duration;

use planetmint_streams_model::ConfigProblem;
use serde::{Deserialize, Serialize, Serializer};

/// What a [`Password`] shows instead of itself.
pub const REDACTED: &str = "<redacted>";

/// The Tarantool password from configuration. `Debug` and `Serialize` show [`REDACTED`], so
/// `--check-config`, `{:?}` and logs never print it; only [`Password::expose`] gives it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The password, for authenticating to Tarantool.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Password {
    fn from(text: &str) -> Self {
        Self(text.to_owned())
    }
}

impl From<String> for Password {
    fn from(text: String) -> Self {
        Self(text)
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Password({REDACTED})")
    }
}

impl Serialize for Password {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// How new blocks are noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadMode {
    /// Server-side long-poll when `eval` is allowed, else polling.
    #[default]
    Auto,
    /// Server-side long-poll only; fail if it cannot be installed.
    Push,
    /// Plain selects every `poll_interval` (read-only users, no `eval`).
    Poll,
}

/// Default IPROTO address of Planetmint's Tarantool.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:3303";

/// `[tarantool]`: where Planetmint's Tarantool is and how to read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TarantoolConfig {
    /// IPROTO address, `host:port` (the preferred endpoint, e.g. a local read replica).
    pub address: String,
    /// Further endpoints tried in order when `address` is unavailable (e.g. the master).
    pub fallbacks: Vec<String>,
    /// How often a more preferred endpoint is probed to take it back after a failover.
    #[serde(with = "humantime_serde")]
    pub failback_interval: Duration,
    /// User to authenticate as; none means `guest` (Planetmint's default).
    pub user: Option<String>,
    /// Password of `user` (shown as `<redacted>` by `--check-config` and in logs).
    pub password: Option<Password>,
    /// How new blocks are noticed.
    pub mode: ReadMode,
    /// Limit for one connection attempt (TCP connect and greeting).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Limit for one request (on top of the long-poll wait).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long one long-poll request waits on the server for a new block.
    #[serde(with = "humantime_serde")]
    pub long_poll: Duration,
    /// Pause between reads in `poll` mode.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Most blocks read per request.
    pub batch_blocks: usize,
    /// About how many transactions one request may carry (at least one block is always read).
    pub batch_transactions: usize,
    /// First pause after a failed connection attempt.
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    /// Longest pause between connection attempts.
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
}

impl Default for TarantoolConfig {
    fn default() -> Self {
        Self {
            address: DEFAULT_ADDRESS.to_owned(),
            fallbacks: Vec::new(),
            failback_interval: Duration::from_secs(30),
            user: None,
            password: None,
            mode: ReadMode::Auto,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            long_poll: Duration::from_secs(1),
            poll_interval: Duration::from_millis(100),
            batch_blocks: 10,
            batch_transactions: 2000,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
        }
    }
}

impl TarantoolConfig {
    /// Checks the values; the error names the offending key.
    pub fn validate(&self) -> Result<(), ConfigProblem> {
        if self.address.trim().is_empty() || !self.address.contains(':') {
            return Err(ConfigProblem::new(
                "tarantool.address",
                format!("expected host:port, got {:?}", self.address),
            ));
        }
        if let Some(bad) = self
            .fallbacks
            .iter()
            .find(|a| a.trim().is_empty() || !a.contains(':'))
        {
            return Err(ConfigProblem::new(
                "tarantool.fallbacks",
                format!("expected host:port entries, got {bad:?}"),
            ));
        }
        if self.failback_interval.is_zero() {
            return Err(ConfigProblem::new(
                "tarantool.failback_interval",
                "must be greater than zero",
            ));
        }
        let positive = [
            ("tarantool.connect_timeout", self.connect_timeout),
            ("tarantool.request_timeout", self.request_timeout),
            ("tarantool.poll_interval", self.poll_interval),
            ("tarantool.reconnect_min", self.reconnect_min),
        ];
        for (key, value) in positive {
            if value.is_zero() {
                return Err(ConfigProblem::new(key, "must be greater than zero"));
            }
        }
        if self.reconnect_max < self.reconnect_min {
            return Err(ConfigProblem::new(
                "tarantool.reconnect_max",
                "must not be below reconnect_min",
            ));
        }
        if self.batch_blocks == 0 {
            return Err(ConfigProblem::new(
                "tarantool.batch_blocks",
                "must be at least 1",
            ));
        }
        if self.batch_transactions == 0 {
            return Err(ConfigProblem::new(
                "tarantool.batch_transactions",
                "must be at least 1",
            ));
        }
        if self.password.is_some() && self.user.is_none() {
            return Err(ConfigProblem::new(
                "tarantool.password",
                "is set but tarantool.user is not",
            ));
        }
        Ok(())
    }

    /// User and password for tarantool-rs, when a user is configured.
    pub fn credentials(&self) -> Option<(&str, Option<&str>)> {
        self.user
            .as_deref()
            .map(|user| (user, self.password.as_ref().map(Password::expose)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_shows_in_debug_or_serialized_output() {
        let config = TarantoolConfig {
            user: Some("reader".into()),
            password: Some("hunter2-tarantool".into()),
            ..TarantoolConfig::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"), "{config:?}");
        let json = serde_json::to_string(&config).expect("serializes");
        assert!(!json.contains("hunter2"), "{json}");
        assert!(json.contains(REDACTED), "{json}");
        assert_eq!(
            config.credentials(),
            Some(("reader", Some("hunter2-tarantool")))
        );
        let parsed: TarantoolConfig =
            serde_json::from_str(r#"{"user": "u", "password": "p4ss"}"#).expect("parses");
        assert_eq!(parsed.password.as_ref().map(Password::expose), Some("p4ss"));
    }
}
