//! Settings of the JetStream tier (`[nats]` in the configuration file). The section is
//! optional: without it the tier is off and the node never opens a NATS connection.

use std::path::PathBuf;
use std::time::Duration;

use planetmint_streams_model::ConfigProblem;
use serde::{Deserialize, Serialize};

/// Default retention of both JetStream streams: 7 days (speedracer's "short history").
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default size cap of each JetStream stream: 1 GiB, about three million transaction events
/// (oldest messages go first). JetStream reserves it on disk when the stream is created.
pub const DEFAULT_MAX_BYTES: u64 = 1024 * 1024 * 1024;
/// Default replicas of each stream (3 in a 3-node JetStream cluster).
pub const DEFAULT_REPLICAS: usize = 1;
/// Most replicas JetStream allows.
pub const MAX_REPLICAS: usize = 5;
/// Default window in which JetStream drops a second message with the same `Nats-Msg-Id`.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// The shortest de-duplication window JetStream accepts.
pub const MIN_DUPLICATE_WINDOW: Duration = Duration::from_millis(100);
/// Default room in the publisher's live queue, in blocks. When it is full the follower does
/// not wait: the publisher catches up from Tarantool instead.
pub const DEFAULT_QUEUE_BLOCKS: usize = 1024;
/// Default blocks per history read while catching up.
pub const DEFAULT_BATCH_BLOCKS: usize = 50;
/// Default publishes sent before their acknowledgements are awaited.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// Default limit on connecting to NATS and on each JetStream request or acknowledgement.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Default lifetime of the NATS user JWTs handed to clients.
pub const DEFAULT_USER_JWT_TTL: Duration = Duration::from_secs(3600);
/// Default lifetime of the gateway JWTs (speedracer's identity tokens).
pub const DEFAULT_GATEWAY_JWT_TTL: Duration = Duration::from_secs(3600);
/// Shortest lifetime allowed for either JWT (speedracer refreshes 5 minutes before expiry,
/// and at most every 10 seconds).
pub const MIN_JWT_TTL: Duration = Duration::from_secs(60);
/// Longest lifetime allowed for either JWT.
pub const MAX_JWT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default first pause after a failure to reach NATS.
pub const DEFAULT_RECONNECT_MIN: Duration = Duration::from_millis(200);
/// Default longest pause between attempts to reach NATS.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(5);
/// How often the publisher looks at the source's head when no block arrives live (it also
/// catches up from there: blocks another node's follower saw, or missed ones).
pub const DEFAULT_IDLE_CHECK: Duration = Duration::from_secs(2);

/// `[nats]`: publish both streams into NATS JetStream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// NATS server URL(s) the node publishes to and tells clients (`nats_url` of
    /// `/api/v1/config`), e.g. `nats://nats.example.com:4222`; several separated by commas.
    pub url: String,
    /// NATS WebSocket URL told to clients (`nats_websocket_url`), e.g.
    /// `wss://nats.example.com:443`; empty: not offered.
    pub websocket_url: String,
    /// The node's own NATS credentials (a `.creds` file: user JWT and nkey seed), as
    /// `planetmint-streams nats-config` writes them (`publisher.creds`).
    pub credentials_file: Option<PathBuf>,
    /// The account signing key (an nkey seed file, `account-signing.nk`) that signs the user
    /// JWTs handed to clients and the gateway's identity JWTs.
    pub account_signing_key_file: Option<PathBuf>,
    /// The account the signing key signs for (its public key, `A...`); default: read from the
    /// user JWT of `nats.credentials_file`.
    pub account: Option<String>,
    /// CA bundle (PEM) that signs the NATS servers' certificates (TLS to NATS).
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for NATS servers that ask for one.
    pub tls_cert_file: Option<PathBuf>,
    /// Key of `nats.tls_cert_file` (PEM).
    pub tls_key_file: Option<PathBuf>,
    /// Refuse to talk to NATS without TLS.
    pub require_tls: bool,
    /// Prefix of subjects and stream names, for several chains on one NATS:
    /// `planetmint.main` gives subject `planetmint.main.valid_transactions` in stream
    /// `planetmint_main_valid_transactions`. Lowercase (speedracer lowercases subjects).
    pub prefix: String,
    /// How long JetStream keeps a message.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Most bytes each stream keeps (the oldest messages go first); 0: no limit.
    pub max_bytes: u64,
    /// Replicas of each stream (1 to 5; at most the JetStream cluster's size).
    pub replicas: usize,
    /// JetStream's de-duplication window for `Nats-Msg-Id`.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// Where publishing starts when a stream is new (holds no message yet): the first height
    /// published. Default: all stored history.
    pub start_height: Option<u64>,
    /// Room in the publisher's live queue, in blocks (full: catch up from Tarantool).
    pub queue_blocks: usize,
    /// Blocks per history read while catching up.
    pub batch_blocks: usize,
    /// Publishes sent before their acknowledgements are awaited.
    pub max_in_flight: usize,
    /// Limit on connecting, on each JetStream request and on each acknowledgement.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// First pause after a failure.
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    /// Longest pause between attempts.
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// Lifetime of the NATS user JWTs handed to clients (`/api/v1/user/jwt/<dataset>`).
    #[serde(with = "humantime_serde")]
    pub user_jwt_ttl: Duration,
    /// Lifetime of the gateway's identity JWTs (`/api/v1/gateway/jwt`).
    #[serde(with = "humantime_serde")]
    pub gateway_jwt_ttl: Duration,
    /// `/ready` answers 503 when the publisher is more than this many blocks behind the
    /// chain; 0: the tier never makes the node unready.
    pub ready_max_lag_blocks: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            websocket_url: String::new(),
            credentials_file: None,
            account_signing_key_file: None,
            account: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            require_tls: false,
            prefix: String::new(),
            max_age: DEFAULT_MAX_AGE,
            max_bytes: DEFAULT_MAX_BYTES,
            replicas: DEFAULT_REPLICAS,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            start_height: None,
            queue_blocks: DEFAULT_QUEUE_BLOCKS,
            batch_blocks: DEFAULT_BATCH_BLOCKS,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            reconnect_min: DEFAULT_RECONNECT_MIN,
            reconnect_max: DEFAULT_RECONNECT_MAX,
            user_jwt_ttl: DEFAULT_USER_JWT_TTL,
            gateway_jwt_ttl: DEFAULT_GATEWAY_JWT_TTL,
            ready_max_lag_blocks: 0,
        }
    }
}

/// Whether `url` is `scheme://host...` with one of `schemes`.
fn has_scheme(url: &str, schemes: &[&str]) -> bool {
    schemes.iter().any(|scheme| {
        url.strip_prefix(scheme)
            .and_then(|rest| rest.strip_prefix("://"))
            .is_some_and(|host| !host.is_empty() && !host.starts_with('/'))
    })
}

fn positive(key: &'static str, value: Duration) -> Result<(), ConfigProblem> {
    if value.is_zero() {
        return Err(ConfigProblem::new(key, "must be greater than zero"));
    }
    Ok(())
}

fn jwt_ttl(key: &'static str, value: Duration) -> Result<(), ConfigProblem> {
    if value < MIN_JWT_TTL || value > MAX_JWT_TTL {
        return Err(ConfigProblem::new(
            key,
            format!(
                "must be between {} and {} (got {})",
                humantime::format_duration(MIN_JWT_TTL),
                humantime::format_duration(MAX_JWT_TTL),
                humantime::format_duration(value)
            ),
        ));
    }
    Ok(())
}

/// Whether `prefix` is a valid subject prefix: dot-separated tokens of lowercase letters,
/// digits, `_` and `-` (no wildcards, no spaces, nothing JetStream stream names refuse).
pub fn valid_prefix(prefix: &str) -> bool {
    prefix.is_empty()
        || prefix.split('.').all(|token| {
            !token.is_empty()
                && token
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        })
}

impl NatsConfig {
    /// The server URLs to connect to (`nats.url` split at commas).
    pub fn server_urls(&self) -> Vec<String> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Checks the values; the error names the offending key.
    pub fn validate(&self) -> Result<(), ConfigProblem> {
        let urls = self.server_urls();
        if urls.is_empty() {
            return Err(ConfigProblem::new(
                "nats.url",
                "is required when [nats] is present (e.g. nats://127.0.0.1:4222); remove [nats] to turn the JetStream tier off",
            ));
        }
        for url in &urls {
            if !has_scheme(url, &["nats", "tls"]) {
                return Err(ConfigProblem::new(
                    "nats.url",
                    format!("expected nats://host:port or tls://host:port, got {url:?}"),
                ));
            }
        }
        if !self.websocket_url.is_empty() && !has_scheme(&self.websocket_url, &["ws", "wss"]) {
            return Err(ConfigProblem::new(
                "nats.websocket_url",
                format!(
                    "expected ws://host:port or wss://host:port, got {:?}",
                    self.websocket_url
                ),
            ));
        }
        if let Some(account) = &self.account {
            if !(account.len() == 56 && account.starts_with('A')) {
                return Err(ConfigProblem::new(
                    "nats.account",
                    "expected an account public key (56 characters starting with A)",
                ));
            }
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => {
                return Err(ConfigProblem::new(
                    "nats.tls_key_file",
                    "nats.tls_cert_file is set but nats.tls_key_file is not",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigProblem::new(
                    "nats.tls_cert_file",
                    "nats.tls_key_file is set but nats.tls_cert_file is not",
                ))
            }
            _ => {}
        }
        if !valid_prefix(&self.prefix) {
            return Err(ConfigProblem::new(
                "nats.prefix",
                format!(
                    "{:?} is not a subject prefix: dot-separated tokens of lowercase letters, digits, _ and - (speedracer lowercases subjects)",
                    self.prefix
                ),
            ));
        }
        positive("nats.max_age", self.max_age)?;
        if !(1..=MAX_REPLICAS).contains(&self.replicas) {
            return Err(ConfigProblem::new(
                "nats.replicas",
                format!("must be between 1 and {MAX_REPLICAS}"),
            ));
        }
        if self.duplicate_window < MIN_DUPLICATE_WINDOW {
            return Err(ConfigProblem::new(
                "nats.duplicate_window",
                "must be at least 100ms (JetStream's minimum)",
            ));
        }
        if self.duplicate_window > self.max_age {
            return Err(ConfigProblem::new(
                "nats.duplicate_window",
                "must not exceed nats.max_age",
            ));
        }
        if i64::try_from(self.max_bytes).is_err() {
            return Err(ConfigProblem::new("nats.max_bytes", "is too large"));
        }
        for (key, value) in [
            ("nats.queue_blocks", self.queue_blocks),
            ("nats.batch_blocks", self.batch_blocks),
            ("nats.max_in_flight", self.max_in_flight),
        ] {
            if value == 0 {
                return Err(ConfigProblem::new(key, "must be at least 1"));
            }
        }
        positive("nats.request_timeout", self.request_timeout)?;
        positive("nats.reconnect_min", self.reconnect_min)?;
        if self.reconnect_max < self.reconnect_min {
            return Err(ConfigProblem::new(
                "nats.reconnect_max",
                "must not be shorter than nats.reconnect_min",
            ));
        }
        jwt_ttl("nats.user_jwt_ttl", self.user_jwt_ttl)?;
        jwt_ttl("nats.gateway_jwt_ttl", self.gateway_jwt_ttl)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> NatsConfig {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            ..NatsConfig::default()
        }
    }

    #[test]
    fn a_url_alone_is_valid_and_the_defaults_are_the_documented_ones() {
        let config = valid();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.max_age, Duration::from_secs(604_800));
        assert_eq!(config.replicas, 1);
        assert_eq!(config.start_height, None);
    }

    #[test]
    fn every_problem_names_its_key() {
        type Spoil = Box<dyn Fn(&mut NatsConfig)>;
        let cases: Vec<(&str, Spoil)> = vec![
            ("nats.url", Box::new(|c| c.url = String::new())),
            ("nats.url", Box::new(|c| c.url = "http://x:1".into())),
            (
                "nats.url",
                Box::new(|c| c.url = "nats://a:1, localhost:2".into()),
            ),
            (
                "nats.websocket_url",
                Box::new(|c| c.websocket_url = "nats://x:1".into()),
            ),
            ("nats.account", Box::new(|c| c.account = Some("U1".into()))),
            (
                "nats.tls_key_file",
                Box::new(|c| c.tls_cert_file = Some("c".into())),
            ),
            (
                "nats.tls_cert_file",
                Box::new(|c| c.tls_key_file = Some("k".into())),
            ),
            ("nats.prefix", Box::new(|c| c.prefix = "Planetmint".into())),
            ("nats.prefix", Box::new(|c| c.prefix = "a..b".into())),
            ("nats.prefix", Box::new(|c| c.prefix = "a.*".into())),
            ("nats.max_age", Box::new(|c| c.max_age = Duration::ZERO)),
            ("nats.replicas", Box::new(|c| c.replicas = 0)),
            ("nats.replicas", Box::new(|c| c.replicas = 6)),
            (
                "nats.duplicate_window",
                Box::new(|c| c.duplicate_window = Duration::from_secs(8 * 24 * 3600)),
            ),
            (
                "nats.duplicate_window",
                Box::new(|c| c.duplicate_window = Duration::from_millis(99)),
            ),
            ("nats.max_bytes", Box::new(|c| c.max_bytes = u64::MAX)),
            ("nats.queue_blocks", Box::new(|c| c.queue_blocks = 0)),
            ("nats.batch_blocks", Box::new(|c| c.batch_blocks = 0)),
            ("nats.max_in_flight", Box::new(|c| c.max_in_flight = 0)),
            (
                "nats.request_timeout",
                Box::new(|c| c.request_timeout = Duration::ZERO),
            ),
            (
                "nats.reconnect_max",
                Box::new(|c| c.reconnect_max = Duration::from_millis(1)),
            ),
            (
                "nats.user_jwt_ttl",
                Box::new(|c| c.user_jwt_ttl = Duration::from_secs(5)),
            ),
            (
                "nats.gateway_jwt_ttl",
                Box::new(|c| c.gateway_jwt_ttl = Duration::from_secs(30 * 24 * 3600)),
            ),
        ];
        for (key, spoil) in cases {
            let mut config = valid();
            spoil(&mut config);
            let problem = config.validate().expect_err(key);
            assert_eq!(problem.key, key, "{problem}");
        }
    }

    #[test]
    fn several_urls_and_a_prefix_are_accepted() {
        let config = NatsConfig {
            url: "nats://a:4222, tls://b:4222".into(),
            websocket_url: "wss://nats.example.com".into(),
            prefix: "planetmint.main-net_2".into(),
            ..NatsConfig::default()
        };
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.server_urls(), ["nats://a:4222", "tls://b:4222"]);
    }
}
