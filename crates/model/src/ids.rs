//! Validation of the identifiers clients put in stream URLs.

/// Length of a transaction or asset id: SHA3-256 as hex.
pub const TRANSACTION_ID_LEN: usize = 64;

/// True when `id` is 64 hexadecimal digits (Planetmint writes them in lower case).
pub fn is_transaction_id(id: &str) -> bool {
    id.len() == TRANSACTION_ID_LEN && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// True when `key` is a base58 (Bitcoin alphabet) Ed25519 public key of 32 bytes, as in
/// Planetmint's outputs.
pub fn is_public_key(key: &str) -> bool {
    (32..=44).contains(&key.len())
        && bs58::decode(key)
            .into_vec()
            .is_ok_and(|bytes| bytes.len() == 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_ids_are_64_hex_digits() {
        assert!(is_transaction_id(&"a".repeat(64)));
        assert!(is_transaction_id(
            "8eb69874cf7d7f5d667c3b6beb77c389f5da52ebe463da89ea371d91dab6c0c7"
        ));
        assert!(!is_transaction_id(&"a".repeat(63)));
        assert!(!is_transaction_id(&"g".repeat(64)));
        assert!(!is_transaction_id(""));
    }

    #[test]
    fn public_keys_decode_to_32_bytes() {
        // Keys from the Planetmint 2.5.3 fixtures.
        assert!(is_public_key(
            "4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW"
        ));
        assert!(is_public_key("zeLcy7Xzntvupb1PChe1B3KjxRKcCdM1zJEKyKpc653"));
        // 0 is not in the alphabet.
        assert!(!is_public_key(
            "0UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW"
        ));
        // Valid base58 but too short to be 32 bytes.
        assert!(!is_public_key("4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5"));
        assert!(!is_public_key(""));
    }
}
