//! Who may read the streams from NATS, and with what: the node's [`Issuer`] signs the
//! gateway's identity JWTs and the bearer NATS user JWTs handed to clients (speedracer's
//! flow), and [`NatsSetup`] makes the keys and nats-server configuration that trust them
//! (`planetmint-streams nats-config`).
//!
//! A client's user JWT may read one dataset (one of our subjects) and nothing else of the
//! account: subscribe to that subject and to reply inboxes, ask JetStream about that stream,
//! create, read, pull from and delete the one durable consumer its identity names
//! ([`consumer_name`], speedracer's `md5(CN)` with the last hex digit 0), create ephemeral
//! consumers on that stream, and acknowledge its messages.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use md5::Digest;
use nkeys::KeyPair;
use serde_json::Value;

use crate::config::NatsConfig;
use crate::jwt::{self, JwtError, Permission, Permissions, UserSpec};
use crate::names::StreamNames;

/// `aud` of the gateway's identity JWTs (so a NATS user JWT is never taken for one).
pub const GATEWAY_AUDIENCE: &str = "planetmint-streams-gateway";
/// The JetStream API prefix clients use.
pub const JS_API: &str = "$JS.API";
/// File names `nats-config` writes.
pub const AUTH_CONF: &str = "auth.conf";
/// The node's own credentials (for `nats.credentials_file`).
pub const PUBLISHER_CREDS: &str = "publisher.creds";
/// The account signing key seed (for `nats.account_signing_key_file`).
pub const ACCOUNT_SIGNING_KEY: &str = "account-signing.nk";

const JWT_BEGIN: &str = "-----BEGIN NATS USER JWT-----";
const SEED_BEGIN: &str = "-----BEGIN USER NKEY SEED-----";

/// Why credentials could not be loaded, made or written.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// A file could not be read or written.
    #[error("{key}: {path}: {source}")]
    Io {
        /// The configuration key or command option naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What happened.
        source: std::io::Error,
    },
    /// A file does not hold what it should.
    #[error("{key}: {problem}")]
    Invalid {
        /// The configuration key naming the file.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// A token could not be signed or was refused.
    #[error(transparent)]
    Jwt(#[from] JwtError),
    /// `nats-config` would overwrite a file.
    #[error("{0} exists: not overwriting keys (use --force to replace them, which invalidates every credential made with the old ones)")]
    Exists(PathBuf),
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The durable consumer name speedracer uses for an identity: the MD5 of its `CN` in hex with
/// the last digit replaced by `0`.
pub fn consumer_name(cn: &str) -> String {
    let mut hex: String = md5::Md5::digest(cn.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    hex.pop();
    hex.push('0');
    hex
}

/// The subject CN of a (DER) certificate: the identity the gateway names.
pub fn certificate_cn(der: &[u8]) -> Option<String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = certificate
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .trim()
        .to_owned();
    (!cn.is_empty()).then_some(cn)
}

/// A `.creds` file: a user JWT and its nkey seed between marker lines, as NATS clients read
/// them (`async-nats`'s `with_credentials_file`, nats-py's `user_credentials`).
pub fn creds_file(jwt: &str, seed: &str) -> String {
    format!(
        "{JWT_BEGIN}\n{jwt}\n------END NATS USER JWT------\n\n\
         Written by planetmint-streams nats-config. The seed below is a secret: keep this file\n\
         readable by the node only.\n\n\
         {SEED_BEGIN}\n{seed}\n------END USER NKEY SEED------\n"
    )
}

/// The user JWT of a `.creds` file.
pub fn creds_jwt(text: &str) -> Option<&str> {
    let after = &text[text.find(JWT_BEGIN)? + JWT_BEGIN.len()..];
    after
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .filter(|line| !line.starts_with('-'))
}

/// Who a gateway JWT names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The `CN` claim: a client certificate's subject CN, or a fresh anonymous name.
    pub cn: String,
    /// Whether no certificate stood behind it (development: every token a new identity).
    pub anonymous: bool,
}

impl Identity {
    /// The durable consumer this identity may use ([`consumer_name`]).
    pub fn consumer(&self) -> String {
        consumer_name(&self.cn)
    }
}

/// The node's signer for gateway JWTs and clients' user JWTs.
pub struct Issuer {
    signer: KeyPair,
    account: String,
    ephemeral: bool,
    user_ttl: Duration,
    gateway_ttl: Duration,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("signer", &self.signer.public_key())
            .field("account", &self.account)
            .field("ephemeral", &self.ephemeral)
            .finish()
    }
}

fn read(key: &'static str, path: &Path) -> Result<String, CredentialsError> {
    std::fs::read_to_string(path).map_err(|source| CredentialsError::Io {
        key,
        path: path.to_owned(),
        source,
    })
}

impl Issuer {
    /// The issuer `config` describes: its account signing key and account, or (development,
    /// no `nats.account_signing_key_file`) a key made now, which a nats-server without
    /// authentication ignores.
    pub fn from_config(config: &NatsConfig) -> Result<Self, CredentialsError> {
        let Some(key_file) = &config.account_signing_key_file else {
            let signer = KeyPair::new_account();
            return Ok(Self {
                account: signer.public_key(),
                signer,
                ephemeral: true,
                user_ttl: config.user_jwt_ttl,
                gateway_ttl: config.gateway_jwt_ttl,
            });
        };
        let key = "nats.account_signing_key_file";
        let seed = read(key, key_file)?;
        let signer = KeyPair::from_seed(seed.trim()).map_err(|e| CredentialsError::Invalid {
            key,
            problem: format!("{} is not an nkey seed: {e}", key_file.display()),
        })?;
        if !matches!(signer.key_pair_type(), nkeys::KeyPairType::Account) {
            return Err(CredentialsError::Invalid {
                key,
                problem: format!(
                    "{} is not an account key (its seed must start with SA)",
                    key_file.display()
                ),
            });
        }
        let account = match (&config.account, &config.credentials_file) {
            (Some(account), _) => account.clone(),
            (None, Some(creds)) => account_of_creds(&read("nats.credentials_file", creds)?)?,
            (None, None) => {
                return Err(CredentialsError::Invalid {
                    key: "nats.account",
                    problem: "the account the signing key signs for is unknown: set nats.account or nats.credentials_file".into(),
                })
            }
        };
        Ok(Self {
            signer,
            account,
            ephemeral: false,
            user_ttl: config.user_jwt_ttl,
            gateway_ttl: config.gateway_jwt_ttl,
        })
    }

    /// Whether the key was made at start (no `nats.account_signing_key_file`).
    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// The account the user JWTs belong to.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// A gateway JWT naming `identity`, valid for `nats.gateway_jwt_ttl`.
    pub fn gateway_jwt(&self, identity: &Identity, now: u64) -> Result<String, JwtError> {
        let mut claims = serde_json::Map::new();
        claims.insert("sub".into(), identity.cn.clone().into());
        claims.insert("CN".into(), identity.cn.clone().into());
        claims.insert("aud".into(), GATEWAY_AUDIENCE.into());
        claims.insert(
            "exp".into(),
            (now + self.gateway_ttl.as_secs().max(1)).into(),
        );
        claims.insert("consumer".into(), identity.consumer().into());
        if identity.anonymous {
            claims.insert("anonymous".into(), true.into());
        }
        jwt::encode(claims, &self.signer, now)
    }

    /// The identity of a gateway JWT this node signed, if it is still valid.
    pub fn verify_gateway_jwt(&self, token: &str, now: u64) -> Result<Identity, JwtError> {
        let claims = jwt::verify(token.trim(), &self.signer.public_key(), now)?;
        if claims.get("aud").and_then(Value::as_str) != Some(GATEWAY_AUDIENCE) {
            return Err(JwtError::WrongKind("gateway"));
        }
        let cn = claims
            .get("CN")
            .and_then(Value::as_str)
            .filter(|cn| !cn.is_empty())
            .ok_or(JwtError::WrongKind("gateway"))?;
        Ok(Identity {
            cn: cn.to_owned(),
            anonymous: claims.get("anonymous").and_then(Value::as_bool) == Some(true),
        })
    }

    /// A bearer NATS user JWT for `identity` that may read `names` only (see the module
    /// documentation), valid for `nats.user_jwt_ttl`.
    pub fn user_jwt(
        &self,
        identity: &Identity,
        names: &StreamNames,
        now: u64,
    ) -> Result<String, JwtError> {
        let user = KeyPair::new_user();
        let permissions = reader_permissions(names, &identity.consumer());
        let name = format!("{} ({})", identity.cn, names.subject);
        let claims = jwt::user_claims(&UserSpec {
            user: &user.public_key(),
            name: &name,
            issuer_account: (!self.ephemeral).then_some(self.account.as_str()),
            permissions: Some(permissions),
            bearer: true,
            expires: Some(now + self.user_ttl.as_secs().max(1)),
        });
        jwt::encode(claims, &self.signer, now)
    }
}

/// The account a `.creds` file's user belongs to: its `issuer_account`, else its issuer.
fn account_of_creds(text: &str) -> Result<String, CredentialsError> {
    let invalid = |problem: &str| CredentialsError::Invalid {
        key: "nats.credentials_file",
        problem: problem.to_owned(),
    };
    let token = creds_jwt(text).ok_or_else(|| invalid("holds no NATS user JWT"))?;
    let claims = jwt::claims_unverified(token)?;
    claims["nats"]
        .get("issuer_account")
        .or_else(|| claims.get("iss"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| invalid("its user JWT names no issuer"))
}

/// What a reader of `names` using durable consumer `consumer` may do.
pub fn reader_permissions(names: &StreamNames, consumer: &str) -> Permissions {
    let stream = &names.stream;
    let publish = [
        format!("{JS_API}.INFO"),
        format!("{JS_API}.STREAM.NAMES"),
        format!("{JS_API}.STREAM.INFO.{stream}"),
        format!("{JS_API}.STREAM.MSG.GET.{stream}"),
        format!("{JS_API}.CONSUMER.CREATE.{stream}"),
        format!("{JS_API}.CONSUMER.CREATE.{stream}.{consumer}"),
        format!("{JS_API}.CONSUMER.CREATE.{stream}.{consumer}.>"),
        format!("{JS_API}.CONSUMER.DURABLE.CREATE.{stream}.{consumer}"),
        format!("{JS_API}.CONSUMER.INFO.{stream}.{consumer}"),
        format!("{JS_API}.CONSUMER.DELETE.{stream}.{consumer}"),
        format!("{JS_API}.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
        format!("$JS.ACK.{stream}.>"),
        format!("$JS.FC.{stream}.>"),
    ];
    Permissions {
        publish: Permission {
            allow: publish.into(),
        },
        subscribe: Permission {
            allow: vec!["_INBOX.>".to_owned(), names.subject.clone()],
        },
    }
}

/// Keys and configuration for a nats-server in operator mode that trusts the node.
pub struct NatsSetup {
    /// `auth.conf`: operator, system account, `resolver: MEMORY` and `resolver_preload`.
    pub auth_conf: String,
    /// `publisher.creds`: the node's own user.
    pub publisher_creds: String,
    /// `account-signing.nk`: the account signing key's seed.
    pub account_signing_seed: String,
    /// The account's public key.
    pub account: String,
}

impl NatsSetup {
    /// New keys: an operator, its system account, the account `account_name` (JetStream on)
    /// with one signing key, and the node's publisher user signed by that key.
    pub fn generate(account_name: &str) -> Result<Self, CredentialsError> {
        let now = unix_now();
        let operator = KeyPair::new_operator();
        let system = KeyPair::new_account();
        let account = KeyPair::new_account();
        let signing = KeyPair::new_account();
        let publisher = KeyPair::new_user();
        let seed = |key: &KeyPair| {
            key.seed().map_err(|e| CredentialsError::Invalid {
                key: "nats-config",
                problem: e.to_string(),
            })
        };
        let operator_jwt = jwt::encode(
            jwt::operator_claims(
                &operator.public_key(),
                "planetmint-streams",
                &system.public_key(),
            ),
            &operator,
            now,
        )?;
        let system_jwt = jwt::encode(
            jwt::account_claims(&system.public_key(), "SYS", &[], false),
            &operator,
            now,
        )?;
        let account_jwt = jwt::encode(
            jwt::account_claims(
                &account.public_key(),
                account_name,
                &[signing.public_key()],
                true,
            ),
            &operator,
            now,
        )?;
        let publisher_jwt = jwt::encode(
            jwt::user_claims(&UserSpec {
                user: &publisher.public_key(),
                name: "planetmint-streams publisher",
                issuer_account: Some(&account.public_key()),
                permissions: None,
                bearer: false,
                expires: None,
            }),
            &signing,
            now,
        )?;
        let auth_conf = format!(
            "# Written by `planetmint-streams nats-config`: include it in nats-server's configuration\n\
             # (`include auth.conf`). Operator mode: the operator below trusts the account\n\
             # {account_name} ({account_pub}), JetStream enabled, whose signing key signs the\n\
             # node's publisher and the user JWTs the node hands to clients.\n\
             operator: \"{operator_jwt}\"\n\
             system_account: {system_pub}\n\
             resolver: MEMORY\n\
             resolver_preload: {{\n  \
               {system_pub}: \"{system_jwt}\"\n  \
               {account_pub}: \"{account_jwt}\"\n\
             }}\n",
            account_pub = account.public_key(),
            system_pub = system.public_key(),
        );
        Ok(Self {
            auth_conf,
            publisher_creds: creds_file(&publisher_jwt, &seed(&publisher)?),
            account_signing_seed: format!("{}\n", seed(&signing)?),
            account: account.public_key(),
        })
    }

    /// Writes the three files into `dir` (created if missing); the two secrets readable by
    /// their owner only. Refuses to replace existing files unless `force`.
    pub fn write_to(&self, dir: &Path, force: bool) -> Result<Vec<PathBuf>, CredentialsError> {
        let io = |path: &Path, source| CredentialsError::Io {
            key: "--out",
            path: path.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let files = [
            (AUTH_CONF, &self.auth_conf, 0o644),
            (PUBLISHER_CREDS, &self.publisher_creds, 0o600),
            (ACCOUNT_SIGNING_KEY, &self.account_signing_seed, 0o600),
        ];
        if !force {
            if let Some((name, _, _)) = files.iter().find(|(name, _, _)| dir.join(name).exists()) {
                return Err(CredentialsError::Exists(dir.join(name)));
            }
        }
        let mut written = Vec::new();
        for (name, text, mode) in files {
            let path = dir.join(name);
            let _ = std::fs::remove_file(&path);
            let mut file = {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&path)
                    .map_err(|e| io(&path, e))?
            };
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| io(&path, e))?;
            written.push(path);
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use planetmint_streams_model::vocabulary::StreamKind;

    #[test]
    fn the_consumer_name_is_speedracers() {
        // Python: hashlib.md5(b"wallet-1").hexdigest() == "e5a658e2c44361998573f906b99d7576"
        assert_eq!(
            consumer_name("wallet-1"),
            "e5a658e2c44361998573f906b99d7570"
        );
    }

    fn config_with(dir: &Path, setup: &NatsSetup) -> NatsConfig {
        setup.write_to(dir, false).expect("written");
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            credentials_file: Some(dir.join(PUBLISHER_CREDS)),
            account_signing_key_file: Some(dir.join(ACCOUNT_SIGNING_KEY)),
            ..NatsConfig::default()
        }
    }

    #[test]
    fn user_jwts_are_bearer_scoped_to_one_dataset_and_signed_for_the_account() {
        let dir = tempfile_dir();
        let setup = NatsSetup::generate("planetmint").expect("keys");
        let issuer = Issuer::from_config(&config_with(dir.path(), &setup)).expect("issuer");
        assert!(!issuer.is_ephemeral());
        assert_eq!(issuer.account(), setup.account);
        let identity = Identity {
            cn: "wallet-1".into(),
            anonymous: false,
        };
        let names = StreamNames::new("", StreamKind::ValidBlocks);
        let token = issuer.user_jwt(&identity, &names, 1_000).expect("jwt");
        let claims = jwt::claims_unverified(&token).expect("claims");
        let nats = &claims["nats"];
        assert_eq!(nats["bearer_token"], true);
        assert_eq!(nats["issuer_account"], setup.account.as_str());
        assert_eq!(claims["exp"], 1_000 + 3_600);
        let allowed: Vec<&str> = nats["pub"]["allow"]
            .as_array()
            .expect("allow")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let consumer = consumer_name("wallet-1");
        assert!(allowed
            .contains(&format!("$JS.API.CONSUMER.MSG.NEXT.valid_blocks.{consumer}").as_str()));
        assert!(allowed.iter().all(|s| !s.contains("valid_transactions")));
        assert_eq!(
            nats["sub"]["allow"],
            serde_json::json!(["_INBOX.>", "valid_blocks"])
        );
        // The signing key signed it.
        let seed = std::fs::read_to_string(dir.path().join(ACCOUNT_SIGNING_KEY)).expect("seed");
        let signer = KeyPair::from_seed(seed.trim()).expect("seed");
        jwt::verify(&token, &signer.public_key(), 1_001).expect("verifies");
    }

    #[test]
    fn gateway_jwts_round_trip_and_foreign_ones_are_refused() {
        let issuer = Issuer::from_config(&NatsConfig::default()).expect("ephemeral");
        assert!(issuer.is_ephemeral());
        let identity = Identity {
            cn: "wallet-1".into(),
            anonymous: false,
        };
        let token = issuer.gateway_jwt(&identity, 1_000).expect("jwt");
        let claims = jwt::claims_unverified(&token).expect("claims");
        assert_eq!(claims["CN"], "wallet-1");
        assert_eq!(claims["consumer"], consumer_name("wallet-1"));
        assert_eq!(
            issuer.verify_gateway_jwt(&token, 1_001),
            Ok(identity.clone())
        );
        assert_eq!(
            issuer.verify_gateway_jwt(&token, 1_000 + 3_600),
            Err(JwtError::Expired)
        );
        let other = Issuer::from_config(&NatsConfig::default()).expect("ephemeral");
        assert_eq!(
            other.verify_gateway_jwt(&token, 1_001),
            Err(JwtError::UntrustedIssuer)
        );
        // A user JWT from the same key is not a gateway JWT.
        let names = StreamNames::new("", StreamKind::ValidBlocks);
        let user = issuer.user_jwt(&identity, &names, 1_000).expect("jwt");
        assert_eq!(
            issuer.verify_gateway_jwt(&user, 1_001),
            Err(JwtError::WrongKind("gateway"))
        );
    }

    #[test]
    fn nats_config_files_hold_what_the_server_and_the_node_read() {
        let dir = tempfile_dir();
        let setup = NatsSetup::generate("planetmint").expect("keys");
        let written = setup.write_to(dir.path(), false).expect("written");
        assert_eq!(written.len(), 3);
        assert!(matches!(
            setup.write_to(dir.path(), false),
            Err(CredentialsError::Exists(_))
        ));
        setup.write_to(dir.path(), true).expect("forced");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(PUBLISHER_CREDS))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let conf = std::fs::read_to_string(dir.path().join(AUTH_CONF)).expect("conf");
        assert!(conf.contains("resolver: MEMORY"));
        assert!(conf.contains(&format!("{}: \"eyJ", setup.account)));
        let creds = std::fs::read_to_string(dir.path().join(PUBLISHER_CREDS)).expect("creds");
        let publisher = jwt::claims_unverified(creds_jwt(&creds).expect("jwt")).expect("claims");
        assert_eq!(publisher["nats"]["issuer_account"], setup.account.as_str());
        assert_eq!(account_of_creds(&creds).expect("account"), setup.account);
    }

    #[test]
    fn the_identity_is_the_certificates_subject_cn() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wallet-1");
        let cert = params.self_signed(&key).expect("certificate");
        assert_eq!(certificate_cn(cert.der()).as_deref(), Some("wallet-1"));
        let mut without = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        without.distinguished_name = rcgen::DistinguishedName::new();
        let cert = without.self_signed(&key).expect("certificate");
        assert_eq!(certificate_cn(cert.der()), None);
        assert_eq!(certificate_cn(b"not DER"), None);
    }

    fn tempfile_dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("temporary directory")
    }
}
