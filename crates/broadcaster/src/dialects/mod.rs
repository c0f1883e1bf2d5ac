//! The protocols spoken over the connection engine ([`crate::engine`]), each a thin adapter:
//! - [`url`]: Planetmint's URL streams (one subscription per WebSocket, named by the URL);
//! - [`rpc`]: the one-socket JSON-RPC channel (many subscriptions, JSON-RPC 2.0 requests);
//! - [`http`]: the URL streams over plain HTTP (Server-Sent Events, NDJSON).

pub mod http;
pub mod rpc;
pub mod url;
