//! Replays the fuzz corpus of stream URLs (fuzz/corpus/stream_url) through the parser, with
//! the same invariants as the fuzz target, so regressions show up without a fuzzer.

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
