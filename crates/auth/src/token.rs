//! Tokens: encoding and signing claims, and verifying a presented token in a fixed order that
//! never parses unsigned content (see the crate documentation for the format).
//!
//! [`TokenAuthority`] is what the node holds: the key ring plus the lifetime policy. It issues
//! ([`TokenAuthority::issue`]) and checks ([`TokenAuthority::authorize`]) tokens.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::Mac;

use crate::claims::{Claims, Grant, Requested, WireClaims};
use crate::error::{AuthError, IssueError};
use crate::keyring::{is_key_id, KeyRing};

/// The version prefix of the token format this crate writes and reads.
pub const TOKEN_VERSION: &str = "v1";
/// Longest token accepted or issued, in characters (it must fit in a URL with its filters).
pub const MAX_TOKEN_LEN: usize = 4096;
/// Length of the HMAC-SHA3-256 tag in bytes.
pub const TAG_LEN: usize = 32;

/// Lifetimes of tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Lifetime of a token issued without one (`auth.default_ttl`).
    pub default_ttl: Duration,
    /// Longest lifetime issued or accepted (`auth.max_ttl`); lowering it also refuses tokens
    /// issued earlier for longer.
    pub max_ttl: Duration,
    /// How far in the future a token's issue time may be, for issuers whose clock is ahead
    /// (`auth.clock_skew`). Expiry gets no such allowance.
    pub clock_skew: Duration,
}

/// Default lifetime of a token: 2 minutes, long enough to hand a URL to a client that
/// connects at once.
pub const DEFAULT_TTL: Duration = Duration::from_secs(120);
/// Default longest lifetime: 1 hour.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(3600);
/// Default allowance for an issuer's clock being ahead: 30 seconds.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(30);

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            default_ttl: DEFAULT_TTL,
            max_ttl: DEFAULT_MAX_TTL,
            clock_skew: DEFAULT_CLOCK_SKEW,
        }
    }
}

/// A token just issued and what it says. `Debug` hides the token: it is a credential.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The token, for the `token` query parameter (URL-safe as it is).
    pub token: String,
    /// Its claims (e.g. to tell the caller when it expires).
    pub claims: Claims,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &crate::secret::REDACTED)
            .field("claims", &self.claims)
            .finish()
    }
}

/// The current time in unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// Whole seconds of `ttl`, rounded up (a token never lives shorter than asked).
fn ceil_secs(ttl: Duration) -> u64 {
    ttl.as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0))
}

/// The value of the `token` parameter of a URL's query string: `Ok(None)` when absent or
/// empty, [`AuthError::Malformed`] when given more than once.
pub fn token_from_query(query: &str) -> Result<Option<String>, AuthError> {
    let mut found: Option<String> = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key == "token" {
            if found.is_some() {
                return Err(AuthError::Malformed("token given more than once"));
            }
            found = Some(value.into_owned());
        }
    }
    Ok(found.filter(|token| !token.is_empty()))
}

/// True when `text` has a stream token's outline, `v1.<key id>.<claims>.<tag>` (no check of
/// the parts): how a credential that may be a token or something else is told apart.
pub fn looks_like_stream_token(text: &str) -> bool {
    text.strip_prefix(TOKEN_VERSION).is_some_and(|rest| {
        rest.starts_with('.') && rest.bytes().filter(|&b| b == b'.').count() == 3
    })
}

/// The key id of a token of the `v1.<key id>.…` form (not verified).
pub(crate) fn key_id_of(token: &str) -> Option<&str> {
    let mut parts = token.splitn(3, '.');
    match (parts.next(), parts.next()) {
        (Some(TOKEN_VERSION), Some(key_id)) if is_key_id(key_id) => Some(key_id),
        _ => None,
    }
}

/// The node's issuer and verifier of tokens: a key ring and a lifetime policy.
#[derive(Debug, Clone)]
pub struct TokenAuthority {
    keys: KeyRing,
    policy: TokenPolicy,
}

impl TokenAuthority {
    /// Combines a key ring and a policy.
    pub fn new(keys: KeyRing, policy: TokenPolicy) -> Self {
        Self { keys, policy }
    }

    /// The key ring.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The lifetime policy.
    pub fn policy(&self) -> &TokenPolicy {
        &self.policy
    }

    /// Issues a token for `grant` valid from now for `ttl` (the policy's default when `None`).
    pub fn issue(&self, grant: &Grant, ttl: Option<Duration>) -> Result<IssuedToken, IssueError> {
        self.issue_at(grant, ttl, unix_now())
    }

    /// Issues a token as [`TokenAuthority::issue`] does, at time `now` (unix seconds).
    pub fn issue_at(
        &self,
        grant: &Grant,
        ttl: Option<Duration>,
        now: u64,
    ) -> Result<IssuedToken, IssueError> {
        if grant.streams.is_empty() {
            return Err(IssueError::NoStream);
        }
        let ttl = ttl.unwrap_or(self.policy.default_ttl);
        if ttl.is_zero() {
            return Err(IssueError::TtlZero);
        }
        let too_long = IssueError::TtlTooLong {
            max: self.policy.max_ttl,
        };
        if ttl > self.policy.max_ttl {
            return Err(too_long);
        }
        let expires_at = now.checked_add(ceil_secs(ttl)).ok_or(too_long)?;
        let claims = Claims {
            issued_at: now,
            expires_at,
            streams: grant.streams.clone(),
            pins: grant.pins.normalized()?,
        };
        let token = self.sign(&claims);
        if token.len() > MAX_TOKEN_LEN {
            return Err(IssueError::TooLong {
                len: token.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        Ok(IssuedToken { token, claims })
    }

    /// Encodes and signs `claims` with the issuing key, without the checks of
    /// [`TokenAuthority::issue`].
    fn sign(&self, claims: &Claims) -> String {
        // Serializing plain integers, enum names and strings cannot fail.
        let json = serde_json::to_vec(&WireClaims::from(claims)).unwrap_or_default();
        let (key_id, mut mac) = self.keys.issuing_mac();
        let mut token = format!("{TOKEN_VERSION}.{key_id}.{}", URL_SAFE_NO_PAD.encode(json));
        mac.update(token.as_bytes());
        let tag = mac.finalize().into_bytes();
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(tag, &mut token);
        token
    }

    /// Checks a token's form, key, signature and times at the current time; returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        self.verify_at(token, unix_now())
    }

    /// Checks a token as [`TokenAuthority::verify`] does, at time `now` (unix seconds).
    ///
    /// Order: form (401), key id (403), signature (403, constant-time), then the signed claims
    /// are decoded (401 if unreadable) and their times checked (403).
    pub fn verify_at(&self, token: &str, now: u64) -> Result<Claims, AuthError> {
        let claims = self.verify_signature(token)?;
        if claims.expires_at <= claims.issued_at {
            return Err(AuthError::BadLifetime("expires before it is issued"));
        }
        if claims.expires_at - claims.issued_at > ceil_secs(self.policy.max_ttl) {
            return Err(AuthError::BadLifetime("valid for longer than auth.max_ttl"));
        }
        if claims.issued_at > now.saturating_add(ceil_secs(self.policy.clock_skew)) {
            return Err(AuthError::BadLifetime("issued in the future"));
        }
        if now >= claims.expires_at {
            return Err(AuthError::Expired {
                expired_at: claims.expires_at,
            });
        }
        Ok(claims)
    }

    /// Form, key and signature checks, then the claims decoded; no time checks.
    fn verify_signature(&self, token: &str) -> Result<Claims, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed("too long"));
        }
        let (signed, tag_text) = token
            .rsplit_once('.')
            .ok_or(AuthError::Malformed("expected v1.<key id>.<claims>.<tag>"))?;
        let mut parts = signed.splitn(3, '.');
        let (Some(version), Some(key_id), Some(claims_text)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed("expected v1.<key id>.<claims>.<tag>"));
        };
        if version != TOKEN_VERSION {
            return Err(AuthError::Malformed("unsupported version: expected v1"));
        }
        if !is_key_id(key_id) {
            return Err(AuthError::Malformed("invalid key id"));
        }
        if claims_text.is_empty() || claims_text.contains('.') {
            return Err(AuthError::Malformed("expected v1.<key id>.<claims>.<tag>"));
        }
        let mut tag = [0u8; TAG_LEN];
        match URL_SAFE_NO_PAD.decode_slice(tag_text, &mut tag) {
            Ok(TAG_LEN) => {}
            _ => return Err(AuthError::Malformed("tag is not 32 bytes of base64url")),
        }
        let mut mac = self
            .keys
            .mac(key_id)
            .ok_or_else(|| AuthError::UnknownKey(key_id.to_owned()))?;
        mac.update(signed.as_bytes());
        mac.verify_slice(&tag)
            .map_err(|_| AuthError::BadSignature)?;
        // Signed by a key we hold: the claims are ours (or a trusted issuer's) to read.
        let json = URL_SAFE_NO_PAD
            .decode(claims_text)
            .map_err(|_| AuthError::Malformed("claims are not base64url"))?;
        let wire: WireClaims = serde_json::from_slice(&json)
            .map_err(|_| AuthError::Malformed("claims are not readable"))?;
        let claims = Claims::from(wire);
        if claims.streams.is_empty() {
            return Err(AuthError::Malformed("claims name no stream"));
        }
        Ok(Claims {
            pins: claims
                .pins
                .normalized()
                .map_err(|_| AuthError::Malformed("claims pin invalid filter values"))?,
            ..claims
        })
    }

    /// Decides a stream request at the current time: the token (from [`token_from_query`])
    /// must verify and allow `requested` (see [`Claims::allows`]). Returns the claims, e.g.
    /// for closing the connection at [`Claims::expires_at`].
    pub fn authorize(
        &self,
        token: Option<&str>,
        requested: &Requested<'_>,
    ) -> Result<Claims, AuthError> {
        self.authorize_at(token, requested, unix_now())
    }

    /// Decides a stream request as [`TokenAuthority::authorize`] does, at time `now`.
    pub fn authorize_at(
        &self,
        token: Option<&str>,
        requested: &Requested<'_>,
        now: u64,
    ) -> Result<Claims, AuthError> {
        let claims = self.verify_at(token.ok_or(AuthError::Missing)?, now)?;
        claims.allows(requested)?;
        Ok(claims)
    }

    /// Signs arbitrary claims with the issuing key, skipping every issuing check: for tests of
    /// verifiers only.
    #[cfg(test)]
    pub(crate) fn sign_unchecked(&self, claims: &Claims) -> String {
        self.sign(claims)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::claims::{Pins, Stream};

    const NOW: u64 = 1_700_000_000;
    const K1: &str = "4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW";
    const K2: &str = "zeLcy7Xzntvupb1PChe1B3KjxRKcCdM1zJEKyKpc653";

    fn authority(id: &str, secret_byte: u8) -> TokenAuthority {
        TokenAuthority::new(
            KeyRing::new(id, &[secret_byte; 32]).expect("ring"),
            TokenPolicy::default(),
        )
    }

    fn issue(authority: &TokenAuthority, grant: &Grant) -> IssuedToken {
        authority.issue_at(grant, None, NOW).expect("issue")
    }

    fn request(
        authority: &TokenAuthority,
        token: &str,
        stream: Stream,
        keys: &[&str],
        now: u64,
    ) -> Result<Claims, AuthError> {
        let keys: HashSet<String> = keys.iter().map(|k| k.to_string()).collect();
        let none = HashSet::new();
        authority.authorize_at(
            Some(token),
            &Requested {
                stream,
                public_keys: &keys,
                asset_ids: &none,
                operations: &none,
            },
            now,
        )
    }

    #[test]
    fn a_token_round_trips_with_its_claims() {
        let auth = authority("k1", 1);
        let grant = Grant::new([Stream::ValidTransactions]).public_key(K1);
        let issued = issue(&auth, &grant);
        assert!(issued.token.starts_with("v1.k1."), "{}", issued.token);
        assert_eq!(issued.token.split('.').count(), 4);
        assert!(issued
            .token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        assert_eq!(issued.claims.issued_at, NOW);
        assert_eq!(issued.claims.expires_at, NOW + 120, "2 minutes by default");
        let claims = auth.verify_at(&issued.token, NOW + 1).expect("verifies");
        assert_eq!(claims, issued.claims);
        assert_eq!(claims.pins.public_keys.iter().collect::<Vec<_>>(), [K1]);
        assert_eq!(
            request(&auth, &issued.token, Stream::ValidTransactions, &[K1], NOW).map(|_| ()),
            Ok(())
        );
    }

    #[test]
    fn the_claims_are_readable_json_and_the_tag_signs_everything_before_it() {
        let auth = authority("k1", 1);
        let issued = issue(&auth, &Grant::new([Stream::ValidBlocks]));
        let parts: Vec<&str> = issued.token.split('.').collect();
        let json = URL_SAFE_NO_PAD.decode(parts[2]).expect("base64url");
        let value: serde_json::Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(
            value,
            serde_json::json!({"iat": NOW, "exp": NOW + 120, "streams": ["valid_blocks"]})
        );
        let mut mac = hmac::Hmac::<sha3::Sha3_256>::new_from_slice(&[1; 32]).expect("key");
        mac.update(format!("v1.k1.{}", parts[2]).as_bytes());
        assert_eq!(
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()),
            parts[3],
            "tag = HMAC-SHA3-256(secret, \"v1.<key id>.<claims>\")"
        );
    }

    #[test]
    fn a_token_from_another_secret_is_refused() {
        let ours = authority("k1", 1);
        let forger = authority("k1", 2);
        let forged = issue(&forger, &Grant::new(Stream::ALL));
        assert_eq!(
            ours.verify_at(&forged.token, NOW),
            Err(AuthError::BadSignature)
        );
        assert_eq!(AuthError::BadSignature.status(), 403);
    }

    #[test]
    fn tampered_claims_are_refused_even_when_well_formed() {
        let auth = authority("k1", 1);
        let issued = issue(
            &auth,
            &Grant::new([Stream::ValidTransactions]).public_key(K1),
        );
        let parts: Vec<&str> = issued.token.split('.').collect();
        // Widen the token: all streams, no pins, a year of validity; keep the original tag.
        let widened = serde_json::json!({"iat": NOW, "exp": NOW + 31_536_000,
            "streams": ["valid_transactions", "valid_blocks"]});
        let tampered = format!(
            "v1.k1.{}.{}",
            URL_SAFE_NO_PAD.encode(widened.to_string()),
            parts[3]
        );
        assert_eq!(auth.verify_at(&tampered, NOW), Err(AuthError::BadSignature));
        // Moving the token to another key id does not help either.
        let mut two_keys = KeyRing::new("k1", &[1; 32]).expect("ring");
        two_keys.add("k2", &[3; 32]).expect("add");
        let auth2 = TokenAuthority::new(two_keys, TokenPolicy::default());
        let relabelled = issued.token.replacen("v1.k1.", "v1.k2.", 1);
        assert_eq!(
            auth2.verify_at(&relabelled, NOW),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn a_tampered_tag_is_refused() {
        let auth = authority("k1", 1);
        let issued = issue(&auth, &Grant::new(Stream::ALL));
        let (signed, tag) = issued.token.rsplit_once('.').expect("four parts");
        let mut bytes = URL_SAFE_NO_PAD.decode(tag).expect("tag");
        bytes[0] ^= 1;
        let flipped = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&bytes));
        assert_eq!(auth.verify_at(&flipped, NOW), Err(AuthError::BadSignature));
        let truncated = format!("{signed}.{}", &tag[..tag.len() - 2]);
        let err = auth.verify_at(&truncated, NOW).expect_err("short tag");
        assert_eq!((err.status(), err.reason()), (401, "malformed_token"));
    }

    #[test]
    fn an_expired_token_is_refused_from_its_expiry_second_on() {
        let auth = authority("k1", 1);
        let issued = auth
            .issue_at(&Grant::new(Stream::ALL), Some(Duration::from_secs(60)), NOW)
            .expect("issue");
        assert!(auth.verify_at(&issued.token, NOW + 59).is_ok());
        let err = auth
            .verify_at(&issued.token, NOW + 60)
            .expect_err("expired");
        assert_eq!(
            err,
            AuthError::Expired {
                expired_at: NOW + 60
            }
        );
        assert_eq!((err.status(), err.reason()), (403, "expired"));
    }

    #[test]
    fn the_wrong_stream_or_filter_is_refused() {
        let auth = authority("k1", 1);
        let issued = issue(
            &auth,
            &Grant::new([Stream::ValidTransactions]).public_key(K1),
        );
        let err = request(&auth, &issued.token, Stream::ValidBlocks, &[K1], NOW)
            .expect_err("wrong stream");
        assert_eq!((err.status(), err.reason()), (403, "stream_not_allowed"));
        let err = request(&auth, &issued.token, Stream::ValidTransactions, &[K2], NOW)
            .expect_err("other wallet");
        assert_eq!((err.status(), err.reason()), (403, "filter_not_allowed"));
        assert_eq!(err.parameter(), "public_key");
        let err = request(&auth, &issued.token, Stream::ValidTransactions, &[], NOW)
            .expect_err("everything");
        assert_eq!((err.status(), err.reason()), (403, "filter_not_allowed"));
    }

    #[test]
    fn an_unknown_key_id_is_refused() {
        let auth = authority("k1", 1);
        let other = authority("k9", 1);
        let issued = issue(&other, &Grant::new(Stream::ALL));
        let err = auth.verify_at(&issued.token, NOW).expect_err("unknown key");
        assert_eq!(err, AuthError::UnknownKey("k9".into()));
        assert_eq!((err.status(), err.reason()), (403, "unknown_key"));
    }

    #[test]
    fn a_missing_token_is_401() {
        let auth = authority("k1", 1);
        let none = HashSet::new();
        let requested = Requested {
            stream: Stream::ValidBlocks,
            public_keys: &none,
            asset_ids: &none,
            operations: &none,
        };
        let err = auth.authorize_at(None, &requested, NOW).expect_err("none");
        assert_eq!((err.status(), err.reason()), (401, "missing_token"));
        let err = auth
            .authorize_at(Some(""), &requested, NOW)
            .expect_err("empty");
        assert_eq!(err, AuthError::Missing);
    }

    #[test]
    fn malformed_tokens_are_401_and_never_echoed() {
        let auth = authority("k1", 1);
        let good = issue(&auth, &Grant::new(Stream::ALL)).token;
        let tag = good.rsplit('.').next().expect("tag").to_owned();
        for bad in [
            "garbage".to_owned(),
            "v1.k1.e30".to_owned(),
            format!("v2.k1.e30.{tag}"),
            format!("v1.k.1.e30.{tag}"),
            format!("v1..e30.{tag}"),
            format!("v1.k1..{tag}"),
            format!("{good}="),
            format!("{good}.x"),
            "v1.k1.e30.%%%".to_owned(),
            "x".repeat(MAX_TOKEN_LEN + 1),
        ] {
            let err = auth.verify_at(&bad, NOW).expect_err(&bad);
            assert_eq!(err.status(), 401, "{bad}: {err}");
            assert!(!err.to_string().contains(&tag), "{err}");
            assert!(!err.to_string().contains(&bad), "{err}");
        }
    }

    #[test]
    fn signed_but_unreadable_claims_are_malformed() {
        let auth = authority("k1", 1);
        // Sign a hand-made claims text with the real key: valid signature, bad content.
        let sign = |json: &str| {
            let signed = format!("v1.k1.{}", URL_SAFE_NO_PAD.encode(json));
            let mut mac = hmac::Hmac::<sha3::Sha3_256>::new_from_slice(&[1; 32]).expect("key");
            mac.update(signed.as_bytes());
            format!(
                "{signed}.{}",
                URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
            )
        };
        for json in [
            "not json".to_owned(),
            format!(r#"{{"iat":{NOW},"exp":{},"streams":[]}}"#, NOW + 60),
            format!(
                r#"{{"iat":{NOW},"exp":{},"streams":["valid_blocks"],"ip":"1.2.3.4"}}"#,
                NOW + 60
            ),
            format!(
                r#"{{"iat":{NOW},"exp":{},"streams":["all_of_them"]}}"#,
                NOW + 60
            ),
            format!(
                r#"{{"iat":{NOW},"exp":{},"streams":["valid_blocks"],"public_keys":["0OIl"]}}"#,
                NOW + 60
            ),
        ] {
            let err = auth.verify_at(&sign(&json), NOW).expect_err(&json);
            assert_eq!(err.reason(), "malformed_token", "{json}: {err}");
        }
        let good = format!(
            r#"{{"iat":{NOW},"exp":{},"streams":["valid_blocks"]}}"#,
            NOW + 60
        );
        assert!(auth.verify_at(&sign(&good), NOW).is_ok());
    }

    #[test]
    fn lifetimes_outside_the_policy_are_refused() {
        let auth = authority("k1", 1);
        let claims = |iat: u64, exp: u64| Claims {
            issued_at: iat,
            expires_at: exp,
            streams: Stream::ALL.into_iter().collect(),
            pins: Pins::default(),
        };
        for (iat, exp, why) in [
            (NOW, NOW, "expires when issued"),
            (NOW, NOW + 3601, "longer than max_ttl"),
            (NOW + 31, NOW + 100, "issued beyond the clock skew"),
        ] {
            let token = auth.sign_unchecked(&claims(iat, exp));
            let err = auth.verify_at(&token, NOW).expect_err(why);
            assert_eq!(err.reason(), "bad_lifetime", "{why}: {err}");
        }
        let ahead = auth.sign_unchecked(&claims(NOW + 30, NOW + 100));
        assert!(auth.verify_at(&ahead, NOW).is_ok(), "within the clock skew");
    }

    #[test]
    fn issuing_checks_streams_ttl_and_size() {
        let auth = authority("k1", 1);
        let all = Grant::new(Stream::ALL);
        assert_eq!(
            auth.issue_at(&Grant::default(), None, NOW),
            Err(IssueError::NoStream)
        );
        assert_eq!(
            auth.issue_at(&all, Some(Duration::ZERO), NOW),
            Err(IssueError::TtlZero)
        );
        assert_eq!(
            auth.issue_at(&all, Some(Duration::from_secs(3601)), NOW),
            Err(IssueError::TtlTooLong {
                max: Duration::from_secs(3600)
            })
        );
        let issued = auth
            .issue_at(&all, Some(Duration::from_millis(1500)), NOW)
            .expect("fractional ttl");
        assert_eq!(issued.claims.expires_at, NOW + 2, "rounded up");
        let mut many = Grant::new(Stream::ALL);
        for i in 0..100u32 {
            many = many.asset_id(format!("{i:064x}"));
        }
        match auth.issue_at(&many, None, NOW) {
            Err(IssueError::TooLong { len, max }) => assert!(len > max),
            other => panic!("expected TooLong, got {other:?}"),
        }
    }

    #[test]
    fn key_rotation_old_tokens_verify_new_ones_use_the_new_key() {
        let mut ring = KeyRing::new("2024", &[1; 32]).expect("ring");
        let before = TokenAuthority::new(ring.clone(), TokenPolicy::default());
        let old_token = issue(&before, &Grant::new(Stream::ALL)).token;

        ring.add("2025", &[2; 32]).expect("add");
        ring.set_issuing("2025").expect("rotate");
        let after = TokenAuthority::new(ring.clone(), TokenPolicy::default());
        let new_token = issue(&after, &Grant::new(Stream::ALL)).token;
        assert!(new_token.starts_with("v1.2025."), "{new_token}");
        assert!(
            after.verify_at(&old_token, NOW).is_ok(),
            "old key still accepted"
        );
        assert!(after.verify_at(&new_token, NOW).is_ok());
        assert_eq!(
            before.verify_at(&new_token, NOW),
            Err(AuthError::UnknownKey("2025".into())),
            "a node that has not got the new key yet refuses its tokens"
        );

        ring.remove("2024").expect("retire");
        let retired = TokenAuthority::new(ring, TokenPolicy::default());
        assert_eq!(
            retired.verify_at(&old_token, NOW),
            Err(AuthError::UnknownKey("2024".into()))
        );
        assert!(retired.verify_at(&new_token, NOW).is_ok());
    }

    #[test]
    fn the_token_is_found_in_the_query_string() {
        assert_eq!(
            token_from_query("public_key=K&token=v1.k1.abc.def&batch=block"),
            Ok(Some("v1.k1.abc.def".into()))
        );
        assert_eq!(token_from_query("token=a%2Eb"), Ok(Some("a.b".into())));
        assert_eq!(token_from_query("from_height=3"), Ok(None));
        assert_eq!(token_from_query("token="), Ok(None));
        assert_eq!(
            token_from_query("token=a&token=b").map_err(|e| e.status()),
            Err(401)
        );
    }

    #[test]
    fn debug_of_an_issued_token_hides_the_token() {
        let auth = authority("k1", 1);
        let issued = issue(&auth, &Grant::new(Stream::ALL));
        let shown = format!("{issued:?}");
        let tag = issued.token.rsplit('.').next().expect("tag");
        assert!(!shown.contains(tag), "{shown}");
        assert!(shown.contains("expires_at"), "{shown}");
    }
}
