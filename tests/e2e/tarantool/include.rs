//! `include=transaction` on a real Tarantool in both read modes: the rows Planetmint 2.5.3's
//! storage code wrote (every operation kind) read by the Lua long-poll (push) and by plain
//! selects (poll), each giving every event its whole transaction (see `crate::include`).

use planetmint_streams_ingest::tarantool::ReadMode;

use crate::include::every_event_carries_its_whole_transaction;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_carries_its_whole_transaction_in_push_mode() {
    let harness =
        TarantoolHarness::start_with(|config| config.tarantool.mode = ReadMode::Push).await;
    every_event_carries_its_whole_transaction(&harness).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_carries_its_whole_transaction_in_poll_mode() {
    let harness =
        TarantoolHarness::start_with(|config| config.tarantool.mode = ReadMode::Poll).await;
    every_event_carries_its_whole_transaction(&harness).await;
}
