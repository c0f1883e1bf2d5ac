//! Fuzz target: the MessagePack reply of the Lua long-poll (`planetmint_streams.blocks`), as it
//! could arrive from a damaged or hostile Tarantool. Decoding must fail cleanly, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use planetmint_streams_ingest::tarantool::source::decode_blocks_reply;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = decode_blocks_reply(data.to_vec().into()) {
        for block in &batch.blocks {
            let _ = block.transaction_ids().count();
        }
    }
});
