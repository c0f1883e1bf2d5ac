//! Secrets as they come from configuration: text that hides itself ([`SecretString`]), the
//! decoding of signing keys from hexadecimal or base64 ([`decode_key`]), the admin bearer
//! secret's rules ([`check_bearer_text`]), and reading either from a file
//! ([`read_secret_file`]) so that secrets never need to appear on a command line.

use std::fmt;
use std::io::Read;
use std::path::Path;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde::{Deserialize, Serialize, Serializer};
use subtle::ConstantTimeEq;

use crate::error::SecretError;

/// Fewest bytes a signing key may have: the output size of SHA3-256.
pub const MIN_SECRET_BYTES: usize = 32;
/// Fewest characters the admin bearer secret may have.
pub const MIN_BEARER_CHARS: usize = 32;
/// Largest secret file read; a secret file holds one line of text.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;
/// What a [`SecretString`] shows instead of itself.
pub const REDACTED: &str = "<redacted>";

/// Secret text from configuration. `Debug` and `Serialize` print [`REDACTED`] (so
/// `--check-config` and logs never show it); only [`SecretString::expose`] gives the text.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps secret text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret text, for decoding.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretString {
    fn from(text: String) -> Self {
        Self(text)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretString({REDACTED})")
    }
}

impl Serialize for SecretString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl PartialEq for SecretString {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for SecretString {}

/// Base64 in either alphabet, padded or not, with canonical trailing bits.
const BASE64_STANDARD_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const BASE64_URL_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes a signing key written as text and checks its length.
///
/// Accepted forms (surrounding whitespace ignored):
/// - `hex:<hex digits>` or `base64:<base64>` (standard or URL-safe alphabet, padding optional);
/// - without a prefix: hexadecimal when the text is only hex digits (and of even length),
///   base64 otherwise.
///
/// The key must decode to at least [`MIN_SECRET_BYTES`] bytes (`openssl rand -hex 32` makes
/// one).
pub fn decode_key(text: &str) -> Result<Vec<u8>, SecretError> {
    let text = text.trim();
    let bytes = if let Some(hex_text) = text.strip_prefix("hex:") {
        decode_hex(hex_text)?
    } else if let Some(b64_text) = text.strip_prefix("base64:") {
        decode_base64(b64_text)?
    } else if text.is_empty() {
        return Err(SecretError::Empty);
    } else if text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        decode_hex(text)?
    } else {
        decode_base64(text)?
    };
    if bytes.is_empty() {
        return Err(SecretError::Empty);
    }
    if bytes.len() < MIN_SECRET_BYTES {
        return Err(SecretError::TooShort { bytes: bytes.len() });
    }
    Ok(bytes)
}

fn decode_hex(text: &str) -> Result<Vec<u8>, SecretError> {
    hex::decode(text.trim()).map_err(|_| SecretError::Encoding)
}

pub(crate) fn decode_base64(text: &str) -> Result<Vec<u8>, SecretError> {
    let text = text.trim();
    BASE64_STANDARD_ANY_PAD
        .decode(text)
        .or_else(|_| BASE64_URL_ANY_PAD.decode(text))
        .map_err(|_| SecretError::Encoding)
}

/// Checks the admin bearer secret: taken verbatim (surrounding whitespace ignored), at least
/// [`MIN_BEARER_CHARS`] visible ASCII characters, so that it travels unchanged in an
/// `Authorization: Bearer` header. Returns the trimmed text.
pub fn check_bearer_text(text: &str) -> Result<&str, SecretError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(SecretError::Empty);
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SecretError::BearerCharacters);
    }
    if text.len() < MIN_BEARER_CHARS {
        return Err(SecretError::BearerTooShort { chars: text.len() });
    }
    Ok(text)
}

/// Reads a secret file: one secret as text (a trailing newline is fine), at most
/// [`MAX_SECRET_FILE_BYTES`]. On Unix, a file that group or others have any permission on is
/// refused ([`SecretError::FileShared`]): a secret other users can read is not a secret.
pub fn read_secret_file(path: &Path) -> Result<SecretString, SecretError> {
    let file_error = |source| SecretError::File {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(file_error)?;
    let metadata = file.metadata().map_err(file_error)?;
    if metadata.len() > MAX_SECRET_FILE_BYTES {
        return Err(SecretError::FileTooLarge {
            path: path.to_owned(),
        });
    }
    refuse_if_shared(path, &metadata)?;
    let mut text = String::new();
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(file_error)?;
    if text.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(SecretError::FileTooLarge {
            path: path.to_owned(),
        });
    }
    Ok(SecretString(text.trim().to_owned()))
}

#[cfg(unix)]
fn refuse_if_shared(path: &Path, metadata: &std::fs::Metadata) -> Result<(), SecretError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(SecretError::FileShared {
            path: path.to_owned(),
            mode: mode & 0o777,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn refuse_if_shared(_path: &Path, _metadata: &std::fs::Metadata) -> Result<(), SecretError> {
    Ok(())
}

/// Writes `text` to a new file only its owner can read and write (mode 600), as a secret
/// file must be; for tests and tools that make secret files.
pub fn write_secret_file(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    std::io::Write::write_all(&mut file, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn expected_key() -> Vec<u8> {
        (0u8..32).collect()
    }

    #[test]
    fn keys_decode_from_hex_and_both_base64_alphabets() {
        assert_eq!(decode_key(HEX_KEY).expect("hex"), expected_key());
        assert_eq!(
            decode_key(&format!("hex:{}", HEX_KEY.to_uppercase())).expect("prefixed hex"),
            expected_key()
        );
        // Bytes whose base64 uses the characters where the alphabets differ (+/ and -_).
        let key = [0xFB, 0xFF, 0xBF].repeat(11);
        let standard = base64::engine::general_purpose::STANDARD.encode(&key);
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&key);
        assert!(standard.contains('+') && url_safe.contains('-'));
        assert_eq!(decode_key(&standard).expect("standard"), key);
        assert_eq!(decode_key(&url_safe).expect("url safe"), key);
        assert_eq!(
            decode_key(&format!("base64:{standard}\n")).expect("prefixed, newline"),
            key
        );
    }

    #[test]
    fn an_all_hex_base64_key_needs_its_prefix() {
        // 64 hex digits without a prefix are read as hex (32 bytes), not as base64 (48 bytes).
        let as_base64 = decode_key(&format!("base64:{HEX_KEY}")).expect("base64");
        assert_eq!(as_base64.len(), 48);
        assert_eq!(decode_key(HEX_KEY).expect("hex").len(), 32);
    }

    #[test]
    fn short_or_garbled_keys_are_refused_without_echoing_them() {
        let short = "00".repeat(31);
        match decode_key(&short) {
            Err(SecretError::TooShort { bytes: 31 }) => {}
            other => panic!("expected TooShort, got {other:?}"),
        }
        for bad in ["", "   ", "hex:", "not a key!", "hex:zz", "base64:***"] {
            let err = decode_key(bad).expect_err(bad);
            assert!(
                matches!(err, SecretError::Empty | SecretError::Encoding),
                "{bad:?}: {err:?}"
            );
        }
        let secret_looking = format!("{}!", "s3cr3t".repeat(10));
        let err = decode_key(&secret_looking).expect_err("not base64");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    #[test]
    fn secret_strings_never_print_themselves() {
        let secret = SecretString::new("hunter2-hunter2-hunter2-hunter2-hunter2");
        assert!(!format!("{secret:?}").contains("hunter2"));
        let json = serde_json::to_string(&secret).expect("serialize");
        assert_eq!(json, format!("\"{REDACTED}\""));
        let parsed: SecretString = serde_json::from_str("\"abc\"").expect("deserialize");
        assert_eq!(parsed.expose(), "abc");
        assert_eq!(parsed, SecretString::new("abc"));
        assert_ne!(parsed, SecretString::new("abd"));
    }

    #[test]
    fn bearer_secrets_are_long_visible_ascii() {
        let good = "a".repeat(32);
        assert_eq!(
            check_bearer_text(&format!(" {good}\n")).expect("ok"),
            good.as_str()
        );
        assert!(matches!(
            check_bearer_text(&"a".repeat(31)),
            Err(SecretError::BearerTooShort { chars: 31 })
        ));
        assert!(matches!(
            check_bearer_text(&format!("{good} {good}")),
            Err(SecretError::BearerCharacters)
        ));
        assert!(matches!(
            check_bearer_text(&format!("{good}é")),
            Err(SecretError::BearerCharacters)
        ));
        assert!(matches!(check_bearer_text(""), Err(SecretError::Empty)));
    }

    #[test]
    fn secret_files_are_read_trimmed_and_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        write_secret_file(&path, &format!("{HEX_KEY}\n")).expect("write");
        let text = read_secret_file(&path).expect("read");
        assert_eq!(text.expose(), HEX_KEY);

        let big = dir.path().join("big");
        write_secret_file(&big, "").expect("create");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&big)
            .expect("open");
        file.write_all(&vec![b'a'; MAX_SECRET_FILE_BYTES as usize + 1])
            .expect("write");
        assert!(matches!(
            read_secret_file(&big),
            Err(SecretError::FileTooLarge { .. })
        ));

        let missing = dir.path().join("missing");
        let err = read_secret_file(&missing).expect_err("missing");
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn secret_files_other_users_can_read_are_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        write_secret_file(&path, HEX_KEY).expect("write");
        for mode in [0o644, 0o640, 0o604, 0o660, 0o602] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let err = read_secret_file(&path).expect_err("shared file");
            let text = err.to_string();
            assert!(
                matches!(err, SecretError::FileShared { mode: m, .. } if m == mode),
                "{mode:o}: {text}"
            );
            assert!(text.contains(&format!("{mode:o}")), "{text}");
            assert!(text.contains("chmod 600"), "{text}");
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(!text.contains(HEX_KEY), "{text}");
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            assert_eq!(
                read_secret_file(&path).expect("owner only").expose(),
                HEX_KEY
            );
        }
    }
}
