//! The signing keys a node holds: several accepted by key id (so keys can be rotated without
//! cutting off the URLs already handed out) and one designated to issue new tokens.
//!
//! Rotation: add the new key, make it the issuing key, keep the old one until every token it
//! signed has expired (at most `auth.max_ttl`), then remove it.

use std::collections::BTreeMap;
use std::fmt;

use hmac::{Hmac, Mac};
use sha3::Sha3_256;

use crate::error::KeyError;
use crate::secret::MIN_SECRET_BYTES;

/// HMAC-SHA3-256, the token signature.
pub(crate) type HmacSha3 = Hmac<Sha3_256>;

/// Longest key id.
pub const MAX_KEY_ID_LEN: usize = 32;

/// True when `id` can be a key id: 1 to [`MAX_KEY_ID_LEN`] characters of `A-Z a-z 0-9 _ -`
/// (URL-safe, and never a `.`, which separates the parts of a token).
pub fn is_key_id(id: &str) -> bool {
    (1..=MAX_KEY_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Keys by id, one of them the issuing key. Holds each key as a keyed HMAC state, not as the
/// secret bytes; `Debug` shows only the ids.
#[derive(Clone)]
pub struct KeyRing {
    keys: BTreeMap<String, HmacSha3>,
    issuing: String,
    /// The issuing key's state (also in `keys`), so issuing needs no lookup that could fail.
    issuing_mac: HmacSha3,
}

impl KeyRing {
    /// A ring with one key, which issues.
    pub fn new(id: &str, secret: &[u8]) -> Result<Self, KeyError> {
        let mac = keyed(id, secret)?;
        Ok(Self {
            keys: BTreeMap::from([(id.to_owned(), mac.clone())]),
            issuing: id.to_owned(),
            issuing_mac: mac,
        })
    }

    /// Adds a key accepted for verification (it does not issue until
    /// [`KeyRing::set_issuing`]).
    pub fn add(&mut self, id: &str, secret: &[u8]) -> Result<(), KeyError> {
        if self.keys.contains_key(id) {
            return Err(KeyError::Duplicate(id.to_owned()));
        }
        let mac = keyed(id, secret)?;
        self.keys.insert(id.to_owned(), mac);
        Ok(())
    }

    /// Makes the key `id` the one that signs new tokens.
    pub fn set_issuing(&mut self, id: &str) -> Result<(), KeyError> {
        let mac = self
            .keys
            .get(id)
            .ok_or_else(|| KeyError::Unknown(id.to_owned()))?;
        self.issuing_mac = mac.clone();
        self.issuing = id.to_owned();
        Ok(())
    }

    /// Removes a retired key: tokens it signed no longer verify. The issuing key cannot be
    /// removed (designate another one first).
    pub fn remove(&mut self, id: &str) -> Result<(), KeyError> {
        if id == self.issuing || !self.keys.contains_key(id) {
            return Err(KeyError::Unknown(id.to_owned()));
        }
        self.keys.remove(id);
        Ok(())
    }

    /// The id of the key that signs new tokens.
    pub fn issuing_key_id(&self) -> &str {
        &self.issuing
    }

    /// Every accepted key id, sorted.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// True when tokens signed with key `id` are accepted.
    pub fn contains(&self, id: &str) -> bool {
        self.keys.contains_key(id)
    }

    /// The issuing key's id and a fresh MAC state for it.
    pub(crate) fn issuing_mac(&self) -> (&str, HmacSha3) {
        (&self.issuing, self.issuing_mac.clone())
    }

    /// A fresh MAC state for key `id`, if held.
    pub(crate) fn mac(&self, id: &str) -> Option<HmacSha3> {
        self.keys.get(id).cloned()
    }
}

fn keyed(id: &str, secret: &[u8]) -> Result<HmacSha3, KeyError> {
    if !is_key_id(id) {
        return Err(KeyError::InvalidId(id.to_owned()));
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(KeyError::SecretTooShort {
            id: id.to_owned(),
            bytes: secret.len(),
        });
    }
    // HMAC accepts keys of any length; the length check above is ours.
    HmacSha3::new_from_slice(secret).map_err(|_| KeyError::SecretTooShort {
        id: id.to_owned(),
        bytes: secret.len(),
    })
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .field("issuing", &self.issuing)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_short_and_url_safe() {
        for good in ["k1", "2024-06", "prod_A", &"x".repeat(32)] {
            assert!(is_key_id(good), "{good}");
        }
        for bad in ["", "a.b", "a b", "ключ", "a/b", "a=b", &"x".repeat(33)] {
            assert!(!is_key_id(bad), "{bad}");
        }
    }

    #[test]
    fn the_ring_refuses_bad_ids_short_secrets_and_duplicates() {
        assert_eq!(
            KeyRing::new("a.b", &[7; 32]).map(|_| ()),
            Err(KeyError::InvalidId("a.b".into()))
        );
        assert_eq!(
            KeyRing::new("k1", &[7; 31]).map(|_| ()),
            Err(KeyError::SecretTooShort {
                id: "k1".into(),
                bytes: 31
            })
        );
        let mut ring = KeyRing::new("k1", &[7; 32]).expect("ring");
        assert_eq!(
            ring.add("k1", &[8; 32]),
            Err(KeyError::Duplicate("k1".into()))
        );
        assert_eq!(ring.set_issuing("k9"), Err(KeyError::Unknown("k9".into())));
    }

    #[test]
    fn rotation_moves_issuing_and_keeps_old_keys_until_removed() {
        let mut ring = KeyRing::new("old", &[1; 32]).expect("ring");
        ring.add("new", &[2; 40]).expect("add");
        assert_eq!(ring.issuing_key_id(), "old");
        ring.set_issuing("new").expect("rotate");
        assert_eq!(ring.issuing_key_id(), "new");
        assert_eq!(ring.key_ids().collect::<Vec<_>>(), ["new", "old"]);
        assert!(ring.remove("new").is_err(), "the issuing key stays");
        ring.remove("old").expect("retire");
        assert!(!ring.contains("old"));
        assert_eq!(ring.issuing_mac().0, "new");
    }

    #[test]
    fn debug_shows_ids_but_no_key_material() {
        let ring = KeyRing::new("k1", &[0xAB; 32]).expect("ring");
        let shown = format!("{ring:?}");
        assert_eq!(shown, r#"KeyRing { key_ids: ["k1"], issuing: "k1" }"#);
    }
}
