//! Benchmark tools for planetmint-streams (issue "Performance"): everything runs on one
//! machine and talks to loopback only.
//!
//! - `wsload` ([`load`]): N WebSocket subscribers (or Server-Sent Events readers, [`sse`], for
//!   an `http://` URL), ramped connects; measure mode (every message parsed, commit-to-arrival
//!   latency, throughput, loss, duplicates, order), idle mode (hold N connections), and K
//!   subscribers that never read.
//! - `benchwriter` ([`writer`]): commits Planetmint-shaped blocks into Tarantool through
//!   devchain, with transaction ids that encode their commit time; `--prefill` for history.
//! - `limitserver` ([`limit`]): the limit baseline, a minimal server writing pre-encoded
//!   frames from memory as fast as the sockets take them.
//! - `rpcload` ([`channel`]): N subscriptions carried by URL connections, JSON-RPC
//!   connections or the members of a stream-sea consumer group; subscriptions held unread at
//!   an address's caps, a close storm timed by a probe from another address, and a flood of
//!   empty continuation frames.
//! - `jsload` ([`jetstream`]): N JetStream consumers of the JetStream tier's streams, measured
//!   the way `wsload` measures WebSocket subscribers.
//!
//! The commit-time encoding of ids that ties them together is defined in [`commit_time`].
#![forbid(unsafe_code)]

pub mod channel;
pub mod commit_time;
pub mod jetstream;
pub mod limit;
pub mod load;
pub mod loopback;
pub mod sse;
pub mod stats;
pub mod system;
pub mod writer;
pub mod wsframe;
