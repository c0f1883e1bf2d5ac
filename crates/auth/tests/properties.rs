//! Property tests of token verification through the public API: random strings, token-shaped
//! strings and mutations of a valid token never verify (and never panic); issued tokens for
//! random grants always verify to what was granted.

use std::collections::BTreeSet;

use planetmint_streams_auth::{
    AuthError, Grant, KeyRing, Stream, TokenAuthority, TokenPolicy, MAX_TOKEN_LEN,
};
use proptest::prelude::*;

const NOW: u64 = 1_700_000_000;
const K1: &str = "4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW";

fn authority() -> TokenAuthority {
    let mut ring = KeyRing::new("k1", &[0x5A; 32]).expect("ring");
    ring.add("k2", &[0xA5; 48]).expect("second key");
    TokenAuthority::new(ring, TokenPolicy::default())
}

fn valid_token() -> String {
    let grant = Grant::new([Stream::ValidTransactions])
        .public_key(K1)
        .operation("CREATE");
    authority()
        .issue_at(&grant, None, NOW)
        .expect("issue")
        .token
}

/// A refusal must be one of the documented kinds with a 401 or 403.
fn assert_refused(result: Result<planetmint_streams_auth::Claims, AuthError>, input: &str) {
    match result {
        Ok(claims) => panic!("{input:?} verified: {claims:?}"),
        Err(err) => assert!(
            matches!(err.status(), 401 | 403),
            "{input:?}: {err} has status {}",
            err.status()
        ),
    }
}

#[test]
fn the_valid_token_used_below_does_verify() {
    // Guards the properties below against passing only because the base token is bad.
    assert!(authority().verify_at(&valid_token(), NOW).is_ok());
}

proptest! {
    #[test]
    fn random_strings_never_verify(input in any::<String>()) {
        assert_refused(authority().verify_at(&input, NOW), &input);
    }

    #[test]
    fn random_token_shaped_strings_never_verify(
        key_id in "k[12]",
        claims in "[A-Za-z0-9_-]{0,300}",
        tag in "[A-Za-z0-9_-]{43}",
    ) {
        let input = format!("v1.{key_id}.{claims}.{tag}");
        assert_refused(authority().verify_at(&input, NOW), &input);
    }

    #[test]
    fn changing_any_byte_of_a_valid_token_breaks_it(index in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let token = valid_token();
        let mut bytes = token.clone().into_bytes();
        let at = index.index(bytes.len());
        prop_assume!(bytes[at] != byte);
        bytes[at] = byte;
        if let Ok(mutated) = String::from_utf8(bytes) {
            assert_refused(authority().verify_at(&mutated, NOW), &mutated);
        }
    }

    #[test]
    fn inserting_or_deleting_bytes_breaks_a_valid_token(
        index in any::<prop::sample::Index>(),
        inserted in "[A-Za-z0-9_.=-]{0,4}",
        deleted in 0usize..4,
    ) {
        let token = valid_token();
        let at = index.index(token.len());
        let end = (at + deleted).min(token.len());
        let mutated = format!("{}{}{}", &token[..at], inserted, &token[end..]);
        prop_assume!(mutated != token);
        assert_refused(authority().verify_at(&mutated, NOW), &mutated);
    }

    #[test]
    fn issued_tokens_verify_to_what_was_granted(
        transactions in any::<bool>(),
        blocks in any::<bool>(),
        assets in prop::collection::btree_set("[0-9a-f]{64}", 0..5),
        operations in prop::collection::btree_set("(CREATE|TRANSFER|VOTE)", 0..3),
        ttl in 1u64..=3600,
    ) {
        let mut streams = BTreeSet::new();
        if transactions { streams.insert(Stream::ValidTransactions); }
        if blocks { streams.insert(Stream::ValidBlocks); }
        prop_assume!(!streams.is_empty());
        let mut grant = Grant { streams, ..Grant::default() };
        grant.pins.asset_ids = assets;
        grant.pins.operations = operations;
        let auth = authority();
        let issued = auth
            .issue_at(&grant, Some(std::time::Duration::from_secs(ttl)), NOW)
            .expect("issue");
        prop_assert!(issued.token.len() <= MAX_TOKEN_LEN);
        let claims = auth.verify_at(&issued.token, NOW + ttl - 1).expect("verifies");
        prop_assert_eq!(&claims.streams, &grant.streams);
        prop_assert_eq!(&claims.pins, &grant.pins);
        prop_assert_eq!(
            auth.verify_at(&issued.token, NOW + ttl),
            Err(AuthError::Expired { expired_at: NOW + ttl })
        );
    }
}

#[test]
fn every_single_character_substitution_of_a_valid_token_is_refused() {
    // Exhaustive over the token alphabet: covers the last characters of each base64url part,
    // whose low bits a lenient decoder would ignore.
    let alphabet: Vec<char> = ('A'..='Z')
        .chain('a'..='z')
        .chain('0'..='9')
        .chain(['-', '_', '.'])
        .collect();
    let auth = authority();
    let token = valid_token();
    let mut tried = 0;
    for (at, original) in token.char_indices() {
        for &replacement in alphabet.iter().filter(|&&c| c != original) {
            let mut mutated = token.clone();
            mutated.replace_range(at..at + 1, replacement.encode_utf8(&mut [0; 4]));
            assert_refused(auth.verify_at(&mutated, NOW), &mutated);
            tried += 1;
        }
    }
    assert_eq!(tried, token.len() * (alphabet.len() - 1));
}
