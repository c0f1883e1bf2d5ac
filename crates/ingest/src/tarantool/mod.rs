//! Reading Planetmint's Tarantool with tarantool-rs.
//!
//! - [`relay`]: the loopback relay that lets tarantool-rs talk to Tarantool < 2.10 and makes
//!   reconnects visible.
//! - [`connect`]: opens a tarantool-rs connection through the relay.
//! - `streams.lua`: the server-side long-poll and bulk read, installed through `eval`.
//! - [`source`]: [`TarantoolSource`], the [`BlockSource`](planetmint_streams_model::BlockSource)
//!   over all of this, with a plain `select` fallback where `eval` is not allowed.

pub mod config;
mod connect;
pub mod failover;
pub mod relay;
pub mod source;

pub use config::{Password, ReadMode, TarantoolConfig};
pub use connect::{connect, TarantoolConnection};
pub use failover::FailoverSource;
pub use source::TarantoolSource;
