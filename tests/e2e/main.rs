//! The end-to-end suite: the real node, real clients, real sockets on loopback. One test
//! binary (the whole node is linked once, not once per area) with a module per area, so a
//! test is named `area::what_it_checks` (`cargo test --test e2e stream::`).
//!
//! Every test runs the node in this process on an in-memory source
//! (`planetmint_streams::node::start_with_source`, `support::Harness`) unless Tarantool is
//! what it checks: those are under [`tarantool`] (`tarantool::area::...`), on a real Tarantool
//! started by the test (`cargo test --test e2e tarantool::`). A few tests outside it start a
//! Tarantool too, because they run the node binary as a process and only a Tarantool feeds
//! the binary blocks: `allocator`, `demo` (`make demo` itself), `doc_examples`,
//! `python_client`'s watch.py restart and `jetstream`'s node killed -9. The JetStream tier's
//! tests (`jetstream`, `jetstream_clients`, `speedracer`) start a real nats-server.
//!
//! One end-to-end test is a binary of its own, `tests/shared_bytes_e2e.rs`: it measures the
//! resident memory of the process the node runs in, which tests running beside it here would
//! grow.
//!
//! Shared pieces (the harnesses, block writers, one client per protocol) are in [`support`].
//! The tests wait on events (a message, a metric, a process's output), never for a fixed
//! while, so they run side by side (`make test` runs 8 at once) on a busy machine.
//!
//! Timers run in real time here: the node's sessions (pings, pong timeouts, token expiry,
//! budgets) run on actix's worker threads, each with a runtime of its own that a test's
//! paused clock does not reach, and a paused clock would fire the clients' own deadlines
//! while they wait on real sockets. The tests set those timers short instead (hundreds of
//! milliseconds); the logic below the sockets is tested with paused time in
//! `crates/ingest/tests/follower.rs` and `crates/broadcaster/tests/replay.rs`.

mod support;

#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
mod allocator;
mod auth;
mod catalogue;
mod channel_limits;
mod cli;
mod conformance;
mod dashboard;
mod delivery;
mod demo;
mod doc_examples;
mod explorer;
mod filters;
mod hostile;
mod http_streams;
mod include;
mod jetstream;
mod jetstream_clients;
mod operations;
mod partition;
mod proxy;
mod python_client;
mod replay;
mod rpc;
mod speedracer;
mod stream;
mod stream_sea;
mod subscribe;
mod tarantool;
mod tls;
mod websockets_protocol;
