//! Replays the fuzz corpora of stream URLs (fuzz/corpus/stream_url) and JSON-RPC requests
//! (fuzz/corpus/rpc_request) through their parsers, with the same invariants as the fuzz
//! targets, so regressions show up without a fuzzer.

use planetmint_streams_broadcaster::subscription::{
    ParamLimits, StreamKind, Subscription, OPERATIONS,
};
use planetmint_streams_model::ids::{is_public_key, is_transaction_id};

#[test]
fn stream_url_corpus_parses_without_panics_and_accepts_only_valid_values() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/stream_url");
    let mut files = 0;
    let mut accepted = 0;
    for entry in std::fs::read_dir(dir).expect("corpus directory") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
        files += 1;
        let Ok(query) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let limits = ParamLimits {
            max_query_len: 4096,
            max_values: 8,
        };
        for stream in StreamKind::ALL {
            if let Ok(s) = Subscription::parse(stream, query, &limits) {
                accepted += 1;
                assert!(s.filter.public_keys.iter().all(|k| is_public_key(k)));
                assert!(s.filter.asset_ids.iter().all(|a| is_transaction_id(a)));
                assert!(s
                    .filter
                    .operations
                    .iter()
                    .all(|o| OPERATIONS.contains(&o.as_str())));
            }
        }
    }
    assert!(files >= 4, "the seed corpus is there");
    assert!(accepted >= 4, "the valid seeds are accepted");
}

#[test]
fn rpc_request_corpus_parses_without_panics_and_refuses_with_spec_codes() {
    use planetmint_streams_broadcaster::dialects::rpc::protocol::{
        parse_request, Call, ERROR_CODES,
    };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/rpc_request");
    let mut files = 0;
    let mut accepted = 0;
    for entry in std::fs::read_dir(dir).expect("corpus directory") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
        files += 1;
        match parse_request(&bytes) {
            Ok(request) => {
                accepted += 1;
                if let Call::Subscribe(s) = &request.call {
                    assert!(s.filter.public_keys.iter().all(|k| is_public_key(k)));
                    assert!(s.filter.asset_ids.iter().all(|a| is_transaction_id(a)));
                }
            }
            Err(refused) => assert!(ERROR_CODES.contains(&refused.error.code)),
        }
    }
    assert!(files >= 7, "the seed corpus is there");
    assert_eq!(accepted, 5, "the five valid seeds are accepted");
}
