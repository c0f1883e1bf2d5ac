//! JWTs issued by the operator's identity provider (`[auth.jwt]`): the keys they are verified
//! with, the checks of their claims, and what they allow.
//!
//! Keys come from configuration (`[[auth.jwt.keys]]`: an HS256 secret, or an EdDSA, ES256 or
//! RS256 public key as a PEM file) and/or a JWKS file (`auth.jwt.jwks_file`, the identity
//! provider's published key set saved to disk). A JWT's header chooses the key: by `kid` when
//! a key has that id, otherwise among the keys without an id, always of the header's `alg`
//! (never another algorithm with the same key). Verification uses the `jsonwebtoken` crate
//! with its RustCrypto backend (ADR 0006).
//!
//! Checks, in order: the form (three base64url parts, at most [`MAX_JWT_LEN`] characters) and
//! a readable header (else 401 `malformed_jwt`); a key for its `kid`/`alg` (403
//! `unknown_jwt_key`); the signature (403 `bad_jwt_signature`); then the claims, now trusted:
//! `exp` present (403 `jwt_rejected`), `iss`/`aud` as configured (403 `jwt_rejected`), `now <
//! exp + leeway` (403 `expired`), `nbf`/`iat` not beyond `now + leeway` (403 `bad_lifetime`),
//! the streams claim naming at least one stream and the pin claims holding valid values (403
//! `jwt_rejected`).
//!
//! The streams claim (`auth.jwt.streams_claim`, default `streams`) is an array of stream names
//! or a space-separated string of them (as OAuth's `scope`); names that are not streams of this
//! node are ignored. Pin claims (`public_keys_claim`, `asset_ids_claim`, `operations_claim`)
//! take the same two forms; an absent pin claim leaves its dimension free.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, Validation};
use planetmint_streams_model::ConfigProblem;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::access::{Access, Principal};
use crate::claims::{Pins, Stream};
use crate::error::{AuthError, SecretError};
use crate::secret::{decode_base64, read_secret_file, SecretString};

/// Longest JWT accepted, in characters.
pub const MAX_JWT_LEN: usize = 8192;
/// Default of `auth.jwt.leeway`: 30 seconds.
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(30);
/// Largest `auth.jwt.leeway` accepted.
pub const MAX_JWT_LEEWAY: Duration = Duration::from_secs(300);
/// Default of `auth.jwt.streams_claim`.
pub const DEFAULT_STREAMS_CLAIM: &str = "streams";
/// Fewest bytes of an HS256 secret (RFC 7518 §3.2: at least the hash's size).
pub const MIN_HS256_SECRET_BYTES: usize = 32;
/// Fewest bits of an RS256 key's modulus.
pub const MIN_RSA_BITS: usize = 2048;
/// Most JWT keys held (configuration and JWKS file together).
pub const MAX_JWT_KEYS: usize = 100;
/// Largest JWKS file read.
pub const MAX_JWKS_FILE_BYTES: u64 = 1024 * 1024;
/// Largest PEM public key file read.
pub const MAX_PEM_FILE_BYTES: u64 = 64 * 1024;
/// Longest key id (`kid`) accepted in configuration.
pub const MAX_JWT_KID_LEN: usize = 128;

/// A JWT signature algorithm the node verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC-SHA-256 with a shared secret.
    HS256,
    /// Ed25519.
    EdDSA,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
}

impl JwtAlgorithm {
    fn algorithm(self) -> Algorithm {
        match self {
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::EdDSA => Algorithm::EdDSA,
            JwtAlgorithm::ES256 => Algorithm::ES256,
            JwtAlgorithm::RS256 => Algorithm::RS256,
        }
    }

    fn from_key_algorithm(alg: KeyAlgorithm) -> Option<Self> {
        match alg {
            KeyAlgorithm::HS256 => Some(JwtAlgorithm::HS256),
            KeyAlgorithm::EdDSA => Some(JwtAlgorithm::EdDSA),
            KeyAlgorithm::ES256 => Some(JwtAlgorithm::ES256),
            KeyAlgorithm::RS256 => Some(JwtAlgorithm::RS256),
            _ => None,
        }
    }
}

/// One `[[auth.jwt.keys]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtKeyConfig {
    /// The key id (`kid`) JWTs signed with it carry in their header; optional with one key
    /// per algorithm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `HS256`, `EdDSA`, `ES256` or `RS256`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<JwtAlgorithm>,
    /// HS256: the shared secret as text (its bytes as they are; `hex:` or `base64:` in front
    /// to give it encoded), at least 32 bytes. Prefer `secret_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretString>,
    /// HS256: a file holding that secret (owner-only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// EdDSA, ES256, RS256: a PEM file with the public key (`BEGIN PUBLIC KEY`; RS256 also
    /// `BEGIN RSA PUBLIC KEY`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key_file: Option<PathBuf>,
}

/// `[auth.jwt]`: JWTs from the operator's identity provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// Keys from configuration.
    pub keys: Vec<JwtKeyConfig>,
    /// A JWKS file (the identity provider's key set, e.g. saved from its `jwks_uri`), re-read
    /// on reload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
    /// When set, a JWT's `iss` must be exactly this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// When set, a JWT's `aud` must be or include this. Unset, JWTs the identity provider
    /// issued for any audience are accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Allowance for clocks: `exp` is honoured until `exp + leeway`, `nbf` and `iat` from
    /// `now + leeway`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// The claim listing the streams a JWT opens.
    pub streams_claim: String,
    /// A claim pinning `public_key` values (optional).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_keys_claim: Option<String>,
    /// A claim pinning `asset_id` values (optional).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset_ids_claim: Option<String>,
    /// A claim pinning `operation` values (optional).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operations_claim: Option<String>,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            jwks_file: None,
            issuer: None,
            audience: None,
            leeway: DEFAULT_JWT_LEEWAY,
            streams_claim: DEFAULT_STREAMS_CLAIM.to_owned(),
            public_keys_claim: None,
            asset_ids_claim: None,
            operations_claim: None,
        }
    }
}

/// Claims with a meaning of their own, which cannot name streams or pins.
const REGISTERED_CLAIMS: [&str; 7] = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"];

impl JwtConfig {
    /// True when JWTs are accepted (some key or a JWKS file is configured).
    pub fn is_enabled(&self) -> bool {
        !self.keys.is_empty() || self.jwks_file.is_some()
    }

    /// Checks the values without reading files; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigProblem> {
        let mut ids = HashSet::new();
        for (index, key) in self.keys.iter().enumerate() {
            let problem = |message: &str| {
                ConfigProblem::new(
                    "auth.jwt.keys",
                    format!("{}: {message}", key_entry_name(index, key)),
                )
            };
            if let Some(id) = &key.id {
                if !is_kid(id) {
                    return Err(problem("id must be 1 to 128 visible ASCII characters"));
                }
                if !ids.insert(id.as_str()) {
                    return Err(problem("id is given more than once"));
                }
            }
            match key.algorithm {
                None => {
                    return Err(problem(
                        "algorithm is required: HS256, EdDSA, ES256 or RS256",
                    ))
                }
                Some(JwtAlgorithm::HS256) => {
                    if key.public_key_file.is_some() {
                        return Err(problem(
                            "HS256 takes secret or secret_file, not public_key_file",
                        ));
                    }
                    match (&key.secret, &key.secret_file) {
                        (Some(secret), None) => {
                            decode_hmac_secret(secret.expose())
                                .map_err(|err| problem(&format!("secret {err}")))?;
                        }
                        (None, Some(_)) => {}
                        _ => {
                            return Err(problem(
                                "HS256 needs exactly one of secret and secret_file",
                            ))
                        }
                    }
                }
                Some(_) => {
                    if key.secret.is_some() || key.secret_file.is_some() {
                        return Err(problem(
                            "EdDSA, ES256 and RS256 take a public_key_file, not a secret",
                        ));
                    }
                    if key.public_key_file.is_none() {
                        return Err(problem("public_key_file is required"));
                    }
                }
            }
        }
        if self.keys.len() > MAX_JWT_KEYS {
            return Err(ConfigProblem::new(
                "auth.jwt.keys",
                format!("at most {MAX_JWT_KEYS} keys are accepted"),
            ));
        }
        if self.leeway > MAX_JWT_LEEWAY {
            return Err(ConfigProblem::new("auth.jwt.leeway", "must be at most 5m"));
        }
        for (key, value) in [
            ("auth.jwt.issuer", &self.issuer),
            ("auth.jwt.audience", &self.audience),
        ] {
            if value.as_deref() == Some("") {
                return Err(ConfigProblem::new(
                    key,
                    "must not be empty (leave it out instead)",
                ));
            }
        }
        let claims = [
            ("auth.jwt.streams_claim", Some(&self.streams_claim)),
            (
                "auth.jwt.public_keys_claim",
                self.public_keys_claim.as_ref(),
            ),
            ("auth.jwt.asset_ids_claim", self.asset_ids_claim.as_ref()),
            ("auth.jwt.operations_claim", self.operations_claim.as_ref()),
        ];
        let mut names = HashSet::new();
        for (key, name) in claims {
            let Some(name) = name else { continue };
            if name.is_empty() || REGISTERED_CLAIMS.contains(&name.as_str()) {
                return Err(ConfigProblem::new(
                    key,
                    "must name a claim of its own (not empty, not iss, sub, aud, exp, nbf, iat or jti)",
                ));
            }
            if !names.insert(name.as_str()) {
                return Err(ConfigProblem::new(
                    key,
                    format!("claim {name:?} is named twice"),
                ));
            }
        }
        Ok(())
    }

    /// Validates, reads key files and the JWKS file, and builds the verifier; `None` when JWTs
    /// are not accepted.
    pub(crate) fn load(&self) -> Result<Option<JwtVerifier>, ConfigProblem> {
        self.validate()?;
        if !self.is_enabled() {
            return Ok(None);
        }
        // With exactly one backend compiled in, jsonwebtoken would find it by itself; say it
        // explicitly so that another crate enabling a second backend cannot make it panic.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        let mut keys = Vec::new();
        for (index, config) in self.keys.iter().enumerate() {
            keys.push(load_configured_key(index, config)?);
        }
        if let Some(path) = &self.jwks_file {
            keys.extend(load_jwks(path)?);
        }
        let mut kids = HashSet::new();
        for key in &keys {
            if let Some(kid) = &key.kid {
                if !kids.insert(kid.clone()) {
                    return Err(ConfigProblem::new(
                        "auth.jwt.jwks_file",
                        format!("key id {kid:?} is given more than once (auth.jwt.keys and the JWKS file together)"),
                    ));
                }
            }
        }
        if keys.len() > MAX_JWT_KEYS {
            return Err(ConfigProblem::new(
                "auth.jwt.jwks_file",
                format!("{} keys, at most {MAX_JWT_KEYS} are accepted", keys.len()),
            ));
        }
        Ok(Some(JwtVerifier {
            keys,
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            leeway: self.leeway.as_secs(),
            streams_claim: self.streams_claim.clone(),
            pin_claims: [
                self.public_keys_claim.clone(),
                self.asset_ids_claim.clone(),
                self.operations_claim.clone(),
            ],
        }))
    }

    /// Files a reload re-reads: key files and the JWKS file.
    pub(crate) fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self
            .keys
            .iter()
            .flat_map(|key| [key.secret_file.clone(), key.public_key_file.clone()])
            .flatten()
            .collect();
        files.extend(self.jwks_file.clone());
        files
    }
}

fn is_kid(id: &str) -> bool {
    (1..=MAX_JWT_KID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

fn key_entry_name(index: usize, key: &JwtKeyConfig) -> String {
    match &key.id {
        Some(id) if is_kid(id) => format!("entry {} (id {id:?})", index + 1),
        _ => format!("entry {}", index + 1),
    }
}

/// An HS256 secret's bytes: the text's own bytes (surrounding whitespace ignored), or decoded
/// after `hex:` or `base64:`; at least [`MIN_HS256_SECRET_BYTES`].
fn decode_hmac_secret(text: &str) -> Result<Vec<u8>, SecretError> {
    let text = text.trim();
    let bytes = if let Some(hex_text) = text.strip_prefix("hex:") {
        hex::decode(hex_text.trim()).map_err(|_| SecretError::Encoding)?
    } else if let Some(b64_text) = text.strip_prefix("base64:") {
        decode_base64(b64_text)?
    } else {
        text.as_bytes().to_vec()
    };
    if bytes.is_empty() {
        return Err(SecretError::Empty);
    }
    if bytes.len() < MIN_HS256_SECRET_BYTES {
        return Err(SecretError::TooShort { bytes: bytes.len() });
    }
    Ok(bytes)
}

/// A verification key. `Debug` shows its id and algorithm, never its material.
#[derive(Clone)]
struct JwtKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

fn load_configured_key(index: usize, config: &JwtKeyConfig) -> Result<JwtKey, ConfigProblem> {
    let problem = |message: String| {
        ConfigProblem::new(
            "auth.jwt.keys",
            format!("{}: {message}", key_entry_name(index, config)),
        )
    };
    let algorithm = config
        .algorithm
        .ok_or_else(|| problem("algorithm is required".into()))?;
    let key = match algorithm {
        JwtAlgorithm::HS256 => {
            let secret = match (&config.secret, &config.secret_file) {
                (Some(secret), _) => secret.clone(),
                (None, Some(path)) => {
                    read_secret_file(path).map_err(|err| problem(format!("secret {err}")))?
                }
                (None, None) => return Err(problem("HS256 needs secret or secret_file".into())),
            };
            let bytes = decode_hmac_secret(secret.expose())
                .map_err(|err| problem(format!("secret {err}")))?;
            DecodingKey::from_secret(&bytes)
                .map_err(|_| problem("the secret is not usable".into()))?
        }
        _ => {
            let path = config
                .public_key_file
                .as_deref()
                .ok_or_else(|| problem("public_key_file is required".into()))?;
            let pem = read_public_pem(path).map_err(problem)?;
            let parsed = match algorithm {
                JwtAlgorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
                JwtAlgorithm::ES256 => DecodingKey::from_ec_pem(&pem),
                _ => DecodingKey::from_rsa_pem(&pem),
            };
            parsed.map_err(|_| {
                problem(format!(
                    "{} does not hold a {algorithm:?} public key in PEM",
                    path.display()
                ))
            })?
        }
    };
    let algorithm = algorithm.algorithm();
    check_usable(algorithm, &key).map_err(|message| problem(message.into()))?;
    Ok(JwtKey {
        kid: config.id.clone(),
        algorithm,
        key,
    })
}

/// Reads a PEM public key file; a private key is refused (the node needs only public keys).
fn read_public_pem(path: &Path) -> Result<Vec<u8>, String> {
    let text = read_bounded(path, MAX_PEM_FILE_BYTES)?;
    if String::from_utf8_lossy(&text).contains("PRIVATE KEY") {
        return Err(format!(
            "{} holds a private key: give the public key only (openssl pkey -in KEY -pubout)",
            path.display()
        ));
    }
    Ok(text)
}

fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    if bytes.len() as u64 > max {
        return Err(format!("{} is larger than {max} bytes", path.display()));
    }
    Ok(bytes)
}

/// Checks that `key` can verify `algorithm` (right curve, readable, RSA of at least
/// [`MIN_RSA_BITS`]), so that a bad key stops the node at start instead of refusing JWTs later.
fn check_usable(algorithm: Algorithm, key: &DecodingKey) -> Result<(), &'static str> {
    let provider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
    if algorithm == Algorithm::RS256 {
        let modulus = match key.kind() {
            DecodingKeyKind::SecretOrDer(der) => {
                (provider.key_utils.rsa_pub_components_from_public_key)(der)
                    .map_err(|_| "not a readable RSA public key")?
                    .0
            }
            DecodingKeyKind::RsaModulusExponent { n, .. } => n.clone(),
        };
        if bits(&modulus) < MIN_RSA_BITS {
            return Err("RSA keys must have at least 2048 bits");
        }
    }
    (provider.verifier_factory)(&algorithm, key)
        .map(|_| ())
        .map_err(|_| match algorithm {
            Algorithm::ES256 => "not a P-256 public key",
            Algorithm::EdDSA => "not an Ed25519 public key",
            _ => "not a usable key for its algorithm",
        })
}

/// Significant bits of a big-endian unsigned number.
fn bits(number: &[u8]) -> usize {
    match number.iter().position(|&b| b != 0) {
        Some(first) => (number.len() - first) * 8 - number[first].leading_zeros() as usize,
        None => 0,
    }
}

/// Reads a JWKS file: every signing key for one of our algorithms is taken; keys for
/// encryption or other algorithms are skipped; a key that claims one of our algorithms and
/// does not fit it is an error.
fn load_jwks(path: &Path) -> Result<Vec<JwtKey>, ConfigProblem> {
    let problem = |message: String| {
        ConfigProblem::new(
            "auth.jwt.jwks_file",
            format!("{}: {message}", path.display()),
        )
    };
    let bytes = read_bounded(path, MAX_JWKS_FILE_BYTES).map_err(problem)?;
    // serde_json's messages can quote values; give only the position.
    let set: JwkSet = serde_json::from_slice(&bytes).map_err(|err| {
        problem(format!(
            "not a JWK set ({{\"keys\": [...]}}) at line {}, column {}",
            err.line(),
            err.column()
        ))
    })?;
    let mut keys = Vec::new();
    for (index, jwk) in set.keys.iter().enumerate() {
        let name = match &jwk.common.key_id {
            Some(kid) if is_kid(kid) => format!("key {} (kid {kid:?})", index + 1),
            _ => format!("key {}", index + 1),
        };
        let key_problem = |message: &str| problem(format!("{name}: {message}"));
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            return Err(key_problem(
                "a symmetric (oct) key does not belong in a JWKS file; configure it in [[auth.jwt.keys]] with algorithm = \"HS256\" and secret_file",
            ));
        }
        if matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption) | Some(PublicKeyUse::Other(_))
        ) {
            continue;
        }
        let Some(algorithm) = jwk_algorithm(jwk) else {
            continue;
        };
        if let Some(kid) = &jwk.common.key_id {
            if !is_kid(kid) {
                return Err(key_problem("kid must be 1 to 128 visible ASCII characters"));
            }
        }
        let fits = match (&jwk.algorithm, algorithm) {
            (AlgorithmParameters::RSA(_), JwtAlgorithm::RS256) => true,
            (AlgorithmParameters::EllipticCurve(ec), JwtAlgorithm::ES256) => {
                ec.curve == EllipticCurve::P256
            }
            (AlgorithmParameters::OctetKeyPair(okp), JwtAlgorithm::EdDSA) => {
                okp.curve == EllipticCurve::Ed25519
            }
            _ => false,
        };
        if !fits {
            return Err(key_problem(&format!(
                "its key type or curve does not fit its alg {algorithm:?}"
            )));
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|_| key_problem("not a readable key"))?;
        let algorithm = algorithm.algorithm();
        check_usable(algorithm, &key).map_err(key_problem)?;
        keys.push(JwtKey {
            kid: jwk.common.key_id.clone(),
            algorithm,
            key,
        });
    }
    if keys.is_empty() {
        return Err(problem(
            "no signing key for EdDSA (Ed25519), ES256 (P-256) or RS256 in it".into(),
        ));
    }
    Ok(keys)
}

/// The algorithm a JWK is for: its `alg`, else what its key type implies; `None` for keys
/// this node does not verify with.
fn jwk_algorithm(jwk: &Jwk) -> Option<JwtAlgorithm> {
    match jwk.common.key_algorithm {
        Some(alg) => JwtAlgorithm::from_key_algorithm(alg),
        None => match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Some(JwtAlgorithm::RS256),
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Some(JwtAlgorithm::ES256)
            }
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                Some(JwtAlgorithm::EdDSA)
            }
            _ => None,
        },
    }
}

/// The keys and claim rules JWTs are checked with.
#[derive(Debug, Clone)]
pub(crate) struct JwtVerifier {
    keys: Vec<JwtKey>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
    streams_claim: String,
    /// Claims pinning public keys, asset ids, operations.
    pin_claims: [Option<String>; 3],
}

/// True when `text` has a JWT's outline: three non-empty base64url parts.
pub(crate) fn looks_like_jwt(text: &str) -> bool {
    let mut parts = 0;
    for part in text.split('.') {
        parts += 1;
        if part.is_empty()
            || !part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return false;
        }
    }
    parts == 3
}

impl JwtVerifier {
    /// How many keys it holds.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Verifies `jwt` at `now` (unix seconds) by the checks of the [module
    /// documentation](self).
    pub fn verify_at(&self, jwt: &str, now: u64) -> Result<Access, AuthError> {
        if jwt.len() > MAX_JWT_LEN {
            return Err(AuthError::MalformedJwt("too long"));
        }
        if !looks_like_jwt(jwt) {
            return Err(AuthError::MalformedJwt(
                "expected three base64url parts separated by dots",
            ));
        }
        let header = jsonwebtoken::decode_header(jwt).map_err(|_| {
            AuthError::MalformedJwt("the header is not readable or names an unknown algorithm")
        })?;
        if header.crit.is_some() {
            return Err(AuthError::JwtRejected(
                "critical header parameters (crit) are not supported",
            ));
        }
        let candidates = self.candidates(header.kid.as_deref(), header.alg);
        if candidates.is_empty() {
            return Err(AuthError::UnknownJwtKey);
        }
        let validation = self.validation(header.alg);
        let mut verified = None;
        for key in candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, Value>>(jwt, &key.key, &validation)
            {
                Ok(data) => {
                    verified = Some(data.claims);
                    break;
                }
                Err(err) => match refusal(err.kind()) {
                    Some(refusal) => return Err(refusal),
                    None => continue,
                },
            }
        }
        let claims = verified.ok_or(AuthError::BadJwtSignature)?;
        self.access(&claims, now)
    }

    /// The keys a header points at: those with its `kid` when some key has it, else the keys
    /// without an id; only of its `alg`.
    fn candidates(&self, kid: Option<&str>, algorithm: Algorithm) -> Vec<&JwtKey> {
        let of_alg = || {
            self.keys
                .iter()
                .filter(move |key| key.algorithm == algorithm)
        };
        if let Some(kid) = kid {
            let named: Vec<&JwtKey> = of_alg()
                .filter(|key| key.kid.as_deref() == Some(kid))
                .collect();
            if !named.is_empty() || self.keys.iter().any(|key| key.kid.as_deref() == Some(kid)) {
                return named;
            }
            return of_alg().filter(|key| key.kid.is_none()).collect();
        }
        of_alg().collect()
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        let mut required = vec!["exp"];
        // Times are checked below against the caller's `now`.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    /// What verified claims allow, after the time checks.
    fn access(
        &self,
        claims: &serde_json::Map<String, Value>,
        now: u64,
    ) -> Result<Access, AuthError> {
        let time = |name: &str| -> Result<Option<u64>, AuthError> {
            match claims.get(name) {
                None => Ok(None),
                Some(value) => numeric_date(value)
                    .map(Some)
                    .ok_or(AuthError::JwtRejected("exp, nbf and iat must be numbers")),
            }
        };
        let expires = time("exp")?.ok_or(AuthError::JwtRejected("exp is required, as a number"))?;
        let until = expires.saturating_add(self.leeway);
        if now >= until {
            return Err(AuthError::Expired {
                expired_at: expires,
            });
        }
        if time("nbf")?.is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            return Err(AuthError::BadLifetime("not valid before its nbf"));
        }
        if time("iat")?.is_some_and(|iat| iat > now.saturating_add(self.leeway)) {
            return Err(AuthError::BadLifetime("issued in the future"));
        }
        let streams: BTreeSet<Stream> = claims
            .get(&self.streams_claim)
            .and_then(names)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|name| name.parse::<Stream>().ok())
            .collect();
        if streams.is_empty() {
            return Err(AuthError::JwtRejected(
                "its streams claim is missing or names no stream of this node",
            ));
        }
        let mut pinned: [BTreeSet<String>; 3] = Default::default();
        for (claim, values) in self.pin_claims.iter().zip(pinned.iter_mut()) {
            let Some(value) = claim.as_ref().and_then(|claim| claims.get(claim)) else {
                continue;
            };
            let list = names(value).ok_or(AuthError::JwtRejected(
                "a filter claim is neither a string nor an array of strings",
            ))?;
            values.extend(list.into_iter().map(str::to_owned));
        }
        let [public_keys, asset_ids, operations] = pinned;
        let pins = Pins {
            public_keys,
            asset_ids,
            operations,
        }
        .normalized()
        .map_err(|_| AuthError::JwtRejected("a filter claim holds an invalid value"))?;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        Ok(Access {
            principal: Principal::Jwt {
                issuer: text("iss"),
                subject: text("sub"),
            },
            streams,
            pins,
            expires_at: Some(until),
            max_connections: None,
        })
    }
}

/// A NumericDate (RFC 7519 §2): seconds, possibly with a fraction (dropped).
fn numeric_date(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|v| v.is_finite() && *v >= 0.0 && *v < u64::MAX as f64)
            .map(|v| v as u64)
    })
}

/// The names of a claim: an array of strings, or one string of space-separated names.
fn names(value: &Value) -> Option<Vec<&str>> {
    match value {
        Value::String(text) => Some(text.split_whitespace().collect()),
        Value::Array(items) => items.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

/// The refusal for a failed `jsonwebtoken::decode`, or `None` when the signature did not
/// verify under this key (another candidate may).
fn refusal(kind: &jsonwebtoken::errors::ErrorKind) -> Option<AuthError> {
    use jsonwebtoken::errors::ErrorKind;
    Some(match kind {
        ErrorKind::InvalidSignature => return None,
        ErrorKind::MissingRequiredClaim(claim) => AuthError::JwtRejected(match claim.as_str() {
            "exp" => "exp is required, as a number",
            "iss" => "iss is required (auth.jwt.issuer is set)",
            "aud" => "aud is required (auth.jwt.audience is set)",
            _ => "a required claim is missing",
        }),
        ErrorKind::InvalidIssuer => AuthError::JwtRejected("its issuer is not auth.jwt.issuer"),
        ErrorKind::InvalidAudience => {
            AuthError::JwtRejected("its audience does not include auth.jwt.audience")
        }
        ErrorKind::InvalidClaimFormat(_) => {
            AuthError::JwtRejected("a registered claim has the wrong type")
        }
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => AuthError::MalformedJwt("its parts are not readable"),
        _ => AuthError::UnknownJwtKey,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    pub(crate) const NOW: u64 = 1_700_000_000;
    pub(crate) const HS_SECRET: &str = "an-hs256-secret-of-the-identity-provider-0001";
    const K1: &str = "4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW";

    /// A key file of the test data (`testdata/jwt`, made by `testdata/jwt/README.md`).
    pub(crate) fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/jwt")
            .join(name)
    }

    /// The private key signing for `algorithm` in the tests: `a` is configured, `b` is not.
    pub(crate) fn signing_key(algorithm: JwtAlgorithm, which: &str) -> EncodingKey {
        let pem = |name: &str| std::fs::read(fixture(name)).expect("fixture");
        match algorithm {
            JwtAlgorithm::HS256 => EncodingKey::from_secret(
                if which == "a" {
                    HS_SECRET
                } else {
                    "another-hs256-secret-another-hs256-secret"
                }
                .as_bytes(),
            )
            .expect("hs key"),
            JwtAlgorithm::EdDSA => {
                EncodingKey::from_ed_pem(&pem(&format!("ed25519-{which}.key"))).expect("ed key")
            }
            JwtAlgorithm::ES256 => {
                EncodingKey::from_ec_pem(&pem(&format!("p256-{which}.key"))).expect("ec key")
            }
            JwtAlgorithm::RS256 => {
                EncodingKey::from_rsa_pem(&pem(&format!("rsa2048-{which}.key"))).expect("rsa key")
            }
        }
    }

    /// The configuration entry verifying `signing_key(algorithm, "a")`.
    pub(crate) fn key_config(algorithm: JwtAlgorithm, id: Option<&str>) -> JwtKeyConfig {
        let public = |name: &str| Some(fixture(name));
        JwtKeyConfig {
            id: id.map(str::to_owned),
            algorithm: Some(algorithm),
            secret: (algorithm == JwtAlgorithm::HS256).then(|| SecretString::new(HS_SECRET)),
            secret_file: None,
            public_key_file: match algorithm {
                JwtAlgorithm::HS256 => None,
                JwtAlgorithm::EdDSA => public("ed25519-a.pub"),
                JwtAlgorithm::ES256 => public("p256-a.pub"),
                JwtAlgorithm::RS256 => public("rsa2048-a.pub"),
            },
        }
    }

    pub(crate) fn sign(
        algorithm: JwtAlgorithm,
        which: &str,
        kid: Option<&str>,
        claims: &Value,
    ) -> String {
        let mut header = Header::new(algorithm.algorithm());
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &signing_key(algorithm, which)).expect("sign")
    }

    pub(crate) fn good_claims() -> Value {
        json!({"iss": "https://idp.example", "sub": "indexer-7", "exp": NOW + 600, "iat": NOW,
               "streams": ["valid_transactions"]})
    }

    fn verifier(config: JwtConfig) -> JwtVerifier {
        config.load().expect("loads").expect("enabled")
    }

    fn with_keys(keys: Vec<JwtKeyConfig>) -> JwtConfig {
        JwtConfig {
            keys,
            ..JwtConfig::default()
        }
    }

    const ALL: [JwtAlgorithm; 4] = [
        JwtAlgorithm::HS256,
        JwtAlgorithm::EdDSA,
        JwtAlgorithm::ES256,
        JwtAlgorithm::RS256,
    ];

    #[test]
    fn each_algorithm_admits_a_valid_jwt_with_its_streams_and_subject() {
        for algorithm in ALL {
            let v = verifier(with_keys(vec![key_config(algorithm, None)]));
            let jwt = sign(algorithm, "a", None, &good_claims());
            let access = v
                .verify_at(&jwt, NOW)
                .unwrap_or_else(|e| panic!("{algorithm:?}: {e}"));
            assert_eq!(
                access.principal,
                Principal::Jwt {
                    issuer: Some("https://idp.example".into()),
                    subject: Some("indexer-7".into())
                }
            );
            assert_eq!(access.streams, BTreeSet::from([Stream::ValidTransactions]));
            assert!(access.pins.is_empty());
            assert_eq!(access.expires_at, Some(NOW + 600 + 30), "exp + leeway");
            assert_eq!(access.max_connections, None);
        }
    }

    #[test]
    fn each_algorithm_refuses_expired_wrong_key_no_exp_and_streams_outside_the_claim() {
        for algorithm in ALL {
            let v = verifier(with_keys(vec![key_config(algorithm, None)]));
            let mut expired = good_claims();
            expired["exp"] = json!(NOW - 31);
            assert_eq!(
                v.verify_at(&sign(algorithm, "a", None, &expired), NOW),
                Err(AuthError::Expired {
                    expired_at: NOW - 31
                }),
                "{algorithm:?}"
            );
            assert_eq!(
                v.verify_at(&sign(algorithm, "b", None, &good_claims()), NOW),
                Err(AuthError::BadJwtSignature),
                "{algorithm:?} signed by another key"
            );
            let mut no_exp = good_claims();
            no_exp.as_object_mut().expect("object").remove("exp");
            assert_eq!(
                v.verify_at(&sign(algorithm, "a", None, &no_exp), NOW),
                Err(AuthError::JwtRejected("exp is required, as a number")),
                "{algorithm:?}"
            );
            let access = v
                .verify_at(&sign(algorithm, "a", None, &good_claims()), NOW)
                .expect("valid");
            let none = HashSet::new();
            assert_eq!(
                access.allows(&crate::Requested {
                    stream: Stream::ValidBlocks,
                    public_keys: &none,
                    asset_ids: &none,
                    operations: &none,
                }),
                Err(AuthError::StreamNotAllowed {
                    stream: Stream::ValidBlocks
                }),
                "{algorithm:?}"
            );
        }
    }

    #[test]
    fn the_leeway_extends_exp_and_bounds_nbf_and_iat() {
        let v = verifier(with_keys(vec![key_config(JwtAlgorithm::HS256, None)]));
        let at = |changes: Value| {
            let mut claims = good_claims();
            for (k, val) in changes.as_object().expect("object") {
                claims[k] = val.clone();
            }
            v.verify_at(&sign(JwtAlgorithm::HS256, "a", None, &claims), NOW)
        };
        assert!(at(json!({"exp": NOW - 29})).is_ok(), "within 30 s");
        assert!(matches!(
            at(json!({"exp": NOW - 30})),
            Err(AuthError::Expired { .. })
        ));
        assert!(
            at(json!({"exp": NOW as f64 + 60.5})).is_ok(),
            "fractional seconds"
        );
        assert_eq!(
            at(json!({"exp": "soon"})),
            Err(AuthError::JwtRejected("exp is required, as a number"))
        );
        assert!(at(json!({"nbf": NOW + 29})).is_ok());
        assert_eq!(
            at(json!({"nbf": NOW + 31})),
            Err(AuthError::BadLifetime("not valid before its nbf"))
        );
        assert_eq!(
            at(json!({"iat": NOW + 3600})),
            Err(AuthError::BadLifetime("issued in the future"))
        );
    }

    #[test]
    fn streams_and_pins_come_from_the_configured_claims_in_either_form() {
        let v = verifier(JwtConfig {
            streams_claim: "scope".into(),
            public_keys_claim: Some("wallets".into()),
            operations_claim: Some("ops".into()),
            ..with_keys(vec![key_config(JwtAlgorithm::HS256, None)])
        });
        let mut claims = good_claims();
        claims["scope"] = json!("openid profile valid_blocks valid_transactions");
        claims["wallets"] = json!([K1]);
        claims["ops"] = json!("create transfer");
        let access = v
            .verify_at(&sign(JwtAlgorithm::HS256, "a", None, &claims), NOW)
            .expect("valid");
        assert_eq!(access.streams, Stream::ALL.into_iter().collect());
        assert_eq!(access.pins.public_keys, BTreeSet::from([K1.to_owned()]));
        assert_eq!(
            access.pins.operations,
            BTreeSet::from(["CREATE".to_owned(), "TRANSFER".to_owned()])
        );
        assert!(access.pins.asset_ids.is_empty());

        for (claim, value, expected) in [
            (
                "scope",
                json!("openid profile"),
                "its streams claim is missing or names no stream of this node",
            ),
            (
                "scope",
                json!(7),
                "its streams claim is missing or names no stream of this node",
            ),
            (
                "wallets",
                json!(["not-a-key"]),
                "a filter claim holds an invalid value",
            ),
            (
                "ops",
                json!({"op": "CREATE"}),
                "a filter claim is neither a string nor an array of strings",
            ),
        ] {
            let mut bad = claims.clone();
            bad[claim] = value;
            assert_eq!(
                v.verify_at(&sign(JwtAlgorithm::HS256, "a", None, &bad), NOW),
                Err(AuthError::JwtRejected(expected)),
                "{claim}"
            );
        }
        claims.as_object_mut().expect("object").remove("scope");
        assert!(matches!(
            v.verify_at(&sign(JwtAlgorithm::HS256, "a", None, &claims), NOW),
            Err(AuthError::JwtRejected(_))
        ));
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let v = verifier(JwtConfig {
            issuer: Some("https://idp.example".into()),
            audience: Some("planetmint-streams".into()),
            ..with_keys(vec![key_config(JwtAlgorithm::EdDSA, None)])
        });
        let mut claims = good_claims();
        claims["aud"] = json!(["wallet", "planetmint-streams"]);
        let jwt = |c: &Value| sign(JwtAlgorithm::EdDSA, "a", None, c);
        assert!(v.verify_at(&jwt(&claims), NOW).is_ok());
        let mut other = claims.clone();
        other["iss"] = json!("https://evil.example");
        assert_eq!(
            v.verify_at(&jwt(&other), NOW),
            Err(AuthError::JwtRejected("its issuer is not auth.jwt.issuer"))
        );
        let mut other = claims.clone();
        other["aud"] = json!("wallet");
        assert_eq!(
            v.verify_at(&jwt(&other), NOW),
            Err(AuthError::JwtRejected(
                "its audience does not include auth.jwt.audience"
            ))
        );
        let mut other = claims.clone();
        other.as_object_mut().expect("object").remove("aud");
        assert_eq!(
            v.verify_at(&jwt(&other), NOW),
            Err(AuthError::JwtRejected(
                "aud is required (auth.jwt.audience is set)"
            ))
        );
        // Without an audience configured, any audience passes.
        let open = verifier(with_keys(vec![key_config(JwtAlgorithm::EdDSA, None)]));
        assert!(open.verify_at(&jwt(&claims), NOW).is_ok());
    }

    #[test]
    fn the_header_chooses_the_key_by_kid_and_never_another_algorithm() {
        let v = verifier(with_keys(vec![
            key_config(JwtAlgorithm::ES256, Some("ec-1")),
            JwtKeyConfig {
                public_key_file: Some(fixture("p256-b.pub")),
                ..key_config(JwtAlgorithm::ES256, Some("ec-2"))
            },
            key_config(JwtAlgorithm::RS256, None),
        ]));
        assert_eq!(v.key_count(), 3);
        let claims = good_claims();
        assert!(v
            .verify_at(&sign(JwtAlgorithm::ES256, "a", Some("ec-1"), &claims), NOW)
            .is_ok());
        assert!(v
            .verify_at(&sign(JwtAlgorithm::ES256, "b", Some("ec-2"), &claims), NOW)
            .is_ok());
        assert!(
            v.verify_at(&sign(JwtAlgorithm::ES256, "b", None, &claims), NOW)
                .is_ok(),
            "no kid: every ES256 key is tried"
        );
        assert_eq!(
            v.verify_at(&sign(JwtAlgorithm::ES256, "a", Some("ec-2"), &claims), NOW),
            Err(AuthError::BadJwtSignature),
            "kid ec-2 is checked with ec-2 only"
        );
        assert_eq!(
            v.verify_at(&sign(JwtAlgorithm::ES256, "a", Some("ec-9"), &claims), NOW),
            Err(AuthError::UnknownJwtKey),
            "an unknown kid and no ES256 key without an id"
        );
        assert!(
            v.verify_at(
                &sign(JwtAlgorithm::RS256, "a", Some("idp-kid"), &claims),
                NOW
            )
            .is_ok(),
            "a kid we do not know goes to the keys without an id"
        );
        assert_eq!(
            v.verify_at(&sign(JwtAlgorithm::EdDSA, "a", None, &claims), NOW),
            Err(AuthError::UnknownJwtKey),
            "no EdDSA key"
        );
        // The classic confusion: an HS256 JWT whose HMAC key is the RSA public key's PEM.
        let pem = std::fs::read(fixture("rsa2048-a.pub")).expect("pem");
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&pem).expect("key"),
        )
        .expect("sign");
        assert_eq!(v.verify_at(&forged, NOW), Err(AuthError::UnknownJwtKey));
    }

    #[test]
    fn malformed_jwts_are_refused_before_any_key_is_tried() {
        let v = verifier(with_keys(vec![key_config(JwtAlgorithm::HS256, None)]));
        let b64 = |v: &Value| URL_SAFE_NO_PAD_ENGINE.encode(v.to_string());
        let unsigned = format!(
            "{}.{}.c2ln",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&good_claims())
        );
        let crit = format!(
            "{}.{}.c2ln",
            b64(&json!({"alg": "HS256", "crit": ["exp"]})),
            b64(&good_claims())
        );
        for (jwt, expected) in [
            ("a.b".to_owned(), "malformed_jwt"),
            ("a.b.c.d".to_owned(), "malformed_jwt"),
            ("a b.c.d".to_owned(), "malformed_jwt"),
            ("x".repeat(MAX_JWT_LEN + 1), "malformed_jwt"),
            (
                "eyJhbGciOiJIUzI1NiJ9.e30.AAAA".to_owned(),
                "bad_jwt_signature",
            ),
            (unsigned, "malformed_jwt"),
            (crit, "jwt_rejected"),
        ] {
            let err = v.verify_at(&jwt, NOW).expect_err(&jwt);
            assert_eq!(err.reason(), expected, "{jwt:.60}: {err}");
        }
    }

    const URL_SAFE_NO_PAD_ENGINE: base64::engine::GeneralPurpose =
        base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    fn jwks_of(keys: &[(JwtAlgorithm, &str)]) -> Value {
        let keys: Vec<Value> = keys
            .iter()
            .map(|(algorithm, kid)| {
                let mut jwk =
                    Jwk::from_encoding_key(&signing_key(*algorithm, "a"), algorithm.algorithm())
                        .expect("jwk");
                jwk.common.key_id = Some((*kid).to_owned());
                jwk.common.public_key_use = Some(PublicKeyUse::Signature);
                serde_json::to_value(jwk).expect("json")
            })
            .collect();
        json!({ "keys": keys })
    }

    #[test]
    fn a_jwks_file_provides_keys_by_kid() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("jwks.json");
        let mut set = jwks_of(&[
            (JwtAlgorithm::EdDSA, "ed"),
            (JwtAlgorithm::ES256, "ec"),
            (JwtAlgorithm::RS256, "rsa"),
        ]);
        // An encryption key and a key of an algorithm we do not verify are skipped.
        let mut enc = set["keys"][2].clone();
        enc["use"] = json!("enc");
        enc["kid"] = json!("rsa-enc");
        let mut ps = set["keys"][2].clone();
        ps["alg"] = json!("PS256");
        ps["kid"] = json!("rsa-pss");
        set["keys"].as_array_mut().expect("array").extend([enc, ps]);
        std::fs::write(&path, set.to_string()).expect("write");
        let v = verifier(JwtConfig {
            jwks_file: Some(path.clone()),
            ..JwtConfig::default()
        });
        assert_eq!(v.key_count(), 3);
        for (algorithm, kid) in [
            (JwtAlgorithm::EdDSA, "ed"),
            (JwtAlgorithm::ES256, "ec"),
            (JwtAlgorithm::RS256, "rsa"),
        ] {
            let jwt = sign(algorithm, "a", Some(kid), &good_claims());
            assert!(v.verify_at(&jwt, NOW).is_ok(), "{kid}");
            let other = sign(algorithm, "b", Some(kid), &good_claims());
            assert_eq!(
                v.verify_at(&other, NOW),
                Err(AuthError::BadJwtSignature),
                "{kid}"
            );
        }
        assert_eq!(
            v.verify_at(
                &sign(JwtAlgorithm::RS256, "a", Some("rsa-enc"), &good_claims()),
                NOW
            ),
            Err(AuthError::UnknownJwtKey)
        );
    }

    #[test]
    fn bad_key_material_stops_loading_naming_the_key_and_entry() {
        let dir = tempfile::tempdir().expect("tmp");
        let jwks = dir.path().join("jwks.json");
        let cases: Vec<(JwtConfig, &str, &str)> = vec![
            (
                with_keys(vec![JwtKeyConfig {
                    public_key_file: Some(fixture("p384.pub")),
                    ..key_config(JwtAlgorithm::ES256, Some("p384"))
                }]),
                "auth.jwt.keys",
                "P-256",
            ),
            (
                with_keys(vec![JwtKeyConfig {
                    public_key_file: Some(fixture("rsa1024.pub")),
                    ..key_config(JwtAlgorithm::RS256, None)
                }]),
                "auth.jwt.keys",
                "2048",
            ),
            (
                with_keys(vec![JwtKeyConfig {
                    public_key_file: Some(fixture("ed25519-a.key")),
                    ..key_config(JwtAlgorithm::EdDSA, None)
                }]),
                "auth.jwt.keys",
                "private key",
            ),
            (
                with_keys(vec![JwtKeyConfig {
                    public_key_file: Some(fixture("rsa2048-a.pub")),
                    ..key_config(JwtAlgorithm::EdDSA, Some("ed"))
                }]),
                "auth.jwt.keys",
                "EdDSA",
            ),
            (
                with_keys(vec![JwtKeyConfig {
                    secret: Some(SecretString::new("short-secret")),
                    ..key_config(JwtAlgorithm::HS256, None)
                }]),
                "auth.jwt.keys",
                "at least 32",
            ),
            (
                with_keys(vec![JwtKeyConfig {
                    algorithm: None,
                    ..key_config(JwtAlgorithm::HS256, Some("k"))
                }]),
                "auth.jwt.keys",
                "algorithm is required",
            ),
            (
                with_keys(vec![
                    key_config(JwtAlgorithm::HS256, Some("same")),
                    key_config(JwtAlgorithm::EdDSA, Some("same")),
                ]),
                "auth.jwt.keys",
                "more than once",
            ),
            (
                JwtConfig {
                    jwks_file: Some(jwks.clone()),
                    ..JwtConfig::default()
                },
                "auth.jwt.jwks_file",
                "line 1",
            ),
            (
                JwtConfig {
                    leeway: Duration::from_secs(600),
                    ..JwtConfig::default()
                },
                "auth.jwt.leeway",
                "5m",
            ),
            (
                JwtConfig {
                    streams_claim: "exp".into(),
                    ..JwtConfig::default()
                },
                "auth.jwt.streams_claim",
                "own",
            ),
            (
                JwtConfig {
                    operations_claim: Some("streams".into()),
                    ..JwtConfig::default()
                },
                "auth.jwt.operations_claim",
                "twice",
            ),
        ];
        std::fs::write(
            &jwks,
            "{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0LWRvLW5vdC1wcmludA\"",
        )
        .expect("write");
        for (config, key, words) in cases {
            let problem = config.load().expect_err(words);
            assert_eq!(problem.key, key, "{problem}");
            assert!(problem.problem.contains(words), "{problem} lacks {words}");
            assert!(!problem.problem.contains("short-secret"), "{problem}");
            assert!(!problem.problem.contains("c2VjcmV0"), "{problem}");
        }
        std::fs::write(
            &jwks,
            "{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0LWRvLW5vdC1wcmludA\"}]}",
        )
        .expect("write");
        let problem = JwtConfig {
            jwks_file: Some(jwks.clone()),
            ..JwtConfig::default()
        }
        .load()
        .expect_err("oct in a JWKS");
        assert!(
            problem.problem.contains("oct") && !problem.problem.contains("c2Vj"),
            "{problem}"
        );
        std::fs::write(
            &jwks,
            jwks_of(&[(JwtAlgorithm::ES256, "x")])
                .to_string()
                .replace("P-256", "P-384"),
        )
        .expect("write");
        let problem = JwtConfig {
            jwks_file: Some(jwks),
            ..JwtConfig::default()
        }
        .load()
        .expect_err("curve");
        assert!(problem.problem.contains("kid \"x\""), "{problem}");
    }

    #[test]
    fn debug_output_holds_no_key_material() {
        let v = verifier(with_keys(vec![key_config(JwtAlgorithm::HS256, Some("hs"))]));
        let shown = format!("{v:?}");
        assert!(
            shown.contains("hs") && !shown.contains(HS_SECRET),
            "{shown}"
        );
        let config = with_keys(vec![key_config(JwtAlgorithm::HS256, None)]);
        assert!(!format!("{config:?}").contains(HS_SECRET));
        assert!(!serde_json::to_string(&config)
            .expect("json")
            .contains(HS_SECRET));
    }

    #[test]
    fn hmac_secrets_are_raw_text_unless_prefixed() {
        assert_eq!(
            decode_hmac_secret(HS_SECRET).expect("raw"),
            HS_SECRET.as_bytes()
        );
        assert_eq!(
            decode_hmac_secret(&format!("hex:{}", "ab".repeat(32))).expect("hex"),
            vec![0xAB; 32]
        );
        assert_eq!(
            decode_hmac_secret(&format!("base64:{}", "q".repeat(44)))
                .expect("b64")
                .len(),
            33
        );
        assert!(matches!(
            decode_hmac_secret("hex:abcd"),
            Err(SecretError::TooShort { bytes: 2 })
        ));
    }
}
