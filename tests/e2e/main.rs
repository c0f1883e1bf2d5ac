//! The end-to-end suite: the real node, real clients, real sockets on loopback. One test
//! binary (the whole node is linked once, not once per area) with a module per area, so a
//! test is named `area::what_it_checks` (`cargo test --test e2e stream::`).
//!
//! Every test runs the node in this process on an in-memory source
//! (`planetmint_streams::node::start_with_source`, `support::Harness`) unless Tarantool is
//! what it checks: those are under [`tarantool`] (`tarantool::area::...`), on a real Tarantool
//! started by the test. So `cargo test --test e2e -- --skip tarantool::` runs the logic
//! suite without a database, and `cargo test --test e2e tarantool::` the rest.
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
mod cli;
mod conformance;
mod delivery;
mod explorer;
mod filters;
mod hostile;
mod include;
mod operations;
mod partition;
mod proxy;
mod python_client;
mod replay;
mod rpc;
mod stream;
mod subscribe;
mod tarantool;
mod tls;
mod websockets_protocol;
