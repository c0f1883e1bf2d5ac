//! Fuzz target: one text message a client sends on the JSON-RPC stream channel.
//! Parsing must never panic; what it accepts must be valid, and refusals carry a spec code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use planetmint_streams_broadcaster::dialects::rpc::protocol::{parse_request, Call, ERROR_CODES, INVALID_PARAMS};
use planetmint_streams_broadcaster::subscription::OPERATIONS;
use planetmint_streams_model::ids::{is_public_key, is_transaction_id};

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Ok(request) => {
            assert!(request.id.is_number() || request.id.is_string());
            let filters = match &request.call {
                Call::Subscribe(s) => vec![(&s.filter.public_keys, &s.filter.asset_ids, &s.filter.operations)],
                Call::Update { add, remove, .. } => vec![
                    (&add.public_keys, &add.asset_ids, &add.operations),
                    (&remove.public_keys, &remove.asset_ids, &remove.operations),
                ],
                _ => Vec::new(),
            };
            for (keys, assets, operations) in filters {
                assert!(keys.iter().all(|k| is_public_key(k)));
                assert!(assets.iter().all(|a| is_transaction_id(a)));
                assert!(operations.iter().all(|o| OPERATIONS.contains(&o.as_str())));
            }
        }
        Err(refused) => {
            assert!(ERROR_CODES.contains(&refused.error.code));
            if refused.error.code == INVALID_PARAMS {
                assert!(refused.error.data.is_some());
            }
        }
    }
});
