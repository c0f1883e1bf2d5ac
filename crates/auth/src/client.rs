//! Clients configured on the node: long-lived credentials (a client id and a secret) for data
//! providers and indexers, presented as stream-sea's `basic` authentication.
//!
//! A client is an entry of `[[auth.clients]]` in the node's configuration or of `[[clients]]`
//! in `auth.clients_file` ([`ClientConfig`]): its id, its secret as a salted hash
//! (`secret_hash`, made by `planetmint-streams client new` or `client hash-secret`) or a file
//! holding the secret itself (`secret_file`), the streams and filter values it may read, and its
//! own connection cap. The node never keeps a secret: a `secret_file` is hashed as it is read.
//!
//! # The hash (ADR 0006)
//!
//! ```text
//! hmac-sha3-256:<base64url(salt, 16 bytes)>:<base64url(HMAC-SHA3-256(salt, secret), 32 bytes)>
//! ```
//!
//! Fast on purpose: any client can make the node check a secret, so the check must cost
//! microseconds, not the tens of milliseconds of a password hash. That is sound because the
//! secrets are not passwords: `client new` draws 32 random bytes, and a secret chosen by hand
//! must have at least [`MIN_CLIENT_SECRET_CHARS`] characters. Digests are compared in constant
//! time, and an unknown client id costs the same hash as a known one.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::Mac;
use planetmint_streams_model::ConfigProblem;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::claims::{Pins, Stream};
use crate::error::{AuthError, SecretError};
use crate::keyring::HmacSha3;
use crate::secret::{read_secret_file, SecretString};
use crate::token::looks_like_stream_token;

/// The scheme name a stored secret hash starts with.
pub const SECRET_HASH_SCHEME: &str = "hmac-sha3-256";
/// Bytes of random salt in a secret hash.
pub const SALT_BYTES: usize = 16;
/// Bytes of the digest in a secret hash (HMAC-SHA3-256).
pub const DIGEST_BYTES: usize = 32;
/// Random bytes in a secret made by `client new` (written as 43 base64url characters).
pub const GENERATED_SECRET_BYTES: usize = 32;
/// Fewest characters a client secret may have (a generated one has 43).
pub const MIN_CLIENT_SECRET_CHARS: usize = 32;
/// Most characters a client secret may have; longer presented secrets are refused unhashed.
pub const MAX_CLIENT_SECRET_CHARS: usize = 512;
/// Longest client id.
pub const MAX_CLIENT_ID_LEN: usize = 64;
/// Most clients a node holds (configuration and clients file together).
pub const MAX_CLIENTS: usize = 10_000;
/// Largest clients file read.
pub const MAX_CLIENTS_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// True when `id` can be a client id: 1 to [`MAX_CLIENT_ID_LEN`] characters of
/// `A-Z a-z 0-9 _ - . @`. Client ids are not secret: they appear in logs.
pub fn is_client_id(id: &str) -> bool {
    (1..=MAX_CLIENT_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.@".contains(&b))
}

/// Checks a client secret's text: surrounding whitespace ignored, then
/// [`MIN_CLIENT_SECRET_CHARS`] to [`MAX_CLIENT_SECRET_CHARS`] visible ASCII characters, not of
/// a stream token's form. Returns the trimmed text.
pub fn check_client_secret(text: &str) -> Result<&str, SecretError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(SecretError::Empty);
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SecretError::BearerCharacters);
    }
    if text.len() < MIN_CLIENT_SECRET_CHARS {
        return Err(SecretError::BearerTooShort { chars: text.len() });
    }
    if text.len() > MAX_CLIENT_SECRET_CHARS {
        return Err(SecretError::TooLong { chars: text.len() });
    }
    if looks_like_stream_token(text) {
        return Err(SecretError::LooksLikeToken);
    }
    Ok(text)
}

/// A fresh client secret: [`GENERATED_SECRET_BYTES`] bytes from the system's random number
/// generator, as base64url without padding.
pub fn generate_secret() -> Result<SecretString, SecretError> {
    let mut bytes = [0u8; GENERATED_SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(|_| SecretError::NoRandomness)?;
    Ok(SecretString::new(URL_SAFE_NO_PAD.encode(bytes)))
}

/// A client secret as the node stores it: a random salt and HMAC-SHA3-256(salt, secret).
/// Written as `hmac-sha3-256:<salt>:<digest>` (both base64url without padding).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash {
    salt: [u8; SALT_BYTES],
    digest: [u8; DIGEST_BYTES],
}

impl SecretHash {
    /// Checks the secret ([`check_client_secret`]) and hashes it with a fresh random salt.
    pub fn new(secret: &str) -> Result<Self, SecretError> {
        let secret = check_client_secret(secret)?;
        let mut salt = [0u8; SALT_BYTES];
        getrandom::fill(&mut salt).map_err(|_| SecretError::NoRandomness)?;
        Ok(Self::with_salt(secret, salt))
    }

    /// Hashes `secret` as it is with `salt` (no checks).
    pub fn with_salt(secret: &str, salt: [u8; SALT_BYTES]) -> Self {
        Self {
            salt,
            digest: digest(&salt, secret.as_bytes()),
        }
    }

    /// Reads the written form. The error says what is wrong, never echoing the text.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let expected = "expected hmac-sha3-256:<salt>:<digest> as printed by `planetmint-streams client new` or `client hash-secret`";
        let mut parts = text.trim().split(':');
        let (Some(scheme), Some(salt_text), Some(digest_text), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(expected);
        };
        if scheme != SECRET_HASH_SCHEME {
            return Err(expected);
        }
        let mut salt = [0u8; SALT_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(salt_text, &mut salt) {
            Ok(SALT_BYTES) => {}
            _ => return Err("the salt is not 16 bytes of base64url"),
        }
        let mut digest = [0u8; DIGEST_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(digest_text, &mut digest) {
            Ok(DIGEST_BYTES) => {}
            _ => return Err("the digest is not 32 bytes of base64url"),
        }
        Ok(Self { salt, digest })
    }

    /// True when `presented` is the secret; the digests are compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        digest(&self.salt, presented.as_bytes())
            .ct_eq(&self.digest)
            .into()
    }
}

fn digest(salt: &[u8; SALT_BYTES], secret: &[u8]) -> [u8; DIGEST_BYTES] {
    // HMAC takes keys of any length: this cannot fail.
    let Ok(mut mac) = <HmacSha3 as Mac>::new_from_slice(salt) else {
        return [0; DIGEST_BYTES];
    };
    mac.update(secret);
    mac.finalize().into_bytes().into()
}

impl fmt::Display for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SECRET_HASH_SCHEME}:{}:{}",
            URL_SAFE_NO_PAD.encode(self.salt),
            URL_SAFE_NO_PAD.encode(self.digest)
        )
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretHash({SECRET_HASH_SCHEME})")
    }
}

/// One client entry: `[[auth.clients]]` in the node's configuration, `[[clients]]` in
/// `auth.clients_file`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// The client id it presents (stream-sea's `clientId`): 1 to 64 characters of
    /// `A-Z a-z 0-9 _ - . @`.
    pub id: String,
    /// Its secret's hash, `hmac-sha3-256:<salt>:<digest>` (from `client new` or
    /// `client hash-secret`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<String>,
    /// Instead of `secret_hash`: a file holding the secret itself (owner-only, like every
    /// secret file); it is hashed as it is read, also on reload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// The streams it may read: `valid_transactions`, `valid_blocks` (at least one).
    pub streams: Vec<String>,
    /// Pinned `public_key` values: when given, every subscription must filter on a subset.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub public_keys: BTreeSet<String>,
    /// Pinned `asset_id` values.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub asset_ids: BTreeSet<String>,
    /// Pinned `operation` values.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub operations: BTreeSet<String>,
    /// Most connections open at once with this client's credentials (none: only the node's
    /// own limits apply).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
}

/// A clients file (`auth.clients_file`): `[[clients]]` entries, each a [`ClientConfig`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientsFile {
    /// The clients.
    pub clients: Vec<ClientConfig>,
}

/// What is wrong with one client entry: the field (as in the entry, e.g. `streams`) and the
/// problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct EntryProblem {
    /// The entry's field at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl EntryProblem {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// An entry's secret as checked without reading files.
enum SecretSource<'a> {
    Hash(SecretHash),
    File(&'a Path),
}

impl ClientConfig {
    /// Checks the entry as the node will (without reading its secret file).
    pub fn check_entry(&self) -> Result<(), EntryProblem> {
        self.check().map(|_| ())
    }

    /// Checks everything but the secret file's content.
    fn check(&self) -> Result<(SecretSource<'_>, Grant), EntryProblem> {
        if !is_client_id(&self.id) {
            return Err(EntryProblem::new(
                "id",
                "must be 1 to 64 characters of A-Z, a-z, 0-9, _, -, . and @",
            ));
        }
        let secret = match (&self.secret_hash, &self.secret_file) {
            (Some(hash), None) => SecretSource::Hash(
                SecretHash::parse(hash).map_err(|msg| EntryProblem::new("secret_hash", msg))?,
            ),
            (None, Some(path)) => SecretSource::File(path),
            _ => {
                return Err(EntryProblem::new(
                    "secret_hash",
                    "give exactly one of secret_hash and secret_file",
                ))
            }
        };
        if self.streams.is_empty() {
            return Err(EntryProblem::new(
                "streams",
                "name at least one stream: valid_transactions, valid_blocks",
            ));
        }
        let mut streams = BTreeSet::new();
        for name in &self.streams {
            let stream = name
                .parse::<Stream>()
                .map_err(|err| EntryProblem::new("streams", err.to_string()))?;
            streams.insert(stream);
        }
        let pins = Pins {
            public_keys: self.public_keys.clone(),
            asset_ids: self.asset_ids.clone(),
            operations: self.operations.clone(),
        }
        .normalized()
        .map_err(|err| {
            let field = match err.parameter() {
                "public_key" => "public_keys",
                "asset_id" => "asset_ids",
                _ => "operations",
            };
            EntryProblem::new(field, err.to_string())
        })?;
        if self.max_connections == Some(0) {
            return Err(EntryProblem::new(
                "max_connections",
                "must be at least 1 (leave it out for no cap of the client's own)",
            ));
        }
        Ok((
            secret,
            Grant {
                streams,
                pins,
                max_connections: self.max_connections,
            },
        ))
    }

    /// Checks the entry and reads its secret file, if any.
    fn build(&self) -> Result<Client, EntryProblem> {
        let (secret, grant) = self.check()?;
        let hash = match secret {
            SecretSource::Hash(hash) => hash,
            SecretSource::File(path) => read_secret_file(path)
                .and_then(|text| SecretHash::new(text.expose()))
                .map_err(|err| EntryProblem::new("secret_file", format!("the secret {err}")))?,
        };
        Ok(Client {
            id: self.id.clone(),
            hash,
            grant,
        })
    }
}

/// What a configured client may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub streams: BTreeSet<Stream>,
    pub pins: Pins,
    pub max_connections: Option<usize>,
}

/// A configured client as the node holds it. `Debug` leaves out the hash.
#[derive(Clone)]
pub(crate) struct Client {
    pub id: String,
    hash: SecretHash,
    pub grant: Grant,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("grant", &self.grant)
            .finish()
    }
}

/// The configured clients, by id.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientSet {
    by_id: HashMap<String, Client>,
}

/// Hashed in place of a client that does not exist, so that an unknown id costs what a known
/// one costs.
fn decoy() -> &'static SecretHash {
    static DECOY: std::sync::OnceLock<SecretHash> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| SecretHash::with_salt("", [0x5A; SALT_BYTES]))
}

impl ClientSet {
    /// The client `id` when `secret` is its secret.
    pub fn verify(&self, id: &str, secret: &str) -> Result<&Client, AuthError> {
        if secret.len() > MAX_CLIENT_SECRET_CHARS {
            return Err(match self.by_id.contains_key(id) {
                true => AuthError::BadClientSecret,
                false => AuthError::UnknownClient,
            });
        }
        match self.by_id.get(id) {
            Some(client) if client.hash.matches(secret) => Ok(client),
            Some(_) => Err(AuthError::BadClientSecret),
            None => {
                std::hint::black_box(decoy().matches(secret));
                Err(AuthError::UnknownClient)
            }
        }
    }

    /// How many clients there are.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
}

/// Checks the inline entries without reading files (for [`crate::AuthConfig::validate`]).
pub(crate) fn validate_inline(entries: &[ClientConfig]) -> Result<(), ConfigProblem> {
    let mut ids = std::collections::HashSet::new();
    for (index, entry) in entries.iter().enumerate() {
        entry
            .check()
            .map_err(|problem| inline_problem(index, entry, problem))?;
        if !ids.insert(entry.id.as_str()) {
            return Err(inline_problem(
                index,
                entry,
                EntryProblem::new("id", "is given more than once"),
            ));
        }
    }
    if entries.len() > MAX_CLIENTS {
        return Err(ConfigProblem::new(
            "auth.clients",
            format!(
                "{} entries, at most {MAX_CLIENTS} are accepted",
                entries.len()
            ),
        ));
    }
    Ok(())
}

/// Builds every client: the inline entries, then those of `clients_file`; reads secret files.
pub(crate) fn load(
    inline: &[ClientConfig],
    clients_file: Option<&Path>,
) -> Result<ClientSet, ConfigProblem> {
    let mut set = ClientSet::default();
    for (index, entry) in inline.iter().enumerate() {
        let client = entry
            .build()
            .map_err(|problem| inline_problem(index, entry, problem))?;
        if set.by_id.contains_key(&client.id) {
            return Err(inline_problem(
                index,
                entry,
                EntryProblem::new("id", "is given more than once"),
            ));
        }
        set.by_id.insert(client.id.clone(), client);
    }
    if let Some(path) = clients_file {
        let file = read_clients_file(path)?;
        for (index, entry) in file.clients.iter().enumerate() {
            let client = entry
                .build()
                .map_err(|problem| file_problem(path, index, entry, problem))?;
            if set.by_id.contains_key(&client.id) {
                return Err(file_problem(
                    path,
                    index,
                    entry,
                    EntryProblem::new("id", "is given more than once (here or in auth.clients)"),
                ));
            }
            set.by_id.insert(client.id.clone(), client);
        }
    }
    if set.len() > MAX_CLIENTS {
        return Err(ConfigProblem::new(
            "auth.clients_file",
            format!("{} clients, at most {MAX_CLIENTS} are accepted", set.len()),
        ));
    }
    Ok(set)
}

/// Reads and parses a clients file. Parse errors give the line and what is wrong, never the
/// line's text.
pub fn read_clients_file(path: &Path) -> Result<ClientsFile, ConfigProblem> {
    let problem = |message: String| {
        ConfigProblem::new(
            "auth.clients_file",
            format!("{}: {message}", path.display()),
        )
    };
    let file =
        std::fs::File::open(path).map_err(|err| problem(format!("cannot read it: {err}")))?;
    let mut text = String::new();
    file.take(MAX_CLIENTS_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|err| problem(format!("cannot read it: {err}")))?;
    if text.len() as u64 > MAX_CLIENTS_FILE_BYTES {
        return Err(problem(format!(
            "larger than {MAX_CLIENTS_FILE_BYTES} bytes"
        )));
    }
    toml::from_str::<ClientsFile>(&text).map_err(|err| {
        let line = err
            .span()
            .and_then(|span| text.get(..span.start))
            .map(|before| before.bytes().filter(|&b| b == b'\n').count() + 1);
        let at = line.map(|l| format!("line {l}: ")).unwrap_or_default();
        problem(format!("{at}{}", err.message()))
    })
}

/// The dotted key of an inline entry's field.
fn inline_key(field: &'static str) -> &'static str {
    match field {
        "id" => "auth.clients.id",
        "secret_hash" => "auth.clients.secret_hash",
        "secret_file" => "auth.clients.secret_file",
        "streams" => "auth.clients.streams",
        "public_keys" => "auth.clients.public_keys",
        "asset_ids" => "auth.clients.asset_ids",
        "operations" => "auth.clients.operations",
        "max_connections" => "auth.clients.max_connections",
        _ => "auth.clients",
    }
}

/// How an entry is named in messages: its position (from 1) and, when valid, its id.
fn entry_name(index: usize, entry: &ClientConfig) -> String {
    if is_client_id(&entry.id) {
        format!("entry {} (id {:?})", index + 1, entry.id)
    } else {
        format!("entry {}", index + 1)
    }
}

fn inline_problem(index: usize, entry: &ClientConfig, problem: EntryProblem) -> ConfigProblem {
    ConfigProblem::new(
        inline_key(problem.field),
        format!(
            "[[auth.clients]] {}: {}",
            entry_name(index, entry),
            problem.message
        ),
    )
}

fn file_problem(
    path: &Path,
    index: usize,
    entry: &ClientConfig,
    problem: EntryProblem,
) -> ConfigProblem {
    ConfigProblem::new(
        "auth.clients_file",
        format!(
            "{}: [[clients]] {}: {}: {}",
            path.display(),
            entry_name(index, entry),
            problem.field,
            problem.message
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW";

    fn entry(id: &str, secret: &str) -> ClientConfig {
        ClientConfig {
            id: id.into(),
            secret_hash: Some(SecretHash::new(secret).expect("hash").to_string()),
            streams: vec!["valid_transactions".into()],
            ..ClientConfig::default()
        }
    }

    #[test]
    fn a_hash_round_trips_through_its_text_and_matches_only_its_secret() {
        let secret = generate_secret().expect("random");
        assert_eq!(secret.expose().len(), 43);
        let hash = SecretHash::new(secret.expose()).expect("hash");
        let text = hash.to_string();
        assert!(text.starts_with("hmac-sha3-256:"), "{text}");
        assert_eq!(text.split(':').count(), 3);
        let parsed = SecretHash::parse(&text).expect("parses");
        assert_eq!(parsed, hash);
        assert!(parsed.matches(secret.expose()));
        assert!(!parsed.matches(&format!("{}x", secret.expose())));
        assert!(!parsed.matches(""));
        assert!(!format!("{hash:?}").contains(&text[14..]), "{hash:?}");
    }

    #[test]
    fn the_same_secret_hashes_differently_each_time() {
        let secret = "a-long-enough-secret-for-a-client-0123";
        let one = SecretHash::new(secret).expect("hash");
        let two = SecretHash::new(secret).expect("hash");
        assert_ne!(one, two, "a fresh salt each time");
        assert!(one.matches(secret) && two.matches(secret));
    }

    #[test]
    fn the_digest_is_hmac_sha3_256_keyed_by_the_salt() {
        let salt = [7u8; SALT_BYTES];
        let hash = SecretHash::with_salt("secret", salt);
        let mut mac = HmacSha3::new_from_slice(&salt).expect("key");
        mac.update(b"secret");
        let expected = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        assert!(hash.to_string().ends_with(&format!(":{expected}")));
    }

    #[test]
    fn weak_or_confusable_secrets_are_refused() {
        assert!(matches!(
            SecretHash::new("short"),
            Err(SecretError::BearerTooShort { chars: 5 })
        ));
        assert!(matches!(
            SecretHash::new(&format!("{} {}", "a".repeat(20), "b".repeat(20))),
            Err(SecretError::BearerCharacters)
        ));
        assert!(matches!(
            SecretHash::new(&"a".repeat(MAX_CLIENT_SECRET_CHARS + 1)),
            Err(SecretError::TooLong { .. })
        ));
        assert!(matches!(
            SecretHash::new(&format!("v1.k1.{}.{}", "a".repeat(30), "b".repeat(43))),
            Err(SecretError::LooksLikeToken)
        ));
        assert!(SecretHash::new(&format!("  {}\n", "c".repeat(32))).is_ok());
    }

    #[test]
    fn hashes_that_are_not_ours_are_refused_without_echoing_them() {
        let good = SecretHash::new(&"d".repeat(40)).expect("hash").to_string();
        let salt = good.split(':').nth(1).expect("salt");
        for bad in [
            "".to_owned(),
            "plain-secret-someone-pasted-here-000000".to_owned(),
            good.replace("hmac-sha3-256", "sha256"),
            format!("hmac-sha3-256:{salt}"),
            format!("hmac-sha3-256:{salt}:AAAA"),
            format!(
                "hmac-sha3-256:AAAA:{}",
                good.split(':').nth(2).expect("digest")
            ),
            format!("{good}:extra"),
        ] {
            let err = SecretHash::parse(&bad).expect_err(&bad);
            assert!(bad.is_empty() || !err.contains(&bad), "{err}");
        }
    }

    #[test]
    fn a_configured_client_is_admitted_with_its_secret_only() {
        let secret = "acme-secret-acme-secret-acme-secret-01";
        let set = load(&[entry("acme", secret)], None).expect("loads");
        assert_eq!(set.len(), 1);
        let client = set.verify("acme", secret).expect("admitted");
        assert_eq!(client.id, "acme");
        assert_eq!(
            client.grant.streams,
            BTreeSet::from([Stream::ValidTransactions])
        );
        assert_eq!(
            set.verify("acme", "acme-secret-acme-secret-acme-secret-02")
                .map(|c| c.id.clone()),
            Err(AuthError::BadClientSecret)
        );
        assert_eq!(
            set.verify("acme", &"z".repeat(10_000))
                .map(|c| c.id.clone()),
            Err(AuthError::BadClientSecret)
        );
        assert_eq!(
            set.verify("other", secret).map(|c| c.id.clone()),
            Err(AuthError::UnknownClient)
        );
    }

    #[test]
    fn checking_a_secret_costs_microseconds() {
        // Any client can ask for a check: it must stay far below a millisecond (ADR 0006), even
        // in a debug build on a busy machine.
        let secret = generate_secret().expect("random");
        let set = load(&[entry("acme", secret.expose())], None).expect("loads");
        let rounds = 2_000;
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            assert!(set.verify("acme", secret.expose()).is_ok());
            assert!(set.verify("nobody", secret.expose()).is_err());
        }
        let per_check = started.elapsed() / (2 * rounds);
        assert!(
            per_check < std::time::Duration::from_micros(500),
            "{per_check:?} per check"
        );
    }

    #[test]
    fn entry_problems_name_the_field_and_the_entry() {
        let good = entry("acme", &"e".repeat(40));
        let cases: Vec<(ClientConfig, &str)> = vec![
            (
                ClientConfig {
                    id: "a b".into(),
                    ..good.clone()
                },
                "auth.clients.id",
            ),
            (
                ClientConfig {
                    secret_hash: Some("nope".into()),
                    ..good.clone()
                },
                "auth.clients.secret_hash",
            ),
            (
                ClientConfig {
                    secret_file: Some("/x".into()),
                    ..good.clone()
                },
                "auth.clients.secret_hash",
            ),
            (
                ClientConfig {
                    secret_hash: None,
                    ..good.clone()
                },
                "auth.clients.secret_hash",
            ),
            (
                ClientConfig {
                    streams: vec![],
                    ..good.clone()
                },
                "auth.clients.streams",
            ),
            (
                ClientConfig {
                    streams: vec!["valid_transaction".into()],
                    ..good.clone()
                },
                "auth.clients.streams",
            ),
            (
                ClientConfig {
                    public_keys: BTreeSet::from(["0OIl".to_owned()]),
                    ..good.clone()
                },
                "auth.clients.public_keys",
            ),
            (
                ClientConfig {
                    asset_ids: BTreeSet::from(["abc".to_owned()]),
                    ..good.clone()
                },
                "auth.clients.asset_ids",
            ),
            (
                ClientConfig {
                    operations: BTreeSet::from(["MINT!".to_owned()]),
                    ..good.clone()
                },
                "auth.clients.operations",
            ),
            (
                ClientConfig {
                    max_connections: Some(0),
                    ..good.clone()
                },
                "auth.clients.max_connections",
            ),
        ];
        for (bad, key) in cases {
            let problem =
                validate_inline(&[entry("first", &"f".repeat(40)), bad.clone()]).expect_err(key);
            assert_eq!(problem.key, key, "{problem}");
            assert!(problem.problem.contains("entry 2"), "{problem}");
        }
        let twice = validate_inline(&[good.clone(), good]).expect_err("duplicate");
        assert_eq!(twice.key, "auth.clients.id");
        assert!(twice.problem.contains("\"acme\""), "{twice}");
    }

    #[test]
    fn a_clients_file_adds_clients_and_its_problems_name_file_entry_and_field() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("clients.toml");
        let one = SecretHash::new(&"1".repeat(40)).expect("hash");
        std::fs::write(
            &path,
            format!(
                "[[clients]]\nid = \"indexer\"\nsecret_hash = \"{one}\"\nstreams = [\"valid_blocks\"]\n\
                 max_connections = 4\npublic_keys = [\"{K1}\"]\n"
            ),
        )
        .expect("write");
        let set = load(&[entry("acme", &"2".repeat(40))], Some(&path)).expect("loads");
        assert_eq!(set.len(), 2);
        let indexer = set.verify("indexer", &"1".repeat(40)).expect("admitted");
        assert_eq!(indexer.grant.max_connections, Some(4));
        assert_eq!(
            indexer.grant.pins.public_keys,
            BTreeSet::from([K1.to_owned()])
        );

        std::fs::write(
            &path,
            format!(
                "[[clients]]\nid = \"ok\"\nsecret_hash = \"{one}\"\nstreams = [\"valid_blocks\"]\n\n\
                 [[clients]]\nid = \"broken\"\nsecret_hash = \"{one}\"\nstreams = [\"blocks\"]\n"
            ),
        )
        .expect("write");
        let problem = load(&[], Some(&path)).expect_err("bad stream");
        assert_eq!(problem.key, "auth.clients_file");
        let text = problem.to_string();
        for part in [
            path.display().to_string(),
            "entry 2".into(),
            "\"broken\"".into(),
            "streams".into(),
        ] {
            assert!(text.contains(&part), "{text} lacks {part}");
        }

        let typed_secret = "my-plain-secret-typed-into-the-wrong-key";
        std::fs::write(
            &path,
            format!("[[clients]]\nid = \"x\"\nsecret = \"{typed_secret}\"\n"),
        )
        .expect("write");
        let problem = load(&[], Some(&path)).expect_err("unknown key");
        let text = problem.to_string();
        assert!(text.contains("line 3") && text.contains("secret"), "{text}");
        assert!(!text.contains(typed_secret), "{text}");

        let missing = load(&[], Some(&path.with_file_name("none"))).expect_err("missing file");
        assert_eq!(missing.key, "auth.clients_file");
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_is_hashed_as_read_and_must_be_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("acme.secret");
        let secret = "file-secret-file-secret-file-secret-0001";
        crate::secret::write_secret_file(&path, &format!("{secret}\n")).expect("write");
        let config = ClientConfig {
            id: "acme".into(),
            secret_file: Some(path.clone()),
            streams: vec!["valid_blocks".into()],
            ..ClientConfig::default()
        };
        let set = load(std::slice::from_ref(&config), None).expect("loads");
        assert!(set.verify("acme", secret).is_ok());
        assert!(!format!("{set:?}").contains(secret));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let problem = load(&[config], None).expect_err("shared file");
        assert_eq!(problem.key, "auth.clients.secret_file");
        assert!(problem.problem.contains("chmod 600"), "{problem}");
        assert!(!problem.problem.contains(secret), "{problem}");
    }
}
