//! What the end-to-end tests share; every test module starts with `use crate::support::*;`.
//!
//! - [`node`]: the node under test. [`Harness`] runs the real node in this process
//!   (`node::start_with_source`) on an in-memory source: the default. [`TarantoolHarness`]
//!   runs it on a real Tarantool, for the tests whose subject is Tarantool (in `tarantool/`).
//! - [`chain`]: Planetmint-shaped blocks, the events they must give, and writers committing
//!   them to either kind of node ([`ChainWriter`], [`spawn_writer`], [`Bystander`]).
//! - [`clients`]: one client per protocol ([`HTTP`](clients::http), [`UrlStream`],
//!   [`RpcClient`], [`StreamSeaClient`], [raw frames](clients::raw_websocket)); new
//!   protocols add theirs there.
//! - [`metrics`]: values from `/metrics`.
//! - [`browser`]: headless Chromium over its DevTools protocol (the live page, EventSource).
//! - [`jetstream`]: a `[nats]` section for a test nats-server and what its streams hold.
//! - [`process`]: the node binary as a process ([`NodeProcess`]) and the test Python.

pub mod browser;
pub mod chain;
pub mod clients;
pub mod jetstream;
pub mod metrics;
pub mod node;
pub mod process;

pub use chain::{chain, expected_events, spawn_writer, write_until_metric, Bystander, Store};
pub use clients::http::{
    closed_within, exchange, exchange_for, get_json, http_get, http_request, http_request_bytes,
    open_from, parse_http_response, read_response, upgrade_request, upgrade_status,
};
pub use clients::json_rpc::{error_code, RpcClient};
pub use clients::raw_websocket::{
    client_frame, raw_upgrade, read_close_frame, server_frames, ServerFrame,
};
pub use clients::stream_sea::StreamSeaClient;
pub use clients::url_stream::{ExactlyOnceClient, UrlStream};
pub use clients::{next_json, websocket, Options, Ws};
pub use metrics::{metric, metrics_until};
pub use node::{
    issue_token, signed_with_key, tarantool_config, test_config, Harness, NodeUnderTest,
    TarantoolHarness,
};
pub use planetmint_streams_devchain::generate::synthetic_block;
pub use process::{python, stdout_of, NodeProcess, BIN};
