//! The protocols spoken over the connection engine ([`crate::engine`]), each a thin adapter:
//! - [`url`]: Planetmint's URL streams (one subscription per WebSocket, named by the URL);
//! - the one-socket channel ([`channel`]: the first message chooses): [`rpc`], JSON-RPC 2.0
//!   requests, and [`streamsea`], the stream-sea protocol (with consumer groups);
//! - [`http`]: the URL streams over plain HTTP (Server-Sent Events, NDJSON).

pub mod channel;
pub mod http;
pub mod rpc;
pub mod streamsea;
pub mod url;
