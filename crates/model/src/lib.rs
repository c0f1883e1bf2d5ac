//! Planetmint's committed blocks as the event stream sees them.
//!
//! This crate holds the rows, the blocks, the events and the seam of planetmint-streams, and
//! has no I/O (how they travel, frames, paths and close codes, belongs to the broadcaster):
//! - [`tuple`]: the rows Planetmint's storage code writes to Tarantool (`blocks`,
//!   `transactions`/`governance`, `outputs`), decoded with serde from MessagePack.
//! - [`block`]: a [`CommittedBlock`] assembled from those rows, with the asset rules of the
//!   stream (`asset_id`, `asset_ids`) applied once.
//! - [`event`]: the JSON messages clients receive, serialized once per block.
//! - [`source`]: the seam between storage and fan-out: [`BlockSource`] (read committed blocks)
//!   and [`BlockSink`] (receive them in order), so either side can be tested alone;
//!   [`SinkFanOut`] feeds several sinks from one follower.
//! - [`api`]: a transaction as Planetmint's `GET /api/v1/transactions/<id>` returns it,
//!   rebuilt from its rows (a typed [`api::RowProblem`] where Planetmint's own code would
//!   raise).
//! - [`ids`]: validation of transaction ids and public keys given by clients.
//! - [`backoff`]: the retry schedule every reconnect and retry loop uses.
//! - [`config`]: [`ConfigProblem`], the error every configuration section's `validate` returns.
//! - [`vocabulary`]: stream names and the operations Planetmint commits.
#![forbid(unsafe_code)]

pub mod api;
pub mod backoff;
pub mod block;
pub mod config;
pub mod event;
pub mod ids;
pub mod source;
pub mod tuple;
pub mod vocabulary;

pub use block::{AssemblyError, AssetIdsEntry, CommittedBlock, CommittedTransaction};
pub use config::ConfigProblem;
pub use source::{
    BlockBatch, BlockSink, BlockSource, FetchedBlocks, HeightBounds, SinkFanOut, SourceError,
};
