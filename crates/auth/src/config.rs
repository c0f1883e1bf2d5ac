//! `[auth]`: access control settings, for the node's configuration file.
//!
//! Self-contained: the binary's `Config` embeds [`AuthConfig`] as its `auth` section, calls
//! [`AuthConfig::validate`] with the other sections, and builds the [`TokenAuthority`], the
//! [`crate::Gatekeeper`] and the admin [`BearerSecret`] (which read secret files) at start-up.
//! Every error names its key.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use planetmint_streams_model::ConfigProblem;
use serde::{Deserialize, Serialize};

use crate::bearer::BearerSecret;
use crate::client::ClientConfig;
use crate::jwt::JwtConfig;
use crate::keyring::{is_key_id, KeyRing};
use crate::secret::{decode_key, read_secret_file, SecretString};
use crate::token::{TokenAuthority, TokenPolicy, DEFAULT_CLOCK_SKEW, DEFAULT_MAX_TTL, DEFAULT_TTL};

/// Default address of the admin endpoint: loopback only.
pub const DEFAULT_ADMIN_BIND: &str = "127.0.0.1:9987";
/// Default of `auth.close_on_expiry`: on, so a short-lived URL opens a stream for as long as
/// it is valid, not for as long as the connection happens to last.
pub const DEFAULT_CLOSE_ON_EXPIRY: bool = true;
/// Longest `auth.max_ttl` accepted.
pub const MAX_MAX_TTL: Duration = Duration::from_secs(366 * 24 * 3600);
/// Longest `auth.clock_skew` accepted.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);
/// Default of `auth.reload_interval`: how often the node looks at the modification times of
/// the credential files (clients file, secret files, JWT keys, JWKS) to reload them.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// Longest `auth.reload_interval` accepted.
pub const MAX_RELOAD_INTERVAL: Duration = Duration::from_secs(3600);

/// Who may subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Anyone, as with Planetmint's own stream; a `token` parameter is ignored.
    #[default]
    Open,
    /// Only URLs with a valid token.
    Signed,
}

/// One `[[auth.keys]]` entry: a signing key by id, its secret inline or in a file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyConfig {
    /// Key id, written into each token it signs: 1 to 32 characters of `A-Z a-z 0-9 _ -`.
    pub id: String,
    /// The key as hex or base64 text (see [`crate::decode_key`]); prefer `secret_file` or the
    /// environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretString>,
    /// A file holding the key as hex or base64 text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
}

/// `[auth.admin]`: the endpoint that issues tokens (`POST /admin/tokens`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Whether the endpoint runs.
    pub enabled: bool,
    /// Address it listens on; loopback only by default.
    pub bind: String,
    /// The bearer secret callers present (at least 32 visible ASCII characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretString>,
    /// A file holding the bearer secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            bind: DEFAULT_ADMIN_BIND.to_owned(),
            secret: None,
            secret_file: None,
        }
    }
}

/// `[auth]`: access control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `open` (default) or `signed`.
    pub mode: AuthMode,
    /// Signing keys accepted, by id.
    pub keys: Vec<KeyConfig>,
    /// Id of the key that signs new tokens; may be left out when there is one key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuing_key: Option<String>,
    /// Lifetime of tokens issued without one.
    #[serde(with = "humantime_serde")]
    pub default_ttl: Duration,
    /// Longest lifetime issued or accepted.
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    /// How far in the future a token's issue time may be (issuers with a clock ahead).
    #[serde(with = "humantime_serde")]
    pub clock_skew: Duration,
    /// Close open connections (code 1008) when their token expires, instead of only checking
    /// the expiry when connecting. On by default ([`DEFAULT_CLOSE_ON_EXPIRY`]).
    pub close_on_expiry: bool,
    /// The token-issuing admin endpoint.
    pub admin: AdminConfig,
    /// Clients configured on the node (`[[auth.clients]]`), besides those of `clients_file`.
    pub clients: Vec<ClientConfig>,
    /// A TOML file of `[[clients]]` entries, re-read on SIGHUP and when it changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clients_file: Option<PathBuf>,
    /// How often the credential files' modification times are looked at (`0s`: only on
    /// SIGHUP).
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// JWTs from the operator's identity provider.
    pub jwt: JwtConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::Open,
            keys: Vec::new(),
            issuing_key: None,
            default_ttl: DEFAULT_TTL,
            max_ttl: DEFAULT_MAX_TTL,
            clock_skew: DEFAULT_CLOCK_SKEW,
            close_on_expiry: DEFAULT_CLOSE_ON_EXPIRY,
            admin: AdminConfig::default(),
            clients: Vec::new(),
            clients_file: None,
            reload_interval: DEFAULT_RELOAD_INTERVAL,
            jwt: JwtConfig::default(),
        }
    }
}

impl AuthConfig {
    /// True in `signed` mode.
    pub fn is_signed(&self) -> bool {
        self.mode == AuthMode::Signed
    }

    /// The lifetime policy.
    pub fn policy(&self) -> TokenPolicy {
        TokenPolicy {
            default_ttl: self.default_ttl,
            max_ttl: self.max_ttl,
            clock_skew: self.clock_skew,
        }
    }

    /// Checks the values without reading files; the error names the offending key. Inline
    /// secrets are decoded here, so a bad one stops the node at start-up.
    pub fn validate(&self) -> Result<(), ConfigProblem> {
        let credentials = !self.keys.is_empty()
            || !self.clients.is_empty()
            || self.clients_file.is_some()
            || !self.jwt.keys.is_empty()
            || self.jwt.jwks_file.is_some();
        if self.is_signed() && !credentials {
            return Err(ConfigProblem::new(
                "auth.keys",
                "signed mode needs something to check credentials with: signing keys ([[auth.keys]] with id and secret_file), clients ([[auth.clients]] or auth.clients_file) or JWT keys ([[auth.jwt.keys]] or auth.jwt.jwks_file)",
            ));
        }

        let mut ids = HashSet::new();
        for key in &self.keys {
            if !is_key_id(&key.id) {
                return Err(ConfigProblem::new(
                    "auth.keys",
                    format!(
                        "key id {:?} must be 1 to 32 characters of A-Z, a-z, 0-9, _ and -",
                        key.id
                    ),
                ));
            }
            if !ids.insert(key.id.as_str()) {
                return Err(ConfigProblem::new(
                    "auth.keys",
                    format!("key id {:?} is given more than once", key.id),
                ));
            }
            match (&key.secret, &key.secret_file) {
                (Some(secret), None) => {
                    decode_key(secret.expose()).map_err(|err| {
                        ConfigProblem::new("auth.keys", format!("key {:?}: secret {err}", key.id))
                    })?;
                }
                (None, Some(_)) => {}
                _ => {
                    return Err(ConfigProblem::new(
                        "auth.keys",
                        format!(
                            "key {:?}: give exactly one of secret and secret_file",
                            key.id
                        ),
                    ))
                }
            }
        }
        match &self.issuing_key {
            Some(id) if !ids.contains(id.as_str()) => {
                return Err(ConfigProblem::new(
                    "auth.issuing_key",
                    format!("{id:?} is not the id of a key in auth.keys"),
                ));
            }
            None if self.keys.len() > 1 => {
                return Err(ConfigProblem::new(
                    "auth.issuing_key",
                    "required when auth.keys has more than one key",
                ));
            }
            _ => {}
        }
        self.validate_durations()?;
        self.validate_admin()?;
        crate::client::validate_inline(&self.clients)?;
        if self
            .clients_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(ConfigProblem::new(
                "auth.clients_file",
                "must name a file (leave it out for none)",
            ));
        }
        if !self.reload_interval.is_zero() && self.reload_interval < Duration::from_secs(1) {
            return Err(ConfigProblem::new(
                "auth.reload_interval",
                "must be 0s (off) or at least 1s",
            ));
        }
        if self.reload_interval > MAX_RELOAD_INTERVAL {
            return Err(ConfigProblem::new(
                "auth.reload_interval",
                "must be at most 1h",
            ));
        }
        self.jwt.validate()
    }

    fn validate_durations(&self) -> Result<(), ConfigProblem> {
        for (key, value) in [
            ("auth.default_ttl", self.default_ttl),
            ("auth.max_ttl", self.max_ttl),
        ] {
            if value < Duration::from_secs(1) {
                return Err(ConfigProblem::new(key, "must be at least 1s"));
            }
        }
        if self.max_ttl > MAX_MAX_TTL {
            return Err(ConfigProblem::new("auth.max_ttl", "must be at most 366d"));
        }
        if self.default_ttl > self.max_ttl {
            return Err(ConfigProblem::new(
                "auth.default_ttl",
                format!(
                    "must be at most auth.max_ttl ({})",
                    humantime_serde::re::humantime::format_duration(self.max_ttl)
                ),
            ));
        }
        if self.clock_skew > MAX_CLOCK_SKEW {
            return Err(ConfigProblem::new("auth.clock_skew", "must be at most 5m"));
        }
        Ok(())
    }

    fn validate_admin(&self) -> Result<(), ConfigProblem> {
        let admin = &self.admin;
        if admin.bind.parse::<SocketAddr>().is_err() {
            return Err(ConfigProblem::new(
                "auth.admin.bind",
                format!(
                    "expected an address such as {DEFAULT_ADMIN_BIND}, got {:?}",
                    admin.bind
                ),
            ));
        }
        if !admin.enabled {
            return Ok(());
        }
        if !self.is_signed() {
            return Err(ConfigProblem::new(
                "auth.admin.enabled",
                "the token endpoint needs auth.mode = \"signed\"",
            ));
        }
        if self.keys.is_empty() {
            return Err(ConfigProblem::new(
                "auth.keys",
                "the token endpoint (auth.admin.enabled) signs tokens: it needs at least one key ([[auth.keys]])",
            ));
        }
        match (&admin.secret, &admin.secret_file) {
            (Some(secret), None) => BearerSecret::new(secret.expose())
                .map(|_| ())
                .map_err(|err| ConfigProblem::new("auth.admin.secret", format!("the admin secret {err}"))),
            (None, Some(_)) => Ok(()),
            _ => Err(ConfigProblem::new(
                "auth.admin.secret",
                "the enabled admin endpoint needs exactly one of auth.admin.secret and auth.admin.secret_file",
            )),
        }
    }

    /// Validates, reads key files and builds the key ring and policy. Errors name the key
    /// (`auth.keys` for an unreadable or invalid key file).
    pub fn authority(&self) -> Result<TokenAuthority, ConfigProblem> {
        self.validate()?;
        let mut ring: Option<KeyRing> = None;
        for key in &self.keys {
            let bytes = match (&key.secret, &key.secret_file) {
                (Some(secret), _) => decode_key(secret.expose()),
                (None, Some(path)) => {
                    read_secret_file(path).and_then(|text| decode_key(text.expose()))
                }
                // `validate` refuses this above; say so again rather than panic.
                (None, None) => {
                    return Err(ConfigProblem::new(
                        "auth.keys",
                        format!(
                            "key {:?}: give exactly one of secret and secret_file",
                            key.id
                        ),
                    ))
                }
            }
            .map_err(|err| {
                ConfigProblem::new("auth.keys", format!("key {:?}: secret {err}", key.id))
            })?;
            match ring.as_mut() {
                None => {
                    ring = Some(
                        KeyRing::new(&key.id, &bytes)
                            .map_err(|err| ConfigProblem::new("auth.keys", err.to_string()))?,
                    )
                }
                Some(ring) => ring
                    .add(&key.id, &bytes)
                    .map_err(|err| ConfigProblem::new("auth.keys", err.to_string()))?,
            }
        }
        let mut ring = ring.ok_or_else(|| {
            ConfigProblem::new(
                "auth.keys",
                "no keys configured: tokens can be neither issued nor verified",
            )
        })?;
        if let Some(id) = &self.issuing_key {
            ring.set_issuing(id)
                .map_err(|err| ConfigProblem::new("auth.issuing_key", err.to_string()))?;
        }
        Ok(TokenAuthority::new(ring, self.policy()))
    }

    /// Validates and builds the admin bearer secret (reading `auth.admin.secret_file`);
    /// `None` when the endpoint is disabled.
    pub fn admin_secret(&self) -> Result<Option<BearerSecret>, ConfigProblem> {
        self.validate()?;
        if !self.admin.enabled {
            return Ok(None);
        }
        let text =
            match (&self.admin.secret, &self.admin.secret_file) {
                (Some(secret), _) => secret.clone(),
                (None, Some(path)) => read_admin_file(path)?,
                // `validate` refuses this above; say so again rather than panic.
                (None, None) => return Err(ConfigProblem::new(
                    "auth.admin.secret",
                    "the enabled admin endpoint needs auth.admin.secret or auth.admin.secret_file",
                )),
            };
        BearerSecret::new(text.expose()).map(Some).map_err(|err| {
            ConfigProblem::new("auth.admin.secret_file", format!("the admin secret {err}"))
        })
    }
}

fn read_admin_file(path: &Path) -> Result<SecretString, ConfigProblem> {
    read_secret_file(path)
        .map_err(|err| ConfigProblem::new("auth.admin.secret_file", err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX_KEY: &str = "8f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
    const ADMIN: &str = "admin-secret-admin-secret-admin-secret";

    fn key(id: &str) -> KeyConfig {
        KeyConfig {
            id: id.into(),
            secret: Some(SecretString::new(HEX_KEY)),
            secret_file: None,
        }
    }

    fn signed(keys: Vec<KeyConfig>) -> AuthConfig {
        AuthConfig {
            mode: AuthMode::Signed,
            keys,
            ..AuthConfig::default()
        }
    }

    fn problem_key(config: &AuthConfig) -> &'static str {
        config.validate().expect_err("invalid").key
    }

    #[test]
    fn defaults_are_open_valid_and_loopback_only() {
        let config = AuthConfig::default();
        config.validate().expect("valid");
        assert!(!config.is_signed());
        assert_eq!(config.default_ttl, Duration::from_secs(120));
        assert_eq!(config.admin.bind, "127.0.0.1:9987");
        let bind: SocketAddr = config.admin.bind.parse().expect("address");
        assert!(bind.ip().is_loopback());
        assert!(
            config.close_on_expiry,
            "a short-lived URL does not hold a stream forever"
        );
    }

    #[test]
    fn reads_from_toml_like_the_node_config() {
        let config: AuthConfig = serde_json::from_value(serde_json::json!({
            "mode": "signed",
            "keys": [{"id": "k1", "secret_file": "/run/secrets/k1"}, {"id": "k2", "secret": HEX_KEY}],
            "issuing_key": "k2",
            "default_ttl": "5m",
            "max_ttl": "1day",
            "close_on_expiry": false,
            "admin": {"enabled": true, "secret_file": "/run/secrets/admin"}
        }))
        .expect("parses");
        config.validate().expect("valid");
        assert!(!config.close_on_expiry, "can be turned off");
        assert_eq!(config.default_ttl, Duration::from_secs(300));
        assert_eq!(config.max_ttl, Duration::from_secs(86_400));
        assert_eq!(config.admin.bind, DEFAULT_ADMIN_BIND, "default kept");
        let typo = serde_json::from_value::<AuthConfig>(serde_json::json!({"mdoe": "signed"}));
        assert!(typo.expect_err("unknown key").to_string().contains("mdoe"));
    }

    #[test]
    fn errors_name_the_key() {
        let cases: Vec<(AuthConfig, &str)> = vec![
            (signed(vec![]), "auth.keys"),
            (
                AuthConfig {
                    clients_file: Some("/etc/planetmint-streams/clients.toml".into()),
                    admin: AdminConfig {
                        enabled: true,
                        secret: Some(SecretString::new(ADMIN)),
                        ..AdminConfig::default()
                    },
                    ..signed(vec![])
                },
                "auth.keys",
            ),
            (signed(vec![key("bad.id")]), "auth.keys"),
            (signed(vec![key("k1"), key("k1")]), "auth.keys"),
            (
                signed(vec![KeyConfig {
                    secret: Some(SecretString::new("00ff")),
                    ..key("k1")
                }]),
                "auth.keys",
            ),
            (
                signed(vec![KeyConfig {
                    secret_file: Some("/x".into()),
                    ..key("k1")
                }]),
                "auth.keys",
            ),
            (signed(vec![key("k1"), key("k2")]), "auth.issuing_key"),
            (
                AuthConfig {
                    issuing_key: Some("k3".into()),
                    ..signed(vec![key("k1"), key("k2")])
                },
                "auth.issuing_key",
            ),
            (
                AuthConfig {
                    default_ttl: Duration::ZERO,
                    ..AuthConfig::default()
                },
                "auth.default_ttl",
            ),
            (
                AuthConfig {
                    default_ttl: Duration::from_secs(7200),
                    ..AuthConfig::default()
                },
                "auth.default_ttl",
            ),
            (
                AuthConfig {
                    max_ttl: Duration::from_secs(400 * 86_400),
                    ..AuthConfig::default()
                },
                "auth.max_ttl",
            ),
            (
                AuthConfig {
                    clock_skew: Duration::from_secs(600),
                    ..AuthConfig::default()
                },
                "auth.clock_skew",
            ),
            (
                AuthConfig {
                    admin: AdminConfig {
                        bind: "localhost".into(),
                        ..AdminConfig::default()
                    },
                    ..AuthConfig::default()
                },
                "auth.admin.bind",
            ),
            (
                AuthConfig {
                    admin: AdminConfig {
                        enabled: true,
                        secret: Some(SecretString::new(ADMIN)),
                        ..AdminConfig::default()
                    },
                    ..AuthConfig::default()
                },
                "auth.admin.enabled",
            ),
            (
                AuthConfig {
                    admin: AdminConfig {
                        enabled: true,
                        ..AdminConfig::default()
                    },
                    ..signed(vec![key("k1")])
                },
                "auth.admin.secret",
            ),
            (
                AuthConfig {
                    admin: AdminConfig {
                        enabled: true,
                        secret: Some(SecretString::new("too-short")),
                        ..AdminConfig::default()
                    },
                    ..signed(vec![key("k1")])
                },
                "auth.admin.secret",
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(problem_key(&config), expected, "{config:?}");
        }
    }

    #[test]
    fn credential_settings_are_checked_naming_their_key() {
        let client = crate::client::ClientConfig {
            id: "acme".into(),
            secret_hash: Some("hmac-sha3-256:short".into()),
            streams: vec!["valid_blocks".into()],
            ..Default::default()
        };
        let cases: Vec<(AuthConfig, &str)> = vec![
            (
                AuthConfig {
                    clients: vec![client],
                    ..AuthConfig::default()
                },
                "auth.clients.secret_hash",
            ),
            (
                AuthConfig {
                    clients_file: Some(PathBuf::new()),
                    ..AuthConfig::default()
                },
                "auth.clients_file",
            ),
            (
                AuthConfig {
                    reload_interval: Duration::from_millis(200),
                    ..AuthConfig::default()
                },
                "auth.reload_interval",
            ),
            (
                AuthConfig {
                    reload_interval: Duration::from_secs(7200),
                    ..AuthConfig::default()
                },
                "auth.reload_interval",
            ),
            (
                AuthConfig {
                    jwt: JwtConfig {
                        issuer: Some(String::new()),
                        ..JwtConfig::default()
                    },
                    ..AuthConfig::default()
                },
                "auth.jwt.issuer",
            ),
            (
                AuthConfig {
                    jwt: JwtConfig {
                        keys: vec![crate::jwt::JwtKeyConfig {
                            algorithm: Some(crate::jwt::JwtAlgorithm::RS256),
                            ..Default::default()
                        }],
                        ..JwtConfig::default()
                    },
                    ..AuthConfig::default()
                },
                "auth.jwt.keys",
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(problem_key(&config), expected, "{config:?}");
        }
        let off = AuthConfig {
            reload_interval: Duration::ZERO,
            ..AuthConfig::default()
        };
        off.validate().expect("0s turns polling off");
    }

    #[test]
    fn clients_and_jwt_settings_read_from_toml_like_the_node_config() {
        let config: AuthConfig = serde_json::from_value(serde_json::json!({
            "mode": "signed",
            "keys": [{"id": "k1", "secret": HEX_KEY}],
            "clients": [{"id": "acme", "secret_file": "/run/secrets/acme", "streams": ["valid_transactions"],
                         "operations": ["CREATE"], "max_connections": 5}],
            "clients_file": "/etc/planetmint-streams/clients.toml",
            "reload_interval": "10s",
            "jwt": {"jwks_file": "/etc/planetmint-streams/jwks.json", "issuer": "https://idp.example",
                    "audience": "streams", "leeway": "1m", "streams_claim": "scope",
                    "keys": [{"id": "idp-1", "algorithm": "ES256", "public_key_file": "/etc/idp.pem"}]}
        }))
        .expect("parses");
        config.validate().expect("valid");
        assert_eq!(config.clients[0].max_connections, Some(5));
        assert_eq!(config.reload_interval, Duration::from_secs(10));
        assert_eq!(config.jwt.leeway, Duration::from_secs(60));
        assert_eq!(
            config.jwt.keys[0].algorithm,
            Some(crate::jwt::JwtAlgorithm::ES256)
        );
        let typo = serde_json::from_value::<AuthConfig>(serde_json::json!({
            "clients": [{"id": "x", "secret": "plain"}]
        }));
        assert!(typo
            .expect_err("unknown key")
            .to_string()
            .contains("secret"));
    }

    #[test]
    fn problems_never_show_secrets() {
        let bad = "not-a-key-but-a-password-someone-typed-in";
        let config = signed(vec![KeyConfig {
            secret: Some(SecretString::new(bad)),
            ..key("k1")
        }]);
        let ConfigProblem {
            key,
            problem: message,
        } = config.validate().expect_err("bad key");
        assert_eq!(key, "auth.keys");
        assert!(message.contains("\"k1\""), "{message}");
        assert!(!message.contains(bad), "{message}");
        assert!(!format!("{config:?}").contains(bad));
    }

    #[test]
    fn the_authority_reads_key_files_and_uses_the_issuing_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k-old");
        crate::secret::write_secret_file(&path, &format!("{HEX_KEY}\n")).expect("write");
        let config = AuthConfig {
            issuing_key: Some("new".into()),
            ..signed(vec![
                KeyConfig {
                    id: "old".into(),
                    secret: None,
                    secret_file: Some(path),
                },
                KeyConfig {
                    secret: Some(SecretString::new(format!("base64:{}", "A".repeat(44)))),
                    ..key("new")
                },
            ])
        };
        let authority = config.authority().expect("authority");
        assert_eq!(authority.keys().issuing_key_id(), "new");
        assert_eq!(
            authority.keys().key_ids().collect::<Vec<_>>(),
            ["new", "old"]
        );
        assert_eq!(authority.policy(), &config.policy());

        let missing = AuthConfig {
            keys: vec![KeyConfig {
                id: "k1".into(),
                secret: None,
                secret_file: Some(dir.path().join("absent")),
            }],
            ..signed(vec![])
        };
        let ConfigProblem {
            key,
            problem: message,
        } = missing.authority().expect_err("no file");
        assert_eq!(key, "auth.keys");
        assert!(message.contains("absent"), "{message}");

        let ConfigProblem { key, .. } = AuthConfig::default().authority().expect_err("no keys");
        assert_eq!(key, "auth.keys");
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_other_users_can_read_stops_the_authority_naming_the_key_and_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k1.key");
        crate::secret::write_secret_file(&path, HEX_KEY).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let config = signed(vec![KeyConfig {
            id: "k1".into(),
            secret: None,
            secret_file: Some(path.clone()),
        }]);
        let ConfigProblem {
            key,
            problem: message,
        } = config.authority().expect_err("shared key file");
        assert_eq!(key, "auth.keys");
        assert!(message.contains("\"k1\""), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(
            message.contains("mode 644") && message.contains("chmod 600"),
            "{message}"
        );
        assert!(!message.contains(HEX_KEY), "{message}");
    }

    #[test]
    fn the_admin_secret_comes_from_a_file_and_checks_bearer_headers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("admin");
        crate::secret::write_secret_file(&path, &format!("{ADMIN}\n")).expect("write");
        let config = AuthConfig {
            admin: AdminConfig {
                enabled: true,
                secret_file: Some(path),
                ..AdminConfig::default()
            },
            ..signed(vec![key("k1")])
        };
        let secret = config.admin_secret().expect("ok").expect("enabled");
        assert_eq!(secret.check(Some(&format!("Bearer {ADMIN}"))), Ok(()));
        assert!(secret.check(Some("Bearer x")).is_err());
        assert!(AuthConfig::default().admin_secret().expect("ok").is_none());
    }

    #[test]
    fn serialized_config_shows_no_secret() {
        let config = AuthConfig {
            admin: AdminConfig {
                secret: Some(SecretString::new(ADMIN)),
                ..AdminConfig::default()
            },
            ..signed(vec![key("k1")])
        };
        let shown = serde_json::to_string(&config).expect("serialize");
        assert!(
            !shown.contains(HEX_KEY) && !shown.contains(ADMIN),
            "{shown}"
        );
        assert!(shown.contains("\"default_ttl\":\"2m\""), "{shown}");
    }
}
