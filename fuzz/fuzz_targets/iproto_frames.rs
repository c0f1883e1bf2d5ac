//! Fuzz target: IPROTO frame lengths and greetings as the loopback relay reads them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use planetmint_streams_ingest::tarantool::relay::{read_frame_length, ServerVersion};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, prefix))) = read_frame_length(data) {
        assert!(prefix <= 9 && prefix <= data.len());
    }
    let _ = ServerVersion::from_greeting(data);
});
