//! The node's configuration: one typed struct, loaded in layers and validated in one place.
//!
//! Layers, later ones winning: built-in defaults; `config/default.toml` (or the file given by
//! `--config`); environment variables `PLANETMINT_STREAMS_<SECTION>__<KEY>` (for example
//! `PLANETMINT_STREAMS_TARANTOOL__ADDRESS=10.0.0.5:3303`); command-line flags. Every problem is
//! reported with the key it concerns.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use planetmint_streams_api::ApiConfig;
use planetmint_streams_auth::AuthConfig;
use planetmint_streams_broadcaster::StreamsConfig;
use planetmint_streams_ingest::TarantoolConfig;
use planetmint_streams_model::ConfigProblem;
use serde::{Deserialize, Serialize};

/// Prefix of the environment variables read.
pub const ENV_PREFIX: &str = "PLANETMINT_STREAMS_";
/// The configuration file read when `--config` is not given (if it exists).
pub const DEFAULT_FILE: &str = "config/default.toml";

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `pretty` or `json`.
    pub format: LogFormat,
    /// Filter in `tracing` syntax, e.g. `info` or `info,planetmint_streams_ingest=debug`
    /// (`RUST_LOG` overrides it).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".to_owned(),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Planetmint's Tarantool.
    pub tarantool: TarantoolConfig,
    /// The WebSocket stream server.
    pub streams: StreamsConfig,
    /// The HTTP API.
    pub api: ApiConfig,
    /// Logging.
    pub log: LogConfig,
    /// Access control: open (Planetmint's behaviour) or signed stream URLs.
    pub auth: AuthConfig,
    /// TLS on the API and stream ports.
    pub tls: crate::tls::TlsConfig,
    /// The JetStream tier (off when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats: Option<planetmint_streams_jetstream::NatsConfig>,
}

/// A configuration problem, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value is present but not acceptable (the problem names the key).
    #[error(transparent)]
    Invalid(#[from] ConfigProblem),
    /// The layers could not be read or merged (unknown key, wrong type, unreadable file).
    #[error("invalid configuration: {0}")]
    Load(String),
    /// `--config` names a file that does not exist.
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
}

impl Config {
    /// Loads the layers: defaults, file, environment, then `overrides` (from flags).
    pub fn load(file: Option<&Path>, overrides: Figment) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) if !path.exists() => return Err(ConfigError::MissingFile(path.to_owned())),
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new(DEFAULT_FILE).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_FILE))
            }
            None => {}
        }
        figment = figment
            .merge(Env::prefixed(ENV_PREFIX).split("__"))
            .merge(overrides);
        let config: Config = figment.extract().map_err(|err| {
            let messages: Vec<String> = err.into_iter().map(|e| describe(&e)).collect();
            ConfigError::Load(messages.join("; "))
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The scheme published for the streams: configured, else `wss` with TLS, else `ws`.
    pub fn advertised_scheme(&self) -> String {
        self.streams
            .advertised_scheme
            .clone()
            .unwrap_or_else(|| if self.tls.enabled() { "wss" } else { "ws" }.to_owned())
    }

    /// Checks every section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.tarantool.validate()?;
        self.streams.validate()?;
        self.api.validate()?;
        validate_log(&self.log)?;
        self.auth.validate()?;
        self.tls.validate()?;
        if let Some(nats) = &self.nats {
            nats.validate()?;
        }
        self.validate_admin_transport()?;
        Ok(())
    }
}

impl Config {
    /// The admin endpoint carries the bearer secret and hands out tokens: off loopback it must
    /// be TLS (`[tls]`), never plain HTTP.
    fn validate_admin_transport(&self) -> Result<(), ConfigProblem> {
        let admin = &self.auth.admin;
        if !admin.enabled || self.tls.enabled() {
            return Ok(());
        }
        let loopback = admin
            .bind
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|addr| addr.ip().is_loopback());
        if loopback {
            return Ok(());
        }
        Err(ConfigProblem::new(
            "auth.admin.bind",
            format!(
                "{} is not a loopback address and [tls] is not set: the admin endpoint would \
                 carry its bearer secret and tokens in clear; bind it to 127.0.0.1 or ::1, or \
                 set tls.cert_file and tls.key_file",
                admin.bind
            ),
        ))
    }
}

fn validate_log(log: &LogConfig) -> Result<(), ConfigProblem> {
    tracing_subscriber::EnvFilter::try_new(&log.level)
        .map(|_| ())
        .map_err(|e| ConfigProblem::new("log.level", format!("not a valid filter: {e}")))
}

/// One figment error as "key: what (from where)".
fn describe(err: &figment::Error) -> String {
    let key = if err.path.is_empty() {
        String::new()
    } else {
        format!("{}: ", err.path.join("."))
    };
    let origin = err
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(source) => format!(" (from {} {source})", m.name),
            None => format!(" (from {})", m.name),
        })
        .unwrap_or_default();
    format!("{key}{}{origin}", err.kind)
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures return its (large) error type
mod tests {
    use super::*;
    use figment::providers::Serialized;

    fn no_overrides() -> Figment {
        Figment::new()
    }

    #[test]
    fn defaults_are_valid_and_planetmints_ports() {
        let config = Config::default();
        config.validate().expect("defaults are valid");
        assert_eq!(config.streams.bind, "0.0.0.0:9985");
        assert_eq!(config.api.bind, "0.0.0.0:9984");
        assert_eq!(config.tarantool.address, "127.0.0.1:3303");
        assert!(config.streams.ping_interval <= std::time::Duration::from_secs(20));
    }

    #[test]
    fn file_then_env_then_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "node.toml",
                "[tarantool]\naddress = \"10.0.0.1:3303\"\n[streams]\nping_interval = \"5s\"\nadvertised_host = \"file.example\"\n",
            )?;
            jail.set_env("PLANETMINT_STREAMS_STREAMS__ADVERTISED_HOST", "env.example");
            jail.set_env("PLANETMINT_STREAMS_API__READY_MAX_LAG_BLOCKS", "3");
            let flags = Figment::from(Serialized::default("tarantool.address", "10.0.0.2:3303"));
            let config =
                Config::load(Some(Path::new("node.toml")), flags).map_err(|e| e.to_string())?;
            assert_eq!(config.tarantool.address, "10.0.0.2:3303");
            assert_eq!(
                config.streams.ping_interval,
                std::time::Duration::from_secs(5)
            );
            assert_eq!(config.streams.advertised_host, "env.example");
            assert_eq!(config.api.ready_max_lag_blocks, 3);
            assert_eq!(config.nats, None, "no [nats]: the JetStream tier is off");

            jail.set_env("PLANETMINT_STREAMS_NATS__URL", "nats://10.0.0.9:4222");
            jail.set_env(
                "PLANETMINT_STREAMS_NATS__WEBSOCKET_URL",
                "ws://10.0.0.9:8080",
            );
            let config = Config::load(Some(Path::new("node.toml")), Figment::new())
                .map_err(|e| e.to_string())?;
            let nats = config.nats.expect("the environment turns the tier on");
            assert_eq!(nats.url, "nats://10.0.0.9:4222");
            assert_eq!(nats.websocket_url, "ws://10.0.0.9:8080");
            assert_eq!(nats.max_age, std::time::Duration::from_secs(7 * 24 * 3600));
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[streams]\nping_interval = \"0s\"\n")?;
            let err = Config::load(Some(Path::new("bad.toml")), no_overrides())
                .expect_err("zero interval");
            assert!(err.to_string().contains("streams.ping_interval"), "{err}");

            jail.create_file("typo.toml", "[streams]\nping_intervall = \"5s\"\n")?;
            let err = Config::load(Some(Path::new("typo.toml")), no_overrides())
                .expect_err("unknown key");
            assert!(err.to_string().contains("ping_intervall"), "{err}");

            jail.create_file("type.toml", "[streams]\nqueue_max_blocks = \"many\"\n")?;
            let err =
                Config::load(Some(Path::new("type.toml")), no_overrides()).expect_err("wrong type");
            assert!(
                err.to_string().contains("streams.queue_max_blocks"),
                "{err}"
            );

            jail.create_file(
                "nats.toml",
                "[nats]\nwebsocket_url = \"ws://127.0.0.1:8080\"\n",
            )?;
            let err = Config::load(Some(Path::new("nats.toml")), no_overrides())
                .expect_err("[nats] without a url");
            assert!(err.to_string().contains("nats.url"), "{err}");

            jail.set_env("PLANETMINT_STREAMS_TARANTOOL__ADDRESS", "nocolon");
            let err = Config::load(None, no_overrides()).expect_err("bad address");
            assert!(err.to_string().contains("tarantool.address"), "{err}");

            let err =
                Config::load(Some(Path::new("missing.toml")), no_overrides()).expect_err("missing");
            assert!(matches!(err, ConfigError::MissingFile(_)));
            Ok(())
        });
    }
}

#[cfg(test)]
mod admin_transport {
    use super::*;

    #[test]
    fn an_admin_endpoint_off_loopback_needs_tls() {
        let mut config = Config::default();
        config.auth.admin.enabled = true;
        for bind in ["127.0.0.1:9987", "[::1]:9987", "127.0.0.2:9987"] {
            config.auth.admin.bind = bind.into();
            assert_eq!(config.validate_admin_transport(), Ok(()), "{bind}");
        }
        for bind in ["0.0.0.0:9987", "[::]:9987", "10.0.0.5:9987"] {
            config.auth.admin.bind = bind.into();
            let problem = config.validate_admin_transport().expect_err(bind);
            assert_eq!(problem.key, "auth.admin.bind");
            assert!(
                problem.problem.contains(bind) && problem.problem.contains("[tls]"),
                "{problem}"
            );
        }
        config.tls.cert_file = Some("cert.pem".into());
        config.tls.key_file = Some("key.pem".into());
        assert_eq!(config.validate_admin_transport(), Ok(()), "with TLS");
        config.tls = Default::default();
        config.auth.admin.enabled = false;
        assert_eq!(config.validate_admin_transport(), Ok(()), "disabled");
    }
}

#[cfg(test)]
mod shipped_files {
    //! The configuration files and docs shipped in the repository describe the struct exactly.
    use super::*;
    use std::collections::BTreeSet;

    fn repo_file(path: &str) -> String {
        let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
    }

    /// Every key of the struct, as `section.key`, with optional keys set so they appear.
    fn struct_keys() -> BTreeSet<String> {
        let mut full = Config::default();
        full.tarantool.user = Some("u".into());
        full.tarantool.password = Some("p".into());
        full.streams.advertised_port = Some(1);
        full.api.upstream = Some("http://u:1".into());
        full.auth.issuing_key = Some("k".into());
        full.auth.admin.secret = Some(planetmint_streams_auth::SecretString::new("s"));
        full.auth.admin.secret_file = Some("f".into());
        full.streams.advertised_scheme = Some("wss".into());
        full.tls.cert_file = Some("c".into());
        full.tls.key_file = Some("k".into());
        full.tls.client_ca_file = Some("ca".into());
        full.auth.clients_file = Some("clients.toml".into());
        full.auth.jwt.jwks_file = Some("jwks.json".into());
        full.auth.jwt.issuer = Some("https://idp.example".into());
        full.auth.jwt.audience = Some("streams".into());
        full.auth.jwt.public_keys_claim = Some("wallets".into());
        full.auth.jwt.asset_ids_claim = Some("assets".into());
        full.auth.jwt.operations_claim = Some("ops".into());
        full.nats = Some(planetmint_streams_jetstream::NatsConfig {
            credentials_file: Some("c".into()),
            account_signing_key_file: Some("k".into()),
            account: Some("A".into()),
            tls_ca_file: Some("ca".into()),
            tls_cert_file: Some("c".into()),
            tls_key_file: Some("k".into()),
            start_height: Some(1),
            ..Default::default()
        });
        let value = toml::Value::try_from(&full).expect("serializable");
        let mut keys = BTreeSet::new();
        fn walk(prefix: &str, table: &toml::Table, keys: &mut BTreeSet<String>) {
            for (key, value) in table {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                match value.as_table() {
                    Some(inner) => walk(&name, inner, keys),
                    None if !prefix.is_empty() => {
                        keys.insert(name);
                    }
                    None => {}
                }
            }
        }
        walk("", value.as_table().expect("table"), &mut keys);
        keys
    }

    #[test]
    fn config_default_toml_is_the_built_in_defaults() {
        let text = repo_file("config/default.toml");
        let parsed: Config = toml::from_str(&text).expect("config/default.toml parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn docs_configuration_lists_every_key_and_only_those() {
        let doc = repo_file("docs/configuration.md");
        let documented: BTreeSet<String> = doc
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split('`').next())
            .filter(|key| key.contains('.'))
            .map(str::to_owned)
            .collect();
        assert_eq!(
            documented,
            struct_keys(),
            "docs/configuration.md vs the Config struct"
        );
        for key in struct_keys() {
            let env = format!(
                "{ENV_PREFIX}{}",
                key.split('.')
                    .map(str::to_uppercase)
                    .collect::<Vec<_>>()
                    .join("__")
            );
            assert!(doc.contains(&env), "docs/configuration.md names {env}");
        }
    }
}
