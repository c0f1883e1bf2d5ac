//! Ingest: follows the blocks Planetmint commits to Tarantool, in height order, with no gap and
//! no duplicate, across restarts and outages of either side.
//!
//! - [`tarantool`]: the Tarantool [`BlockSource`](planetmint_streams_model::BlockSource)
//!   (tarantool-rs behind a loopback relay that makes Tarantool 2.6 work; server-side
//!   long-poll; bulk reads).
//! - [`follower`]: the loop that keeps a cursor (last height delivered), reads what comes after
//!   it and hands each block to a [`BlockSink`](planetmint_streams_model::BlockSink), retrying
//!   with backoff while the source is away.
//! - [`status`]: what the follower knows (source reachable, heads), for readiness and metrics.
//! - [`memory`]: an in-memory source for tests of everything downstream (the whole node
//!   included), fed assembled blocks or Planetmint's rows.
#![forbid(unsafe_code)]

pub mod follower;
pub mod memory;
pub mod status;
pub mod tarantool;

pub use follower::{Follower, FollowerConfig};
pub use memory::{BlockRows, MemorySource};
pub use status::IngestStatus;
pub use tarantool::{TarantoolConfig, TarantoolSource};
