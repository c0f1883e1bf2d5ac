//! Typed errors of the crate: why a stream request or a credential is refused ([`AuthError`],
//! with its HTTP status and a stable label for metrics), why a token cannot be issued
//! ([`IssueError`]), and problems with keys and secrets ([`KeyError`], [`SecretError`]).
//!
//! No message ever contains a token, a JWT or a secret: they are credentials, and these
//! messages end up in logs and in HTTP responses. Refusals carry fixed texts only, never a
//! piece of what the client sent.

use std::path::PathBuf;
use std::time::Duration;

use crate::claims::Stream;

/// Why a stream request or a credential is refused. Map it with [`AuthError::status`] (401, 403
/// or 429) and count it with [`AuthError::reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The URL has no `token` parameter (or an empty one).
    #[error("a token is required: add the token parameter of a signed stream URL")]
    Missing,
    /// The token is not of the `v1.<key id>.<claims>.<tag>` form, or its signed claims cannot be
    /// read. The detail is a fixed text, never a piece of the token.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The token names a key id this node does not hold (never held, or retired).
    #[error("token signed with unknown key id {0:?}")]
    UnknownKey(String),
    /// The tag does not match the token's content under the named key: forged or altered.
    #[error("token signature does not verify")]
    BadSignature,
    /// The token's expiry has passed.
    #[error("token expired at {expired_at} (unix seconds)")]
    Expired {
        /// The token's expiry, in unix seconds.
        expired_at: u64,
    },
    /// The signed times make no sense here: issued in the future (beyond the allowed clock
    /// skew), expiring before being issued, or valid for longer than the configured maximum.
    #[error("token lifetime not accepted: {0}")]
    BadLifetime(&'static str),
    /// The token does not list the requested stream.
    #[error("token does not allow the {stream} stream")]
    StreamNotAllowed {
        /// The stream that was asked for.
        stream: Stream,
    },
    /// The token pins a filter dimension and the request does not stay within it.
    #[error("{}", filter_message(parameter, *required))]
    FilterNotAllowed {
        /// The query parameter concerned: `public_key`, `asset_id` or `operation`.
        parameter: &'static str,
        /// True when the request does not filter on the pinned dimension at all; false when it
        /// names a value the token does not allow.
        required: bool,
    },
    /// A client id and secret were presented and no client with that id is configured.
    #[error("unknown client id, or wrong secret")]
    UnknownClient,
    /// A configured client's id was presented with a secret that does not match its hash.
    #[error("unknown client id, or wrong secret")]
    BadClientSecret,
    /// The JWT is not three base64url parts with a readable header, or too long. The detail is
    /// a fixed text, never a piece of the JWT.
    #[error("malformed JWT: {0}")]
    MalformedJwt(&'static str),
    /// No configured JWT key matches the JWT's `kid` and `alg` (or JWTs are not accepted here).
    #[error("no key of this node verifies JWTs with this key id and algorithm")]
    UnknownJwtKey,
    /// The JWT's signature does not verify under the key(s) its header points at.
    #[error("JWT signature does not verify")]
    BadJwtSignature,
    /// The JWT verifies but its claims are not accepted: `exp` missing, issuer or audience not
    /// the configured one, no stream in the streams claim, an invalid pinned value.
    #[error("JWT not accepted: {0}")]
    JwtRejected(&'static str),
    /// The credential's own connection cap (a configured client's `max_connections`) is
    /// reached.
    #[error("this client already has {limit} open connections, its limit")]
    TooManyConnections {
        /// The cap.
        limit: usize,
    },
}

fn filter_message(parameter: &str, required: bool) -> String {
    if required {
        format!("the token only allows subscriptions filtered by {parameter}: add {parameter}= with values the token allows")
    } else {
        format!("the token does not allow one of the {parameter} values asked for")
    }
}

/// Every label [`AuthError::reason`] can return, e.g. to register metric series up front.
pub const AUTH_REASONS: [&str; 15] = [
    "missing_token",
    "malformed_token",
    "unknown_key",
    "bad_signature",
    "expired",
    "bad_lifetime",
    "stream_not_allowed",
    "filter_not_allowed",
    "unknown_client",
    "bad_client_secret",
    "malformed_jwt",
    "unknown_jwt_key",
    "bad_jwt_signature",
    "jwt_rejected",
    "client_connection_limit",
];

impl AuthError {
    /// The HTTP status of the refusal: 401 when no usable credential was presented (missing or
    /// malformed), 403 when one was presented and is not good for this request, 429 when the
    /// credential's own connection cap is reached.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Missing | AuthError::Malformed(_) | AuthError::MalformedJwt(_) => 401,
            AuthError::UnknownKey(_)
            | AuthError::BadSignature
            | AuthError::Expired { .. }
            | AuthError::BadLifetime(_)
            | AuthError::StreamNotAllowed { .. }
            | AuthError::FilterNotAllowed { .. }
            | AuthError::UnknownClient
            | AuthError::BadClientSecret
            | AuthError::UnknownJwtKey
            | AuthError::BadJwtSignature
            | AuthError::JwtRejected(_) => 403,
            AuthError::TooManyConnections { .. } => 429,
        }
    }

    /// A short stable label for metrics and logs (one of [`AUTH_REASONS`]).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => AUTH_REASONS[0],
            AuthError::Malformed(_) => AUTH_REASONS[1],
            AuthError::UnknownKey(_) => AUTH_REASONS[2],
            AuthError::BadSignature => AUTH_REASONS[3],
            AuthError::Expired { .. } => AUTH_REASONS[4],
            AuthError::BadLifetime(_) => AUTH_REASONS[5],
            AuthError::StreamNotAllowed { .. } => AUTH_REASONS[6],
            AuthError::FilterNotAllowed { .. } => AUTH_REASONS[7],
            AuthError::UnknownClient => AUTH_REASONS[8],
            AuthError::BadClientSecret => AUTH_REASONS[9],
            AuthError::MalformedJwt(_) => AUTH_REASONS[10],
            AuthError::UnknownJwtKey => AUTH_REASONS[11],
            AuthError::BadJwtSignature => AUTH_REASONS[12],
            AuthError::JwtRejected(_) => AUTH_REASONS[13],
            AuthError::TooManyConnections { .. } => AUTH_REASONS[14],
        }
    }

    /// The query parameter the refusal concerns, for a JSON body like the 400 responses'
    /// `{"error", "parameter"}`: the filter parameter for [`AuthError::FilterNotAllowed`],
    /// `token` (the credential) otherwise.
    pub fn parameter(&self) -> &'static str {
        match self {
            AuthError::FilterNotAllowed { parameter, .. } => parameter,
            _ => "token",
        }
    }
}

/// Why a token cannot be issued. These are the issuer's (CLI or admin endpoint caller's)
/// mistakes: HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    /// The grant names no stream.
    #[error("at least one stream is required")]
    NoStream,
    /// A pinned filter value is not acceptable.
    #[error("{parameter}: {message}")]
    InvalidPin {
        /// `public_key`, `asset_id` or `operation`.
        parameter: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A lifetime of zero was asked for.
    #[error("ttl must be greater than zero")]
    TtlZero,
    /// The lifetime asked for is above the configured maximum.
    #[error("ttl must be at most {}", humantime_serde::re::humantime::format_duration(*max))]
    TtlTooLong {
        /// The configured maximum (`auth.max_ttl`).
        max: Duration,
    },
    /// The token would be longer than [`crate::MAX_TOKEN_LEN`] (too many pinned values).
    #[error("too many pinned filter values: the token would be {len} characters long, at most {max} are accepted")]
    TooLong {
        /// Length the token would have.
        len: usize,
        /// [`crate::MAX_TOKEN_LEN`].
        max: usize,
    },
}

impl IssueError {
    /// HTTP status for the admin endpoint: always 400.
    pub fn status(&self) -> u16 {
        400
    }

    /// The request field at fault: `stream`, `ttl`, a filter parameter, or `token` when the
    /// result would be too long.
    pub fn parameter(&self) -> &'static str {
        match self {
            IssueError::NoStream => "stream",
            IssueError::InvalidPin { parameter, .. } => parameter,
            IssueError::TtlZero | IssueError::TtlTooLong { .. } => "ttl",
            IssueError::TooLong { .. } => "token",
        }
    }
}

/// A problem building a [`crate::KeyRing`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key id is not 1 to 32 characters of `A-Z a-z 0-9 _ -`.
    #[error("key id {0:?} must be 1 to 32 characters of A-Z, a-z, 0-9, _ and -")]
    InvalidId(String),
    /// Two keys have the same id.
    #[error("key id {0:?} is given more than once")]
    Duplicate(String),
    /// The secret is shorter than [`crate::MIN_SECRET_BYTES`].
    #[error("key {id:?}: secret has {bytes} bytes, at least {min} are required", min = crate::MIN_SECRET_BYTES)]
    SecretTooShort {
        /// The key's id.
        id: String,
        /// The secret's length.
        bytes: usize,
    },
    /// No key with this id is in the ring.
    #[error("no key with id {0:?}")]
    Unknown(String),
}

/// A secret that cannot be read or decoded. Messages name files and lengths, never contents.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The text is empty.
    #[error("is empty")]
    Empty,
    /// The text is neither hexadecimal nor base64.
    #[error("is neither hexadecimal nor base64 (prefix it with hex: or base64: to say which)")]
    Encoding,
    /// The decoded secret is too short.
    #[error("decodes to {bytes} bytes, at least {min} are required", min = crate::MIN_SECRET_BYTES)]
    TooShort {
        /// Decoded length.
        bytes: usize,
    },
    /// The admin bearer secret is too short.
    #[error("has {chars} characters, at least {min} are required", min = crate::MIN_BEARER_CHARS)]
    BearerTooShort {
        /// Its length.
        chars: usize,
    },
    /// The admin bearer secret has characters that cannot travel in an HTTP header as a token.
    #[error("must be visible ASCII characters without spaces")]
    BearerCharacters,
    /// A client secret is longer than [`crate::client::MAX_CLIENT_SECRET_CHARS`].
    #[error("has {chars} characters, at most {max} are accepted", max = crate::client::MAX_CLIENT_SECRET_CHARS)]
    TooLong {
        /// Its length.
        chars: usize,
    },
    /// A client secret has the form of a stream token (`v1.<key id>.<claims>.<tag>`): a basic
    /// credential with it would be taken for a token.
    #[error("has the form of a stream token (v1.…); use the secret `client new` makes")]
    LooksLikeToken,
    /// The system's random number generator failed (making a secret or a salt).
    #[error("cannot be made: the system's random number generator failed")]
    NoRandomness,
    /// The secret file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The secret file is open to other users (group or others have any permission on it).
    #[error("{} is accessible to other users (mode {mode:03o}); run chmod 600 {} (only its owner may read it)", path.display(), path.display())]
    FileShared {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The secret file is larger than [`crate::secret::MAX_SECRET_FILE_BYTES`].
    #[error("{} is larger than {max} bytes; it should hold one secret", path.display(), max = crate::secret::MAX_SECRET_FILE_BYTES)]
    FileTooLarge {
        /// The file.
        path: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<AuthError> {
        vec![
            AuthError::Missing,
            AuthError::Malformed("x"),
            AuthError::UnknownKey("k".into()),
            AuthError::BadSignature,
            AuthError::Expired { expired_at: 1 },
            AuthError::BadLifetime("x"),
            AuthError::StreamNotAllowed {
                stream: Stream::ValidBlocks,
            },
            AuthError::FilterNotAllowed {
                parameter: "public_key",
                required: true,
            },
            AuthError::UnknownClient,
            AuthError::BadClientSecret,
            AuthError::MalformedJwt("x"),
            AuthError::UnknownJwtKey,
            AuthError::BadJwtSignature,
            AuthError::JwtRejected("x"),
            AuthError::TooManyConnections { limit: 3 },
        ]
    }

    #[test]
    fn malformed_credentials_are_401_a_full_cap_429_the_rest_403() {
        let statuses: Vec<u16> = every_kind().iter().map(AuthError::status).collect();
        assert_eq!(
            statuses,
            [401, 401, 403, 403, 403, 403, 403, 403, 403, 403, 401, 403, 403, 403, 429]
        );
    }

    #[test]
    fn an_unknown_client_and_a_wrong_secret_are_worded_alike_but_counted_apart() {
        assert_eq!(
            AuthError::UnknownClient.to_string(),
            AuthError::BadClientSecret.to_string()
        );
        assert_ne!(
            AuthError::UnknownClient.reason(),
            AuthError::BadClientSecret.reason()
        );
    }

    #[test]
    fn every_kind_has_its_own_reason_from_the_published_list() {
        let reasons: Vec<&str> = every_kind().iter().map(AuthError::reason).collect();
        assert_eq!(reasons, AUTH_REASONS);
        let mut unique = reasons.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), reasons.len());
        for reason in reasons {
            assert!(
                reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{reason} is not a plain metric label"
            );
        }
    }

    #[test]
    fn filter_refusals_name_their_parameter() {
        let required = AuthError::FilterNotAllowed {
            parameter: "asset_id",
            required: true,
        };
        assert_eq!(required.parameter(), "asset_id");
        assert!(required.to_string().contains("asset_id="), "{required}");
        let outside = AuthError::FilterNotAllowed {
            parameter: "operation",
            required: false,
        };
        assert!(outside.to_string().contains("operation"), "{outside}");
        assert_eq!(AuthError::BadSignature.parameter(), "token");
    }

    #[test]
    fn ttl_errors_print_durations_as_configured() {
        let err = IssueError::TtlTooLong {
            max: Duration::from_secs(3600),
        };
        assert_eq!(err.to_string(), "ttl must be at most 1h");
        assert_eq!(err.parameter(), "ttl");
        assert_eq!(err.status(), 400);
    }
}
