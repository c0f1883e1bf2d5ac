//! A development chain for planetmint-streams, used by tests, the demo and benchmarks.
//!
//! - [`process`]: a real Tarantool process on a free loopback port in a temporary directory,
//!   with Planetmint's schema (`deploy/tarantool/planetmint-schema.lua`), that can be killed and
//!   restarted on the same data.
//! - [`generate`]: Planetmint-shaped CREATE/TRANSFER transactions and blocks (ids are SHA3-256
//!   of the transaction body, `app_hash` chained as Planetmint does), each with the stream
//!   events it must produce, computed from how it was built.
//! - [`writer`]: writes blocks the way Planetmint commits them: transactions and their
//!   outputs first, the `blocks` row last.
//! - [`demo`]: the chain `make demo` writes, the same on every start, and the key and asset
//!   the docs tell newcomers to try.
//! - [`nats`]: a real nats-server (JetStream, WebSocket) on free loopback ports, alone or as
//!   a 3-node cluster, for the JetStream tier's tests and the demo.
//! - [`fixtures`]: the rows Planetmint 2.5.3's own storage code wrote
//!   (`tests/fixtures/planetmint-2.5.3`).
//!
//! Generated and fixture blocks also give their rows ([`generate::GeneratedBlock::rows`],
//! [`fixtures::Planetmint253::block_rows`]) for the in-memory source
//! (`planetmint_streams_ingest::MemorySource::commit_rows`), which tests use wherever Tarantool
//! itself is not what they check.
#![forbid(unsafe_code)]

pub mod demo;
pub mod fixtures;
pub mod generate;
pub mod nats;
pub mod process;
pub mod writer;

/// Planetmint's schema for a development Tarantool.
pub const PLANETMINT_SCHEMA_LUA: &str =
    include_str!("../../../deploy/tarantool/planetmint-schema.lua");
