//! The admin endpoint's credential check: `Authorization: Bearer <admin secret>`, compared in
//! constant time.
//!
//! Only the SHA3-256 digest of the secret is kept; a presented value is hashed and the two
//! digests compared with [`subtle`], so the time taken reveals neither the secret's content
//! nor its length.

use std::fmt;

use sha3::{Digest, Sha3_256};
use subtle::ConstantTimeEq;

use crate::error::SecretError;
use crate::secret::check_bearer_text;

/// Why an admin request's credentials are refused. Every kind is HTTP 401 (RFC 6750), sent
/// with [`BearerError::WWW_AUTHENTICATE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// No `Authorization` header.
    #[error("an Authorization: Bearer header is required")]
    Missing,
    /// The header is not `Bearer <token>`.
    #[error("the Authorization header must be: Bearer <admin secret>")]
    Malformed,
    /// The presented secret is not the admin secret.
    #[error("the admin secret does not match")]
    Mismatch,
}

impl BearerError {
    /// Value of the `WWW-Authenticate` header of the 401 response.
    pub const WWW_AUTHENTICATE: &'static str = "Bearer realm=\"planetmint-streams admin\"";

    /// HTTP status: 401.
    pub fn status(&self) -> u16 {
        401
    }

    /// Short stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            BearerError::Missing => "missing_credentials",
            BearerError::Malformed => "malformed_credentials",
            BearerError::Mismatch => "bad_credentials",
        }
    }
}

/// The admin bearer secret, held as its digest. `Debug` shows nothing of it.
#[derive(Clone)]
pub struct BearerSecret {
    digest: [u8; 32],
}

impl BearerSecret {
    /// Checks the secret's text (see [`check_bearer_text`]) and keeps its digest.
    pub fn new(secret: &str) -> Result<Self, SecretError> {
        let text = check_bearer_text(secret)?;
        Ok(Self {
            digest: digest(text.as_bytes()),
        })
    }

    /// Checks the value of an `Authorization` header (`None` when absent). The scheme
    /// `Bearer` is matched case-insensitively; the secret exactly.
    pub fn check(&self, authorization: Option<&str>) -> Result<(), BearerError> {
        let header = authorization.ok_or(BearerError::Missing)?.trim();
        let (scheme, presented) = header.split_once(' ').ok_or(BearerError::Malformed)?;
        let presented = presented.trim_start_matches(' ');
        if !scheme.eq_ignore_ascii_case("bearer") || presented.is_empty() {
            return Err(BearerError::Malformed);
        }
        if bool::from(digest(presented.as_bytes()).ct_eq(&self.digest)) {
            Ok(())
        } else {
            Err(BearerError::Mismatch)
        }
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha3_256::digest(bytes).into()
}

impl fmt::Debug for BearerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BearerSecret({})", crate::secret::REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "Zb8Q2yJ1mW7kR4tV9xC3nL6pF0sD5gH8";

    fn secret() -> BearerSecret {
        BearerSecret::new(SECRET).expect("valid secret")
    }

    #[test]
    fn the_right_secret_passes_with_any_case_of_bearer() {
        for header in [
            format!("Bearer {SECRET}"),
            format!("bearer {SECRET}"),
            format!("BEARER   {SECRET} "),
        ] {
            assert_eq!(secret().check(Some(&header)), Ok(()), "{header}");
        }
    }

    #[test]
    fn missing_malformed_and_wrong_credentials_are_401_with_their_reason() {
        let s = secret();
        let cases = [
            (None, BearerError::Missing),
            (Some(String::new()), BearerError::Malformed),
            (Some(SECRET.to_owned()), BearerError::Malformed),
            (Some(format!("Basic {SECRET}")), BearerError::Malformed),
            (Some("Bearer ".to_owned()), BearerError::Malformed),
            (
                Some(format!("Bearer {}", &SECRET[..31])),
                BearerError::Mismatch,
            ),
            (Some(format!("Bearer {SECRET}x")), BearerError::Mismatch),
            (
                Some(format!("Bearer {}", SECRET.to_lowercase())),
                BearerError::Mismatch,
            ),
        ];
        for (header, expected) in cases {
            let got = s.check(header.as_deref());
            assert_eq!(got, Err(expected), "{header:?}");
            assert_eq!(expected.status(), 401);
        }
        assert_eq!(BearerError::Mismatch.reason(), "bad_credentials");
    }

    #[test]
    fn weak_secrets_are_refused_and_debug_hides_the_secret() {
        assert!(BearerSecret::new("short").is_err());
        let shown = format!("{:?}", secret());
        assert!(!shown.contains(SECRET), "{shown}");
    }
}
