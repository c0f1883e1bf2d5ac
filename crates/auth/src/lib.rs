//! Access control for the stream server: signed, expiring stream URLs, clients configured on
//! the node, and JWTs of the operator's identity provider, all verified by one
//! [`Gatekeeper`].
//!
//! # Credentials
//!
//! [`Gatekeeper::verify`] takes any [`Credential`] (a stream token, a client id and secret, a
//! JWT, an `Authorization: Bearer` value) and answers an [`Access`]: whom it stands for, the
//! streams and pinned filters it allows, until when, and its own connection cap. See
//! [`gatekeeper`], [`client`] (secrets stored as salted hashes, ADR 0006) and [`jwt`]. The
//! rest of this page is about stream tokens.
//!
//! In `signed` mode ([`AuthConfig`]) every stream URL carries a `token` query parameter. The
//! token says until when it may open a connection, which streams it opens, and optionally
//! which filter values the subscription must stay within; it is signed with HMAC-SHA3-256
//! under a key id, so keys can be rotated.
//!
//! # Token format (version 1)
//!
//! ```text
//! v1.<key id>.<base64url(claims JSON)>.<base64url(tag)>
//! tag = HMAC-SHA3-256(secret of <key id>, "v1.<key id>.<base64url(claims JSON)>")
//! ```
//!
//! - base64url is RFC 4648 §5 without padding; every character of a token is in
//!   `A-Z a-z 0-9 - _ .`, so it goes into a query string as it is.
//! - `<key id>`: 1 to 32 characters of `A-Z a-z 0-9 _ -` naming a key of the [`KeyRing`].
//! - claims JSON: `{"iat": <unix seconds>, "exp": <unix seconds>, "streams": [...],
//!   "public_keys": [...], "asset_ids": [...], "operations": [...]}`. `streams` holds one or
//!   both of `valid_transactions` and `valid_blocks`; the three filter lists are optional
//!   (absent or empty: not pinned). Unknown fields make the token unreadable, so a newer
//!   issuer's restriction is never silently ignored.
//! - tag: 32 bytes, compared in constant time.
//! - At most [`MAX_TOKEN_LEN`] characters.
//!
//! Verification ([`TokenAuthority::verify`]) checks, in order: the form (else 401), that the
//! key id is held (403), the tag (403), then decodes the now-trusted claims (401 if
//! unreadable) and checks the times (403): `exp > iat`, `exp - iat <= max_ttl`, `iat <= now
//! + clock_skew`, and `now < exp`. The expiry applies to opening a connection; a server may
//! also close connections when it passes (`auth.close_on_expiry`, close code
//! [`CLOSE_CODE_EXPIRED`]).
//!
//! # Authorization
//!
//! [`TokenAuthority::authorize`] verifies the token and applies the rule of [`claims`]: the
//! stream must be among the token's, and each dimension the token pins must be filtered with
//! a non-empty subset of the pinned values; unpinned dimensions are free. Refusals are typed
//! ([`AuthError`]) with an HTTP status and a stable reason label; no error message contains a
//! token or a secret.
//!
//! # Pieces
//!
//! - [`config`]: `[auth]` settings ([`AuthConfig`]) and their validation;
//! - [`secret`]: secrets from configuration text or files, hidden from `Debug` and
//!   serialization;
//! - [`keyring`]: keys by id, one issuing;
//! - [`claims`]: what a token allows and the authorization rule;
//! - [`token`]: issuing and verifying ([`TokenAuthority`]);
//! - [`stream_url`]: the signed URL handed to a client;
//! - [`bearer`]: the admin endpoint's `Authorization: Bearer` check;
//! - [`access`]: what any verified credential allows ([`Access`]) and whom it stands for;
//! - [`client`]: clients configured on the node and their hashed secrets;
//! - [`jwt`]: JWTs of the operator's identity provider (`[auth.jwt]`);
//! - [`gatekeeper`]: the one verifier of every credential, reloadable.
#![forbid(unsafe_code)]

pub mod access;
pub mod bearer;
pub mod claims;
pub mod client;
pub mod config;
pub mod error;
pub mod gatekeeper;
pub mod jwt;
pub mod keyring;
pub mod secret;
pub mod stream_url;
pub mod token;

pub use access::{Access, Principal};
pub use client::{
    check_client_secret, generate_secret, read_clients_file, ClientConfig, ClientsFile, SecretHash,
};
pub use gatekeeper::{ConnectionPermit, Credential, Gatekeeper, ReloadOutcome};
pub use jwt::{JwtAlgorithm, JwtConfig, JwtKeyConfig};

pub use bearer::{BearerError, BearerSecret};
pub use claims::{Claims, Grant, Pins, Requested, Stream, UnknownStream};
pub use config::{AdminConfig, AuthConfig, AuthMode, KeyConfig};
pub use error::{AuthError, IssueError, KeyError, SecretError, AUTH_REASONS};
pub use keyring::{is_key_id, KeyRing};
pub use secret::{decode_key, write_secret_file, SecretString, MIN_BEARER_CHARS, MIN_SECRET_BYTES};
pub use stream_url::{signed_url, UrlError};
pub use token::{
    looks_like_stream_token, token_from_query, unix_now, IssuedToken, TokenAuthority, TokenPolicy,
    MAX_TOKEN_LEN, TOKEN_VERSION,
};

/// WebSocket close code for a connection whose token expired (1008, policy violation).
pub const CLOSE_CODE_EXPIRED: u16 = 1008;
