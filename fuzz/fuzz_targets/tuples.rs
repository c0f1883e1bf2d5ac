//! Fuzz target: single Tarantool tuples (blocks, transactions, outputs) decoded with rmp-serde,
//! and a block assembled from whatever decoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use planetmint_streams_model::tuple::{BlockTuple, OutputTuple, TransactionTuple};
use planetmint_streams_model::CommittedBlock;

fuzz_target!(|data: &[u8]| {
    let block = rmp_serde::from_slice::<BlockTuple>(data).ok();
    let tx = rmp_serde::from_slice::<TransactionTuple>(data).ok();
    let output = rmp_serde::from_slice::<OutputTuple>(data).ok();
    if let Some(block) = block {
        let rows = block.transaction_ids.iter().map(|_| tx.clone()).collect();
        let outputs: Vec<OutputTuple> = output.into_iter().collect();
        let _ = CommittedBlock::assemble(block, rows, &outputs);
    }
});
