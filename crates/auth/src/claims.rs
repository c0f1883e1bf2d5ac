//! What a token says ([`Claims`]: times, streams, pinned filters), what an issuer asks for
//! ([`Grant`]), and the rule deciding whether a subscription request ([`Requested`]) is within
//! a token.
//!
//! # The authorization rule
//!
//! 1. The requested stream must be one of the token's streams.
//! 2. For each filter dimension (`public_key`, `asset_id`, `operation`) that the token pins, the
//!    request must filter on that dimension, with values that are all among the pinned ones
//!    (a non-empty subset). A request without that filter would receive everything, so it is
//!    refused: a wallet's token cannot subscribe to the whole chain.
//! 3. Dimensions the token does not pin are free: the request may filter on them or not.
//!
//! Asset ids compare case-insensitively (they are hexadecimal), operations too (they are
//! upper-cased); public keys (base58) compare exactly.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use planetmint_streams_model::ids::{is_public_key, is_transaction_id};
use serde::{Deserialize, Serialize};

use crate::error::{AuthError, IssueError};

/// A stream a token can allow, named as in its URL (`/api/v1/streams/<name>`): the shared
/// [`StreamKind`](planetmint_streams_model::vocabulary::StreamKind).
pub use planetmint_streams_model::vocabulary::{StreamKind as Stream, UnknownStream};

/// Filter values a token pins, per dimension. An empty set leaves that dimension free.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins {
    /// Allowed `public_key` values (base58 Ed25519 keys).
    pub public_keys: BTreeSet<String>,
    /// Allowed `asset_id` values (64 hex digits, kept in lower case).
    pub asset_ids: BTreeSet<String>,
    /// Allowed `operation` values (kept in upper case).
    pub operations: BTreeSet<String>,
}

impl Pins {
    /// True when nothing is pinned.
    pub fn is_empty(&self) -> bool {
        self.public_keys.is_empty() && self.asset_ids.is_empty() && self.operations.is_empty()
    }

    /// The pinned values as stream URL query parameters (`public_key`, `asset_id`,
    /// `operation`), in a stable order. A URL for a pinning token must carry filters within
    /// the pins; these are the widest such filters.
    pub fn query_pairs(&self) -> Vec<(&'static str, String)> {
        let pairs = |name: &'static str, values: &BTreeSet<String>| {
            values
                .iter()
                .map(move |value| (name, value.clone()))
                .collect::<Vec<_>>()
        };
        let mut all = pairs("public_key", &self.public_keys);
        all.extend(pairs("asset_id", &self.asset_ids));
        all.extend(pairs("operation", &self.operations));
        all
    }

    /// Checks every value and brings asset ids to lower case and operations to upper case,
    /// as the stream server does with the filters of a URL.
    pub fn normalized(&self) -> Result<Pins, IssueError> {
        let invalid = |parameter, message: &str| IssueError::InvalidPin {
            parameter,
            message: message.to_owned(),
        };
        for key in &self.public_keys {
            if !is_public_key(key) {
                return Err(invalid(
                    "public_key",
                    "expected a base58 Ed25519 public key (32 bytes)",
                ));
            }
        }
        let mut asset_ids = BTreeSet::new();
        for id in &self.asset_ids {
            if !is_transaction_id(id) {
                return Err(invalid("asset_id", "expected 64 hexadecimal digits"));
            }
            asset_ids.insert(id.to_ascii_lowercase());
        }
        let mut operations = BTreeSet::new();
        for operation in &self.operations {
            if !is_operation_name(operation) {
                return Err(invalid(
                    "operation",
                    "expected an operation name such as CREATE or TRANSFER",
                ));
            }
            operations.insert(operation.to_ascii_uppercase());
        }
        Ok(Pins {
            public_keys: self.public_keys.clone(),
            asset_ids,
            operations,
        })
    }
}

/// Operation names are letters and underscores (`CREATE`, `VALIDATOR_ELECTION`); the stream
/// server checks them against the operations Planetmint knows.
fn is_operation_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_')
}

/// What an issuer asks a token to allow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// The streams the token opens (at least one).
    pub streams: BTreeSet<Stream>,
    /// Filters every subscription made with the token must stay within.
    pub pins: Pins,
}

impl Grant {
    /// A grant of `streams` with nothing pinned.
    pub fn new(streams: impl IntoIterator<Item = Stream>) -> Self {
        Self {
            streams: streams.into_iter().collect(),
            pins: Pins::default(),
        }
    }

    /// Pins a public key.
    pub fn public_key(mut self, key: impl Into<String>) -> Self {
        self.pins.public_keys.insert(key.into());
        self
    }

    /// Pins an asset id.
    pub fn asset_id(mut self, id: impl Into<String>) -> Self {
        self.pins.asset_ids.insert(id.into());
        self
    }

    /// Pins an operation.
    pub fn operation(mut self, operation: impl Into<String>) -> Self {
        self.pins.operations.insert(operation.into());
        self
    }
}

/// The signed content of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// When the token was issued, in unix seconds.
    pub issued_at: u64,
    /// When the token stops opening connections, in unix seconds (valid while `now <
    /// expires_at`).
    pub expires_at: u64,
    /// The streams the token opens; never empty.
    pub streams: BTreeSet<Stream>,
    /// Filters every subscription made with the token must stay within.
    pub pins: Pins,
}

/// A subscription request as the stream server parsed it from the URL: the stream and the
/// filter values of each dimension (empty: not filtered).
#[derive(Debug, Clone, Copy)]
pub struct Requested<'a> {
    /// The stream of the URL's path.
    pub stream: Stream,
    /// `public_key` values.
    pub public_keys: &'a HashSet<String>,
    /// `asset_id` values.
    pub asset_ids: &'a HashSet<String>,
    /// `operation` values.
    pub operations: &'a HashSet<String>,
}

impl Claims {
    /// Whether the token allows `requested`, by the rule in the [module documentation](self).
    /// Checks neither signature nor time (see [`crate::TokenAuthority::authorize`]).
    pub fn allows(&self, requested: &Requested<'_>) -> Result<(), AuthError> {
        allows(&self.streams, &self.pins, requested)
    }

    /// How long the token still opens connections at `now` (unix seconds); zero once expired.
    /// A server closing connections at expiry (`auth.close_on_expiry`) sleeps this long.
    pub fn expires_in(&self, now: u64) -> Duration {
        Duration::from_secs(self.expires_at.saturating_sub(now))
    }
}

/// The rule of the [module documentation](self) for any credential: `streams` and `pins` are
/// what the credential allows (a token's claims, a configured client's entry, a JWT's claims).
pub(crate) fn allows(
    streams: &BTreeSet<Stream>,
    pins: &Pins,
    requested: &Requested<'_>,
) -> Result<(), AuthError> {
    if !streams.contains(&requested.stream) {
        return Err(AuthError::StreamNotAllowed {
            stream: requested.stream,
        });
    }
    within(
        "public_key",
        &pins.public_keys,
        requested.public_keys,
        Cow::Borrowed,
    )?;
    within(
        "asset_id",
        &pins.asset_ids,
        requested.asset_ids,
        |v: &str| Cow::Owned(v.to_ascii_lowercase()),
    )?;
    within(
        "operation",
        &pins.operations,
        requested.operations,
        |v: &str| Cow::Owned(v.to_ascii_uppercase()),
    )
}

fn within<'v>(
    parameter: &'static str,
    pinned: &BTreeSet<String>,
    requested: &'v HashSet<String>,
    normalize: impl Fn(&'v str) -> Cow<'v, str>,
) -> Result<(), AuthError> {
    if pinned.is_empty() {
        return Ok(());
    }
    if requested.is_empty() {
        return Err(AuthError::FilterNotAllowed {
            parameter,
            required: true,
        });
    }
    if requested
        .iter()
        .all(|value| pinned.contains(normalize(value).as_ref()))
    {
        Ok(())
    } else {
        Err(AuthError::FilterNotAllowed {
            parameter,
            required: false,
        })
    }
}

/// Claims as JSON inside a token. Unknown fields are refused: a newer issuer's restriction
/// must not be silently ignored by an older verifier.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WireClaims {
    iat: u64,
    exp: u64,
    streams: BTreeSet<Stream>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    public_keys: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    asset_ids: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    operations: BTreeSet<String>,
}

impl From<&Claims> for WireClaims {
    fn from(claims: &Claims) -> Self {
        Self {
            iat: claims.issued_at,
            exp: claims.expires_at,
            streams: claims.streams.clone(),
            public_keys: claims.pins.public_keys.clone(),
            asset_ids: claims.pins.asset_ids.clone(),
            operations: claims.pins.operations.clone(),
        }
    }
}

impl From<WireClaims> for Claims {
    fn from(wire: WireClaims) -> Self {
        Self {
            issued_at: wire.iat,
            expires_at: wire.exp,
            streams: wire.streams,
            pins: Pins {
                public_keys: wire.public_keys,
                asset_ids: wire.asset_ids,
                operations: wire.operations,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW";
    const K2: &str = "zeLcy7Xzntvupb1PChe1B3KjxRKcCdM1zJEKyKpc653";
    const K3: &str = "3M3ZDYjNvUi8itTC8e5uUHmb6ZUCpXR9Kn7A9Yse1HCn";

    fn set(values: &[&str]) -> HashSet<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    fn claims(grant: Grant) -> Claims {
        Claims {
            issued_at: 0,
            expires_at: 120,
            streams: grant.streams,
            pins: grant.pins.normalized().expect("valid pins"),
        }
    }

    fn check(
        claims: &Claims,
        stream: Stream,
        keys: &[&str],
        assets: &[&str],
        ops: &[&str],
    ) -> Result<(), AuthError> {
        let (keys, assets, ops) = (set(keys), set(assets), set(ops));
        claims.allows(&Requested {
            stream,
            public_keys: &keys,
            asset_ids: &assets,
            operations: &ops,
        })
    }

    #[test]
    fn streams_parse_and_print_as_in_urls() {
        for stream in Stream::ALL {
            assert_eq!(stream.name().parse::<Stream>(), Ok(stream));
            assert_eq!(stream.to_string(), stream.name());
        }
        assert!("valid_transaction".parse::<Stream>().is_err());
    }

    #[test]
    fn an_unpinned_token_allows_any_filters_on_its_streams_only() {
        let c = claims(Grant::new([Stream::ValidTransactions]));
        assert_eq!(check(&c, Stream::ValidTransactions, &[], &[], &[]), Ok(()));
        assert_eq!(
            check(&c, Stream::ValidTransactions, &[K1], &[], &["CREATE"]),
            Ok(())
        );
        assert_eq!(
            check(&c, Stream::ValidBlocks, &[], &[], &[]),
            Err(AuthError::StreamNotAllowed {
                stream: Stream::ValidBlocks
            })
        );
    }

    #[test]
    fn a_pinned_dimension_needs_a_non_empty_subset_of_the_pins() {
        let c = claims(
            Grant::new([Stream::ValidTransactions])
                .public_key(K1)
                .public_key(K2),
        );
        assert_eq!(
            check(&c, Stream::ValidTransactions, &[K1], &[], &[]),
            Ok(())
        );
        assert_eq!(
            check(&c, Stream::ValidTransactions, &[K1, K2], &[], &["VOTE"]),
            Ok(()),
            "subset of the pins, and operation is not pinned"
        );
        assert_eq!(
            check(&c, Stream::ValidTransactions, &[], &[], &[]),
            Err(AuthError::FilterNotAllowed {
                parameter: "public_key",
                required: true
            }),
            "no filter would mean every transaction"
        );
        assert_eq!(
            check(&c, Stream::ValidTransactions, &[K1, K3], &[], &[]),
            Err(AuthError::FilterNotAllowed {
                parameter: "public_key",
                required: false
            }),
            "K3 is not pinned"
        );
    }

    #[test]
    fn asset_and_operation_pins_ignore_case() {
        let asset = "AB".repeat(32);
        let c = claims(
            Grant::new(Stream::ALL)
                .asset_id(asset.clone())
                .operation("transfer"),
        );
        assert!(c.pins.asset_ids.contains(&"ab".repeat(32)));
        assert!(c.pins.operations.contains("TRANSFER"));
        assert_eq!(
            check(&c, Stream::ValidBlocks, &[], &[&asset], &["Transfer"]),
            Ok(())
        );
        assert_eq!(
            check(
                &c,
                Stream::ValidBlocks,
                &[],
                &[&"cd".repeat(32)],
                &["TRANSFER"]
            ),
            Err(AuthError::FilterNotAllowed {
                parameter: "asset_id",
                required: false
            })
        );
        assert_eq!(
            check(&c, Stream::ValidBlocks, &[], &[&asset], &[]),
            Err(AuthError::FilterNotAllowed {
                parameter: "operation",
                required: true
            })
        );
    }

    #[test]
    fn invalid_pins_are_refused_at_issue_naming_the_parameter() {
        for (grant, parameter) in [
            (Grant::new(Stream::ALL).public_key("0OIl"), "public_key"),
            (Grant::new(Stream::ALL).asset_id("abc"), "asset_id"),
            (Grant::new(Stream::ALL).operation("MINT!"), "operation"),
            (Grant::new(Stream::ALL).operation(""), "operation"),
        ] {
            let err = grant.pins.normalized().expect_err(parameter);
            assert_eq!(err.parameter(), parameter);
        }
    }

    #[test]
    fn query_pairs_list_every_pin_by_parameter() {
        let c = claims(
            Grant::new(Stream::ALL)
                .public_key(K2)
                .public_key(K1)
                .operation("CREATE"),
        );
        let mut expected = vec![("public_key", K1.to_owned()), ("public_key", K2.to_owned())];
        expected.sort();
        expected.push(("operation", "CREATE".to_owned()));
        assert_eq!(c.pins.query_pairs(), expected);
    }

    #[test]
    fn expires_in_counts_down_to_zero() {
        let c = claims(Grant::new(Stream::ALL));
        assert_eq!(c.expires_in(20), Duration::from_secs(100));
        assert_eq!(c.expires_in(120), Duration::ZERO);
        assert_eq!(c.expires_in(500), Duration::ZERO);
    }
}
