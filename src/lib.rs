//! planetmint-streams: an event stream server for Planetmint.
//!
//! It follows the blocks a Planetmint node commits to its Tarantool and pushes them to
//! WebSocket subscribers, compatible on the wire with Planetmint's own event stream. This crate
//! is the binary's library half: [`allocator`] (jemalloc's statistics), [`config`] (the layered, validated configuration), [`node`]
//! (wiring the ingest, broadcaster and API crates together), [`nofile`] (the open-file limit
//! against `streams.max_connections`), [`catalogue`] (the described
//! streams and AsyncAPI document), [`subscribe`] (the durable subscriber command),
//! [`reload`] (credentials replaced on SIGHUP or a changed file), [`clients`] (the `client`
//! commands), [`jetstream`] (the JetStream tier's wiring and API routes) and [`logging`].
#![forbid(unsafe_code)]

pub mod allocator;
pub mod catalogue;
pub mod clients;
pub mod config;
pub mod jetstream;
pub mod logging;
pub mod node;
pub mod nofile;
pub mod reload;
pub mod subscribe;
pub mod tls;
pub mod token;

pub use config::Config;
pub use node::{start, start_with_source, RunningNode};
