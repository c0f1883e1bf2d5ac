//! Subjects and JetStream stream names of the two streams, and the headers every message
//! carries.
//!
//! By default the subject is the stream's name (`valid_transactions`, `valid_blocks`); with
//! `nats.prefix = "planetmint.main"` it is `planetmint.main.valid_transactions`. The JetStream
//! stream holding a subject is named after it with `.` turned into `_`, which is how
//! speedracer finds the stream of a dataset (`planetmint_main_valid_transactions`).

use planetmint_streams_model::vocabulary::StreamKind;
use serde::Serialize;

/// Header: unique per event, JetStream's de-duplication key.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";
/// Header: the height of the block the event belongs to.
pub const HEIGHT_HEADER: &str = "Planetmint-Height";
/// Header (transactions only): the transaction's id.
pub const TRANSACTION_ID_HEADER: &str = "Planetmint-Transaction-Id";

/// Where one of our streams lives in NATS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamNames {
    /// Which of our streams.
    #[serde(skip)]
    pub kind: StreamKind,
    /// The NATS subject its messages are published on.
    pub subject: String,
    /// The JetStream stream holding them.
    pub stream: String,
}

impl StreamNames {
    /// The names of `kind` under `prefix` (empty: no prefix).
    pub fn new(prefix: &str, kind: StreamKind) -> Self {
        let subject = if prefix.is_empty() {
            kind.name().to_owned()
        } else {
            format!("{prefix}.{}", kind.name())
        };
        Self {
            kind,
            stream: stream_name_of(&subject),
            subject,
        }
    }

    /// Both streams under `prefix`, transactions first.
    pub fn both(prefix: &str) -> [StreamNames; 2] {
        StreamKind::ALL.map(|kind| StreamNames::new(prefix, kind))
    }
}

/// The JetStream stream speedracer looks for a subject (dataset) in: `.` -> `_`.
pub fn stream_name_of(subject: &str) -> String {
    subject.replace('.', "_")
}

/// `Nats-Msg-Id` of a transaction event: its height and id (unique in a chain).
pub fn transaction_msg_id(height: u64, transaction_id: &str) -> String {
    format!("{height}:{transaction_id}")
}

/// `Nats-Msg-Id` of a block event: its height.
pub fn block_msg_id(height: u64) -> String {
    height.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_and_without_a_prefix_are_what_speedracer_derives() {
        let plain = StreamNames::new("", StreamKind::ValidTransactions);
        assert_eq!(plain.subject, "valid_transactions");
        assert_eq!(plain.stream, "valid_transactions");
        let prefixed = StreamNames::new("planetmint.main", StreamKind::ValidBlocks);
        assert_eq!(prefixed.subject, "planetmint.main.valid_blocks");
        // speedracer: stream = dataset.lower().replace('.', '_')
        assert_eq!(
            prefixed.stream,
            prefixed.subject.to_lowercase().replace('.', "_")
        );
        assert_eq!(
            StreamNames::both("x").map(|n| n.subject),
            ["x.valid_transactions", "x.valid_blocks"]
        );
    }
}
