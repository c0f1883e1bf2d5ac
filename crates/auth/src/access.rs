//! What a verified credential allows ([`Access`]) and whom it stands for ([`Principal`]),
//! whichever way it came in: a stream token, a configured client, a JWT, or nobody at all in
//! open mode.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use crate::claims::{Claims, Pins, Requested, Stream};
use crate::error::AuthError;

/// Whom a credential stands for. Ids and subjects are not secret: they appear in logs. It can
/// key a map, e.g. of open connections per client.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Principal {
    /// Open mode: nobody in particular.
    Anonymous,
    /// A stream token, by the id of the key that signed it (`None` when built from claims
    /// alone).
    StreamToken {
        /// The signing key's id.
        key_id: Option<String>,
    },
    /// A client configured on the node.
    Client {
        /// Its id.
        id: String,
    },
    /// A JWT of the operator's identity provider: its `iss` and `sub` claims.
    Jwt {
        /// The `iss` claim.
        issuer: Option<String>,
        /// The `sub` claim.
        subject: Option<String>,
    },
}

impl Principal {
    /// A short stable label of the kind of credential, for metrics: `anonymous`,
    /// `stream_token`, `client` or `jwt`.
    pub fn kind(&self) -> &'static str {
        match self {
            Principal::Anonymous => "anonymous",
            Principal::StreamToken { .. } => "stream_token",
            Principal::Client { .. } => "client",
            Principal::Jwt { .. } => "jwt",
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Anonymous => write!(f, "anonymous"),
            Principal::StreamToken { key_id: Some(id) } => write!(f, "stream token of key {id}"),
            Principal::StreamToken { key_id: None } => write!(f, "stream token"),
            Principal::Client { id } => write!(f, "client {id}"),
            Principal::Jwt { issuer, subject } => write!(
                f,
                "JWT of {} for {}",
                issuer.as_deref().unwrap_or("(no iss)"),
                subject.as_deref().unwrap_or("(no sub)")
            ),
        }
    }
}

/// What a verified credential allows: the streams, the filters every subscription must stay
/// within, until when, and how many connections at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// Whom the credential stands for.
    pub principal: Principal,
    /// The streams it opens; never empty.
    pub streams: BTreeSet<Stream>,
    /// Filters every subscription made with it must stay within (see [`crate::claims`]).
    pub pins: Pins,
    /// When it stops opening connections, in unix seconds (valid while `now < expires_at`);
    /// `None`: never (a configured client, open mode).
    pub expires_at: Option<u64>,
    /// Most connections open at once with this credential (a configured client's
    /// `max_connections`); `None`: only the node's own limits apply.
    pub max_connections: Option<usize>,
}

impl Access {
    /// What open mode allows anyone: every stream, nothing pinned, no expiry, no cap.
    pub fn unrestricted() -> Self {
        Self {
            principal: Principal::Anonymous,
            streams: Stream::ALL.into_iter().collect(),
            pins: Pins::default(),
            expires_at: None,
            max_connections: None,
        }
    }

    /// Whether `requested` is within what the credential allows: the same rule as
    /// [`Claims::allows`] (the stream must be one of [`Access::streams`]; each pinned
    /// dimension must be filtered with a non-empty subset of the pins). Checks no time.
    pub fn allows(&self, requested: &Requested<'_>) -> Result<(), AuthError> {
        crate::claims::allows(&self.streams, &self.pins, requested)
    }

    /// How long it still opens connections at `now` (unix seconds), zero once expired; `None`
    /// when it does not expire. A server closing connections at expiry sleeps this long.
    pub fn expires_in(&self, now: u64) -> Option<Duration> {
        self.expires_at
            .map(|at| Duration::from_secs(at.saturating_sub(now)))
    }

    /// True when it has expired at `now`.
    pub fn is_expired_at(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

impl From<Claims> for Access {
    /// A stream token's claims (the key id is not part of them: see
    /// [`crate::Gatekeeper::verify`] for an [`Access`] naming it).
    fn from(claims: Claims) -> Self {
        Self {
            principal: Principal::StreamToken { key_id: None },
            streams: claims.streams,
            pins: claims.pins,
            expires_at: Some(claims.expires_at),
            max_connections: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::claims::Grant;

    const K1: &str = "4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW";
    const K2: &str = "zeLcy7Xzntvupb1PChe1B3KjxRKcCdM1zJEKyKpc653";

    fn check(
        rule: impl Fn(&Requested<'_>) -> Result<(), AuthError>,
        stream: Stream,
        keys: &[&str],
    ) -> Result<(), AuthError> {
        let keys: HashSet<String> = keys.iter().map(|k| k.to_string()).collect();
        let none = HashSet::new();
        rule(&Requested {
            stream,
            public_keys: &keys,
            asset_ids: &none,
            operations: &none,
        })
    }

    #[test]
    fn access_from_claims_applies_the_claims_rule_exactly() {
        let grant = Grant::new([Stream::ValidTransactions]).public_key(K1);
        let claims = Claims {
            issued_at: 10,
            expires_at: 130,
            streams: grant.streams.clone(),
            pins: grant.pins.normalized().expect("pins"),
        };
        let access = Access::from(claims.clone());
        assert_eq!(access.expires_at, Some(130));
        assert_eq!(access.principal.kind(), "stream_token");
        for (stream, keys) in [
            (Stream::ValidTransactions, vec![K1]),
            (Stream::ValidTransactions, vec![]),
            (Stream::ValidTransactions, vec![K1, K2]),
            (Stream::ValidBlocks, vec![K1]),
        ] {
            assert_eq!(
                check(|r| access.allows(r), stream, &keys),
                check(|r| claims.allows(r), stream, &keys),
                "{stream} {keys:?}"
            );
        }
        assert_eq!(
            check(|r| access.allows(r), Stream::ValidBlocks, &[K1]),
            Err(AuthError::StreamNotAllowed {
                stream: Stream::ValidBlocks
            })
        );
    }

    #[test]
    fn expiry_counts_down_and_never_without_one() {
        let mut access = Access::unrestricted();
        assert_eq!(access.expires_in(5), None);
        assert!(!access.is_expired_at(u64::MAX));
        access.expires_at = Some(100);
        assert_eq!(access.expires_in(40), Some(Duration::from_secs(60)));
        assert_eq!(access.expires_in(400), Some(Duration::ZERO));
        assert!(access.is_expired_at(100) && !access.is_expired_at(99));
    }

    #[test]
    fn open_mode_allows_every_stream_and_filter() {
        let access = Access::unrestricted();
        for stream in Stream::ALL {
            assert_eq!(check(|r| access.allows(r), stream, &[]), Ok(()));
            assert_eq!(check(|r| access.allows(r), stream, &[K2]), Ok(()));
        }
        assert_eq!(access.principal.to_string(), "anonymous");
    }
}
