//! Fuzz target: the query string of a stream URL (anything a client can put after `?`).
//! Parsing must never panic; what it accepts must be valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use planetmint_streams_broadcaster::subscription::{ParamLimits, StreamKind, Subscription, OPERATIONS};
use planetmint_streams_model::ids::{is_public_key, is_transaction_id};

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else { return };
    let limits = ParamLimits { max_query_len: 4096, max_values: 8 };
    for stream in StreamKind::ALL {
        if let Ok(subscription) = Subscription::parse(stream, query, &limits) {
            let filter = &subscription.filter;
            assert!(filter.public_keys.iter().all(|k| is_public_key(k)));
            assert!(filter.asset_ids.iter().all(|a| is_transaction_id(a)));
            assert!(filter.operations.iter().all(|o| OPERATIONS.contains(&o.as_str())));
            assert!(filter.public_keys.len() <= 8 && filter.asset_ids.len() <= 8);
            assert!(query.len() <= 4096);
        }
    }
});
