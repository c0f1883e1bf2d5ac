//! The words of the chain's streams every crate shares: the two streams by name and the
//! operations Planetmint commits. (How they travel, paths, frames, close codes and error
//! bodies, belongs to the crates that speak HTTP and WebSocket.)

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The two streams, named as in their URLs (`/api/v1/streams/<name>`), in metric labels and
/// in signed tokens.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_and_parsing_agree() {
        for stream in StreamKind::ALL {
            assert_eq!(stream.name().parse::<StreamKind>(), Ok(stream));
            assert_eq!(
                serde_json::to_value(stream).ok(),
                Some(serde_json::Value::from(stream.name()))
            );
        }
        assert!("valid_things".parse::<StreamKind>().is_err());
    }
}
