//! The words every crate of the stream shares, in one place: the streams (names and paths),
//! the operations Planetmint commits, the WebSocket close codes the server sends, and the
//! shape of a JSON error body.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Path of the transactions stream (Planetmint's).
pub const VALID_TRANSACTIONS_PATH: &str = "/api/v1/streams/valid_transactions";
/// Path of the blocks stream (Planetmint's).
pub const VALID_BLOCKS_PATH: &str = "/api/v1/streams/valid_blocks";
/// Path of the JSON-RPC channel on the stream port, and of the stream catalogue on the API
/// port.
pub const STREAMS_PATH: &str = "/api/v1/streams";
/// Path of the AsyncAPI document on the API port.
pub const ASYNCAPI_PATH: &str = "/api/v1/streams/asyncapi.json";

/// The two streams, named as in their URLs (`/api/v1/streams/<name>`), in metric labels and
/// in signed tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    /// `valid_transactions`: one message per transaction.
    ValidTransactions,
    /// `valid_blocks`: one message per block.
    ValidBlocks,
}

impl StreamKind {
    /// Every stream.
    pub const ALL: [StreamKind; 2] = [StreamKind::ValidTransactions, StreamKind::ValidBlocks];

    /// The stream's name as in its URL.
    pub fn name(self) -> &'static str {
        match self {
            StreamKind::ValidTransactions => "valid_transactions",
            StreamKind::ValidBlocks => "valid_blocks",
        }
    }

    /// The stream's path on the stream port.
    pub fn path(self) -> &'static str {
        match self {
            StreamKind::ValidTransactions => VALID_TRANSACTIONS_PATH,
            StreamKind::ValidBlocks => VALID_BLOCKS_PATH,
        }
    }
}

impl fmt::Display for StreamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown stream {0:?}: expected valid_transactions or valid_blocks")]
pub struct UnknownStream(pub String);

impl FromStr for StreamKind {
    type Err = UnknownStream;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        StreamKind::ALL
            .into_iter()
            .find(|stream| stream.name() == name)
            .ok_or_else(|| UnknownStream(name.chars().take(64).collect()))
    }
}

/// Operations Planetmint 2.5.3 commits.
pub const OPERATIONS: &[&str] = &[
    "CREATE",
    "TRANSFER",
    "COMPOSE",
    "DECOMPOSE",
    "VALIDATOR_ELECTION",
    "CHAIN_MIGRATION_ELECTION",
    "VOTE",
];

/// WebSocket close codes the server sends, each with what it means for the client.
pub mod close {
    /// Normal close (the answer to a client's close).
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down; the reason carries `last_height` to resume from.
    pub const GOING_AWAY: u16 = 1001;
    /// The client broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame from the client was not UTF-8.
    pub const INVALID_TEXT: u16 = 1007;
    /// Policy: a refused or expired token.
    pub const POLICY: u16 = 1008;
    /// A frame from the client was too big.
    pub const TOO_BIG: u16 = 1009;
    /// The subscriber fell behind (or answered no ping); the reason carries `last_height`.
    pub const TOO_SLOW: u16 = 4000;
    /// `from_height` is below the history still stored; the reason carries `lowest_height`.
    pub const HISTORY_UNAVAILABLE: u16 = 4001;

    /// Every code the server sends, with its meaning (for the catalogue and docs).
    pub const ALL: &[(u16, &str)] = &[
        (NORMAL, "normal close"),
        (GOING_AWAY, "server shutting down; reason {\"reason\", \"last_height\"}: reconnect with from_height=last_height"),
        (PROTOCOL_ERROR, "protocol error"),
        (INVALID_TEXT, "a text frame from the client was not UTF-8"),
        (POLICY, "policy: a refused or expired token"),
        (TOO_BIG, "a frame from the client was too big"),
        (TOO_SLOW, "too slow or no pong; reason {\"reason\", \"last_height\"}: reconnect with from_height=last_height"),
        (HISTORY_UNAVAILABLE, "from_height is below the history still stored; reason {\"reason\", \"from_height\", \"lowest_height\"}"),
    ];
}

/// The JSON body of every HTTP error the node answers: `{"error": message, "status": code}`
/// and any `extra` fields (`parameter`, `path`, `reason`, ...).
pub fn json_error_body(status: u16, message: &str, extra: &[(&str, &str)]) -> serde_json::Value {
    let mut body = serde_json::Map::new();
    body.insert("error".into(), message.into());
    body.insert("status".into(), status.into());
    for (key, value) in extra {
        body.insert((*key).into(), (*value).into());
    }
    serde_json::Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_paths_and_parsing_agree() {
        for stream in StreamKind::ALL {
            assert_eq!(stream.name().parse::<StreamKind>(), Ok(stream));
            assert!(stream.path().ends_with(stream.name()));
            assert!(stream.path().starts_with(STREAMS_PATH));
            assert_eq!(
                serde_json::to_value(stream).ok(),
                Some(serde_json::Value::from(stream.name()))
            );
        }
        assert!("valid_things".parse::<StreamKind>().is_err());
    }

    #[test]
    fn error_bodies_have_error_status_and_extras() {
        let body = json_error_body(400, "bad", &[("parameter", "from_height")]);
        assert_eq!(
            body,
            serde_json::json!({"error": "bad", "status": 400, "parameter": "from_height"})
        );
    }
}
