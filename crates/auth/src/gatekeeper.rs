//! One verifier for every way in: [`Gatekeeper::verify`] takes whatever credential a client
//! presented ([`Credential`]: a stream token from `?token=` or JSON-RPC `authenticate`, a
//! client id and secret from stream-sea's `basic`, a JWT from stream-sea's `jwt`, or an
//! `Authorization: Bearer` value) and answers what it allows ([`Access`]) or why not
//! ([`AuthError`]).
//!
//! - In open mode (`auth.mode = "open"`) every credential, valid or not, gets
//!   [`Access::unrestricted`]: as the URL streams need none.
//! - In signed mode: stream tokens are verified by the node's [`TokenAuthority`]; client
//!   secrets against the configured clients ([`crate::client`]); JWTs against the configured
//!   JWT keys ([`crate::jwt`]). A `basic` secret of a stream token's form (`v1.…`) is taken as
//!   a stream token (stream-sea clients put the token there; the client id is then not
//!   trusted). A bearer value is told apart by form: `v1.` and four parts is a stream token,
//!   three base64url parts a JWT.
//!
//! The configured clients and JWT keys can be replaced while the node runs:
//! [`Gatekeeper::reload`] re-reads the clients file, the clients' secret files, the JWT key
//! files and the JWKS file, and swaps them in only when all of them are good; otherwise the
//! old set stays and the error names the entry and key. Verifications in flight keep the set
//! they started with.
//!
//! [`Gatekeeper::acquire`] applies a client's own connection cap (`max_connections`): it
//! counts open connections per [`Principal`] and hands out a permit that gives its place back
//! when dropped.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use planetmint_streams_model::ConfigProblem;

use crate::access::{Access, Principal};
use crate::claims::Requested;
use crate::client::{self, ClientSet};
use crate::config::AuthConfig;
use crate::error::AuthError;
use crate::jwt::{looks_like_jwt, JwtVerifier};
use crate::secret::REDACTED;
use crate::token::{key_id_of, looks_like_stream_token, unix_now, TokenAuthority};

/// A credential as a client presented it. `Debug` shows client ids, never secrets, tokens or
/// JWTs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// A stream token: the `token` query parameter, JSON-RPC `authenticate {"token"}`.
    StreamToken(&'a str),
    /// stream-sea's `basic`: a configured client's id and secret, or any id and a stream
    /// token as the secret.
    ClientSecret {
        /// The client id (`clientId`).
        client_id: &'a str,
        /// The secret (`clientSecret`).
        secret: &'a str,
    },
    /// stream-sea's `jwt`: a JWT of the operator's identity provider. The client id is not
    /// trusted (it is not signed); log it if useful.
    Jwt {
        /// The client id (`clientId`), if sent.
        client_id: Option<&'a str>,
        /// The JWT.
        jwt: &'a str,
    },
    /// The value after `Authorization: Bearer `: a stream token or a JWT, told apart by form
    /// (see [`Credential::from_authorization`]).
    Bearer(&'a str),
}

impl<'a> Credential<'a> {
    /// The credential of an `Authorization` header value: `Bearer <stream token or JWT>`
    /// (scheme in any case). Missing or empty: [`AuthError::Missing`]; another scheme:
    /// [`AuthError::Malformed`].
    pub fn from_authorization(header: Option<&'a str>) -> Result<Self, AuthError> {
        let header = header.map(str::trim).ok_or(AuthError::Missing)?;
        if header.is_empty() {
            return Err(AuthError::Missing);
        }
        let (scheme, value) = header.split_once(' ').ok_or(AuthError::Malformed(
            "expected Authorization: Bearer <token>",
        ))?;
        let value = value.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || value.is_empty() {
            return Err(AuthError::Malformed(
                "expected Authorization: Bearer <token>",
            ));
        }
        Ok(Credential::Bearer(value))
    }

    /// A short stable label of the way it came, for metrics: `stream_token`,
    /// `client_secret`, `jwt` or `bearer`.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::StreamToken(_) => "stream_token",
            Credential::ClientSecret { .. } => "client_secret",
            Credential::Jwt { .. } => "jwt",
            Credential::Bearer(_) => "bearer",
        }
    }
}

impl fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::StreamToken(_) => f.debug_tuple("StreamToken").field(&REDACTED).finish(),
            Credential::ClientSecret { client_id, .. } => f
                .debug_struct("ClientSecret")
                .field("client_id", client_id)
                .field("secret", &REDACTED)
                .finish(),
            Credential::Jwt { client_id, .. } => f
                .debug_struct("Jwt")
                .field("client_id", client_id)
                .field("jwt", &REDACTED)
                .finish(),
            Credential::Bearer(_) => f.debug_tuple("Bearer").field(&REDACTED).finish(),
        }
    }
}

/// What a successful [`Gatekeeper::reload`] put in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// Configured clients now held.
    pub clients: usize,
    /// JWT keys now held.
    pub jwt_keys: usize,
}

/// The part of the credentials that a reload replaces.
#[derive(Debug)]
struct Reloadable {
    clients: ClientSet,
    jwt: Option<JwtVerifier>,
}

impl Reloadable {
    fn load(config: &AuthConfig) -> Result<Self, ConfigProblem> {
        Ok(Self {
            clients: client::load(&config.clients, config.clients_file.as_deref())?,
            jwt: config.jwt.load()?,
        })
    }
}

struct Inner {
    config: AuthConfig,
    tokens: Option<TokenAuthority>,
    current: RwLock<Arc<Reloadable>>,
    connections: Mutex<HashMap<Principal, usize>>,
}

/// The node's verifier of every credential (see the [module documentation](self)). Cheap to
/// clone: clones share the credentials, their reloads and the connection counts.
#[derive(Clone)]
pub struct Gatekeeper {
    inner: Arc<Inner>,
}

impl Gatekeeper {
    /// Validates `config` and reads every file it names (signing keys, the clients file,
    /// secret files, JWT keys, the JWKS file). Errors name the key, and the entry for clients
    /// and JWT keys.
    pub fn new(config: &AuthConfig) -> Result<Self, ConfigProblem> {
        config.validate()?;
        let tokens = if config.keys.is_empty() {
            None
        } else {
            Some(config.authority()?)
        };
        let current = Reloadable::load(config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                config: config.clone(),
                tokens,
                current: RwLock::new(Arc::new(current)),
                connections: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// True in signed mode; in open mode every credential gets [`Access::unrestricted`].
    pub fn is_signed(&self) -> bool {
        self.inner.config.is_signed()
    }

    /// The stream token issuer and verifier, when signing keys are configured.
    pub fn token_authority(&self) -> Option<&TokenAuthority> {
        self.inner.tokens.as_ref()
    }

    /// Verifies a credential at the current time: what it allows, or why it is refused.
    pub fn verify(&self, credential: Credential<'_>) -> Result<Access, AuthError> {
        self.verify_at(credential, unix_now())
    }

    /// Verifies a credential as [`Gatekeeper::verify`] does, at time `now` (unix seconds).
    pub fn verify_at(&self, credential: Credential<'_>, now: u64) -> Result<Access, AuthError> {
        if !self.is_signed() {
            return Ok(Access::unrestricted());
        }
        match credential {
            Credential::StreamToken(token) => self.stream_token(token, now),
            Credential::ClientSecret { client_id, secret } => {
                if looks_like_stream_token(secret) {
                    self.stream_token(secret, now)
                } else {
                    self.client(client_id, secret)
                }
            }
            Credential::Jwt { jwt, .. } => self.jwt(jwt, now),
            Credential::Bearer(value) => {
                let value = value.trim();
                if value.is_empty() {
                    Err(AuthError::Missing)
                } else if looks_like_stream_token(value) {
                    self.stream_token(value, now)
                } else if looks_like_jwt(value) {
                    self.jwt(value, now)
                } else {
                    Err(AuthError::Malformed(
                        "a bearer credential is a stream token (v1.…) or a JWT",
                    ))
                }
            }
        }
    }

    /// Verifies a credential and checks that it allows `requested`; returns what it allows
    /// (e.g. for closing the connection at [`Access::expires_at`]).
    pub fn authorize(
        &self,
        credential: Credential<'_>,
        requested: &Requested<'_>,
    ) -> Result<Access, AuthError> {
        let access = self.verify(credential)?;
        access.allows(requested)?;
        Ok(access)
    }

    fn stream_token(&self, token: &str, now: u64) -> Result<Access, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let Some(authority) = &self.inner.tokens else {
            return Err(match key_id_of(token) {
                Some(key_id) => AuthError::UnknownKey(key_id.to_owned()),
                None => AuthError::Malformed("expected v1.<key id>.<claims>.<tag>"),
            });
        };
        let claims = authority.verify_at(token, now)?;
        Ok(Access {
            principal: Principal::StreamToken {
                key_id: key_id_of(token).map(str::to_owned),
            },
            ..Access::from(claims)
        })
    }

    fn client(&self, client_id: &str, secret: &str) -> Result<Access, AuthError> {
        let current = self.current();
        let client = current.clients.verify(client_id, secret)?;
        Ok(Access {
            principal: Principal::Client {
                id: client.id.clone(),
            },
            streams: client.grant.streams.clone(),
            pins: client.grant.pins.clone(),
            expires_at: None,
            max_connections: client.grant.max_connections,
        })
    }

    fn jwt(&self, jwt: &str, now: u64) -> Result<Access, AuthError> {
        let current = self.current();
        match &current.jwt {
            Some(verifier) => verifier.verify_at(jwt, now),
            None => Err(AuthError::UnknownJwtKey),
        }
    }

    fn current(&self) -> Arc<Reloadable> {
        self.inner
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Re-reads the clients file, the clients' secret files, the JWT key files and the JWKS
    /// file, and puts the new set in place when every one is good. On an error the old set
    /// stays and the error names the entry and key. (Inline `[[auth.clients]]` entries and
    /// other settings come from the configuration the node started with.)
    pub fn reload(&self) -> Result<ReloadOutcome, ConfigProblem> {
        let fresh = Reloadable::load(&self.inner.config)?;
        let outcome = ReloadOutcome {
            clients: fresh.clients.len(),
            jwt_keys: fresh.jwt.as_ref().map_or(0, JwtVerifier::key_count),
        };
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
        Ok(outcome)
    }

    /// The files a reload re-reads, for watching their modification times.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let config = &self.inner.config;
        let mut files: Vec<PathBuf> = config.clients_file.iter().cloned().collect();
        files.extend(config.clients.iter().filter_map(|c| c.secret_file.clone()));
        files.extend(config.jwt.files());
        files
    }

    /// Configured clients held now.
    pub fn client_count(&self) -> usize {
        self.current().clients.len()
    }

    /// JWT keys held now.
    pub fn jwt_key_count(&self) -> usize {
        self.current()
            .jwt
            .as_ref()
            .map_or(0, JwtVerifier::key_count)
    }

    /// Takes a place for one connection under the credential's own cap
    /// ([`Access::max_connections`]); the place is given back when the permit is dropped.
    /// Without a cap the permit counts nothing. A full cap: [`AuthError::TooManyConnections`].
    pub fn acquire(&self, access: &Access) -> Result<ConnectionPermit, AuthError> {
        let Some(limit) = access.max_connections else {
            return Ok(ConnectionPermit { held: None });
        };
        let mut open = self
            .inner
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(access.principal.clone()).or_insert(0);
        if *count >= limit {
            return Err(AuthError::TooManyConnections { limit });
        }
        *count += 1;
        Ok(ConnectionPermit {
            held: Some((self.inner.clone(), access.principal.clone())),
        })
    }

    /// Connections `principal` holds permits for now.
    pub fn open_connections(&self, principal: &Principal) -> usize {
        self.inner
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(principal)
            .copied()
            .unwrap_or(0)
    }
}

impl fmt::Debug for Gatekeeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gatekeeper")
            .field("mode", &self.inner.config.mode)
            .field("tokens", &self.inner.tokens)
            .field("clients", &self.client_count())
            .field("jwt_keys", &self.jwt_key_count())
            .finish()
    }
}

/// A place under a credential's connection cap, given back on drop (see
/// [`Gatekeeper::acquire`]).
#[must_use = "the place is given back as soon as the permit is dropped"]
pub struct ConnectionPermit {
    held: Option<(Arc<Inner>, Principal)>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let Some((inner, principal)) = self.held.take() else {
            return;
        };
        let mut open = inner
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&principal) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&principal);
            }
        }
    }
}

impl fmt::Debug for ConnectionPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionPermit")
            .field("principal", &self.held.as_ref().map(|(_, p)| p))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use super::*;
    use crate::claims::{Grant, Stream};
    use crate::client::{ClientConfig, SecretHash};
    use crate::config::{AuthMode, KeyConfig};
    use crate::jwt::tests::{good_claims, key_config, sign, NOW};
    use crate::jwt::{JwtAlgorithm, JwtConfig};
    use crate::secret::{write_secret_file, SecretString};

    const KEY_HEX: &str = "8f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
    const ACME_SECRET: &str = "acme-secret-acme-secret-acme-secret-acme";
    const OTHER_SECRET: &str = "other-secret-other-secret-other-secret-00";
    const K1: &str = "4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW";

    fn client(id: &str, secret: &str, streams: &[&str]) -> ClientConfig {
        ClientConfig {
            id: id.into(),
            secret_hash: Some(SecretHash::new(secret).expect("hash").to_string()),
            streams: streams.iter().map(|s| s.to_string()).collect(),
            ..ClientConfig::default()
        }
    }

    fn signed() -> AuthConfig {
        AuthConfig {
            mode: AuthMode::Signed,
            keys: vec![KeyConfig {
                id: "k1".into(),
                secret: Some(SecretString::new(KEY_HEX)),
                secret_file: None,
            }],
            clients: vec![ClientConfig {
                public_keys: BTreeSet::from([K1.to_owned()]),
                max_connections: Some(2),
                ..client("acme", ACME_SECRET, &["valid_transactions"])
            }],
            jwt: JwtConfig {
                keys: vec![key_config(JwtAlgorithm::EdDSA, None)],
                ..JwtConfig::default()
            },
            ..AuthConfig::default()
        }
    }

    fn token(gate: &Gatekeeper, streams: &[Stream]) -> String {
        gate.token_authority()
            .expect("keys")
            .issue_at(&Grant::new(streams.iter().copied()), None, NOW)
            .expect("issue")
            .token
    }

    #[test]
    fn open_mode_lets_any_credential_through_unrestricted() {
        let gate = Gatekeeper::new(&AuthConfig::default()).expect("gate");
        assert!(!gate.is_signed());
        for credential in [
            Credential::StreamToken("junk"),
            Credential::ClientSecret {
                client_id: "nobody",
                secret: "nothing",
            },
            Credential::Jwt {
                client_id: None,
                jwt: "a.b.c",
            },
            Credential::Bearer(""),
        ] {
            assert_eq!(
                gate.verify_at(credential, NOW),
                Ok(Access::unrestricted()),
                "{credential:?}"
            );
        }
    }

    #[test]
    fn a_configured_client_is_admitted_with_its_grant_and_others_are_refused() {
        let gate = Gatekeeper::new(&signed()).expect("gate");
        let access = gate
            .verify_at(
                Credential::ClientSecret {
                    client_id: "acme",
                    secret: ACME_SECRET,
                },
                NOW,
            )
            .expect("admitted");
        assert_eq!(access.principal, Principal::Client { id: "acme".into() });
        assert_eq!(access.streams, BTreeSet::from([Stream::ValidTransactions]));
        assert_eq!(access.pins.public_keys, BTreeSet::from([K1.to_owned()]));
        assert_eq!(access.expires_at, None);
        assert_eq!(access.max_connections, Some(2));
        assert_eq!(
            gate.verify_at(
                Credential::ClientSecret {
                    client_id: "acme",
                    secret: OTHER_SECRET
                },
                NOW
            ),
            Err(AuthError::BadClientSecret)
        );
        assert_eq!(
            gate.verify_at(
                Credential::ClientSecret {
                    client_id: "nobody",
                    secret: ACME_SECRET
                },
                NOW
            ),
            Err(AuthError::UnknownClient)
        );
    }

    #[test]
    fn a_stream_token_is_accepted_in_every_place_a_token_can_be() {
        let gate = Gatekeeper::new(&signed()).expect("gate");
        let token = token(&gate, &[Stream::ValidBlocks]);
        for credential in [
            Credential::StreamToken(&token),
            Credential::ClientSecret {
                client_id: "whatever-the-client-says",
                secret: &token,
            },
            Credential::Bearer(&token),
        ] {
            let access = gate.verify_at(credential, NOW + 1).expect("token");
            assert_eq!(
                access.principal,
                Principal::StreamToken {
                    key_id: Some("k1".into())
                },
                "{credential:?}"
            );
            assert_eq!(access.streams, BTreeSet::from([Stream::ValidBlocks]));
            assert_eq!(access.expires_at, Some(NOW + 120));
        }
        assert!(matches!(
            gate.verify_at(Credential::StreamToken(&token), NOW + 120),
            Err(AuthError::Expired { .. })
        ));
        let forged = format!("{}x", &token[..token.len() - 1]);
        assert!(gate
            .verify_at(
                Credential::ClientSecret {
                    client_id: "acme",
                    secret: &forged
                },
                NOW
            )
            .is_err());
    }

    #[test]
    fn bearer_tells_stream_tokens_from_jwts_by_form() {
        let gate = Gatekeeper::new(&signed()).expect("gate");
        let jwt = sign(JwtAlgorithm::EdDSA, "a", None, &good_claims());
        let access = gate.verify_at(Credential::Bearer(&jwt), NOW).expect("jwt");
        assert_eq!(access.principal.kind(), "jwt");
        let token = token(&gate, &Stream::ALL);
        let access = gate
            .verify_at(Credential::Bearer(&token), NOW)
            .expect("token");
        assert_eq!(access.principal.kind(), "stream_token");
        assert_eq!(
            gate.verify_at(Credential::Bearer(ACME_SECRET), NOW),
            Err(AuthError::Malformed(
                "a bearer credential is a stream token (v1.…) or a JWT"
            ))
        );
        assert_eq!(
            gate.verify_at(Credential::Bearer("  "), NOW),
            Err(AuthError::Missing)
        );
        let header = format!("bearer {jwt}");
        let credential = Credential::from_authorization(Some(&header)).expect("parses");
        assert_eq!(credential, Credential::Bearer(&jwt));
        assert!(gate.verify_at(credential, NOW).is_ok());
        assert_eq!(
            Credential::from_authorization(None),
            Err(AuthError::Missing)
        );
        assert!(matches!(
            Credential::from_authorization(Some(&format!("Basic {jwt}"))),
            Err(AuthError::Malformed(_))
        ));
        // stream-sea's jwt method takes JWTs only.
        assert!(gate
            .verify_at(
                Credential::Jwt {
                    client_id: Some("x"),
                    jwt: &token
                },
                NOW
            )
            .is_err());
        assert!(gate
            .verify_at(
                Credential::Jwt {
                    client_id: Some("x"),
                    jwt: &jwt
                },
                NOW
            )
            .is_ok());
    }

    #[test]
    fn without_jwt_keys_or_signing_keys_those_credentials_are_refused() {
        let config = AuthConfig {
            jwt: JwtConfig::default(),
            ..signed()
        };
        let gate = Gatekeeper::new(&config).expect("gate");
        let jwt = sign(JwtAlgorithm::EdDSA, "a", None, &good_claims());
        assert_eq!(
            gate.verify_at(
                Credential::Jwt {
                    client_id: None,
                    jwt: &jwt
                },
                NOW
            ),
            Err(AuthError::UnknownJwtKey)
        );
        assert_eq!(gate.jwt_key_count(), 0);
        assert_eq!(gate.client_count(), 1);
    }

    #[test]
    fn reload_replaces_the_clients_and_a_bad_reload_keeps_the_old_set() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("clients.toml");
        let write = |entries: &[ClientConfig]| {
            let file = crate::client::ClientsFile {
                clients: entries.to_vec(),
            };
            std::fs::write(&path, toml::to_string(&file).expect("toml")).expect("write");
        };
        write(&[client("first", ACME_SECRET, &["valid_blocks"])]);
        let gate = Gatekeeper::new(&AuthConfig {
            clients: vec![],
            clients_file: Some(path.clone()),
            ..signed()
        })
        .expect("gate");
        assert_eq!(
            gate.watched_files(),
            vec![path.clone(), crate::jwt::tests::fixture("ed25519-a.pub")]
        );
        let basic = |id: &'static str, secret: &'static str| Credential::ClientSecret {
            client_id: id,
            secret,
        };
        assert!(gate.verify_at(basic("first", ACME_SECRET), NOW).is_ok());

        write(&[client("second", OTHER_SECRET, &["valid_transactions"])]);
        let outcome = gate.reload().expect("reloads");
        assert_eq!(
            outcome,
            ReloadOutcome {
                clients: 1,
                jwt_keys: 1
            }
        );
        assert_eq!(
            gate.verify_at(basic("first", ACME_SECRET), NOW),
            Err(AuthError::UnknownClient),
            "the old client is gone"
        );
        let clone = gate.clone();
        assert!(
            clone.verify_at(basic("second", OTHER_SECRET), NOW).is_ok(),
            "clones see it"
        );

        std::fs::write(
            &path,
            format!(
                "{}\n[[clients]]\nid = \"third\"\nsecret_hash = \"not-a-hash\"\nstreams = [\"valid_blocks\"]\n",
                std::fs::read_to_string(&path).expect("read")
            ),
        )
        .expect("write");
        let problem = gate.reload().expect_err("bad entry");
        assert_eq!(problem.key, "auth.clients_file");
        for part in ["entry 2", "\"third\"", "secret_hash"] {
            assert!(problem.problem.contains(part), "{problem} lacks {part}");
        }
        assert!(
            gate.verify_at(basic("second", OTHER_SECRET), NOW).is_ok(),
            "the old set stays"
        );
        std::fs::remove_file(&path).expect("rm");
        assert!(
            gate.reload().is_err(),
            "a missing file keeps the old set too"
        );
        assert_eq!(gate.client_count(), 1);
    }

    #[test]
    fn reload_replaces_the_jwt_keys_from_the_jwks_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("jwks.json");
        let jwk = |algorithm: JwtAlgorithm, kid: &str| {
            let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(
                &crate::jwt::tests::signing_key(algorithm, "a"),
                match algorithm {
                    JwtAlgorithm::ES256 => jsonwebtoken::Algorithm::ES256,
                    _ => jsonwebtoken::Algorithm::EdDSA,
                },
            )
            .expect("jwk");
            jwk.common.key_id = Some(kid.into());
            json!({ "keys": [jwk] }).to_string()
        };
        std::fs::write(&path, jwk(JwtAlgorithm::ES256, "2025a")).expect("write");
        let gate = Gatekeeper::new(&AuthConfig {
            jwt: JwtConfig {
                jwks_file: Some(path.clone()),
                ..JwtConfig::default()
            },
            ..signed()
        })
        .expect("gate");
        let es = sign(JwtAlgorithm::ES256, "a", Some("2025a"), &good_claims());
        let ed = sign(JwtAlgorithm::EdDSA, "a", Some("2025b"), &good_claims());
        let jwt = |jwt: &str| {
            gate.verify_at(
                Credential::Jwt {
                    client_id: None,
                    jwt,
                },
                NOW,
            )
        };
        assert!(jwt(&es).is_ok());
        assert_eq!(jwt(&ed), Err(AuthError::UnknownJwtKey));
        std::fs::write(&path, jwk(JwtAlgorithm::EdDSA, "2025b")).expect("write");
        gate.reload().expect("reload");
        assert!(jwt(&ed).is_ok(), "the rotated key");
        assert_eq!(jwt(&es), Err(AuthError::UnknownJwtKey), "the retired key");
        std::fs::write(&path, "{\"keys\": []}").expect("write");
        let problem = gate.reload().expect_err("no keys");
        assert_eq!(problem.key, "auth.jwt.jwks_file");
        assert!(jwt(&ed).is_ok(), "kept");
    }

    #[test]
    fn a_clients_own_connection_cap_is_counted_across_clones() {
        let gate = Gatekeeper::new(&signed()).expect("gate");
        let access = gate
            .verify_at(
                Credential::ClientSecret {
                    client_id: "acme",
                    secret: ACME_SECRET,
                },
                NOW,
            )
            .expect("admitted");
        let first = gate.acquire(&access).expect("1");
        let second = gate.clone().acquire(&access).expect("2");
        assert_eq!(gate.open_connections(&access.principal), 2);
        let refused = gate.acquire(&access).expect_err("3");
        assert_eq!(refused, AuthError::TooManyConnections { limit: 2 });
        assert_eq!(refused.status(), 429);
        drop(first);
        let third = gate.acquire(&access).expect("a place came free");
        drop((second, third));
        assert_eq!(gate.open_connections(&access.principal), 0);
        // Credentials without a cap are not counted.
        let unlimited = Access::unrestricted();
        let permits: Vec<_> = (0..100)
            .map(|_| gate.acquire(&unlimited).expect("no cap"))
            .collect();
        assert_eq!(gate.open_connections(&Principal::Anonymous), 0);
        drop(permits);
    }

    #[test]
    fn secrets_tokens_and_jwts_never_show_in_errors_or_debug_output() {
        let dir = tempfile::tempdir().expect("tmp");
        let secret_file = dir.path().join("beta.secret");
        write_secret_file(&secret_file, "beta-file-secret-beta-file-secret-beta").expect("write");
        let mut config = signed();
        config.clients.push(ClientConfig {
            id: "beta".into(),
            secret_file: Some(secret_file),
            streams: vec!["valid_blocks".into()],
            ..ClientConfig::default()
        });
        config
            .jwt
            .keys
            .push(key_config(JwtAlgorithm::HS256, Some("hs")));
        let gate = Gatekeeper::new(&config).expect("gate");
        let token = token(&gate, &Stream::ALL);
        let jwt = sign(JwtAlgorithm::EdDSA, "b", None, &good_claims());
        let mut expired_claims = good_claims();
        expired_claims["exp"] = json!(NOW - 600);
        let expired = sign(JwtAlgorithm::EdDSA, "a", None, &expired_claims);
        let secrets = [
            ACME_SECRET,
            OTHER_SECRET,
            "beta-file-secret-beta-file-secret-beta",
            KEY_HEX,
            crate::jwt::tests::HS_SECRET,
            &token,
            &jwt,
            &expired,
        ];
        let tampered = format!("{token}A");
        let attempts = [
            Credential::ClientSecret {
                client_id: "acme",
                secret: OTHER_SECRET,
            },
            Credential::ClientSecret {
                client_id: "nobody",
                secret: ACME_SECRET,
            },
            Credential::ClientSecret {
                client_id: "acme",
                secret: &tampered,
            },
            Credential::StreamToken(&tampered),
            Credential::Jwt {
                client_id: Some("acme"),
                jwt: &jwt,
            },
            Credential::Jwt {
                client_id: None,
                jwt: &expired,
            },
            Credential::Bearer(OTHER_SECRET),
            Credential::Bearer(&jwt),
        ];
        let mut shown = vec![format!("{gate:?}"), format!("{config:?}")];
        for credential in attempts {
            shown.push(format!("{credential:?}"));
            let err = gate.verify_at(credential, NOW).expect_err("refused");
            shown.push(err.to_string());
            shown.push(format!("{err:?}"));
        }
        let ok = gate
            .verify_at(
                Credential::ClientSecret {
                    client_id: "beta",
                    secret: secrets[2],
                },
                NOW,
            )
            .expect("beta");
        shown.push(format!("{ok:?}"));
        shown.push(format!("{:?}", gate.acquire(&ok).expect("permit")));
        for text in &shown {
            for secret in &secrets {
                assert!(!text.contains(secret), "{text} shows a secret");
            }
        }
    }
}
