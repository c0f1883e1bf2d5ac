//! The notification around each message of a JSON-RPC subscription:
//! `{"jsonrpc":"2.0","method":"subscription","params":{"subscription":"<id>","result":<message>}}`.
//!
//! `<message>` is the very payload the URL stream with the same options sends in one frame,
//! taken from the block's shared, already serialized frames: wrapping copies bytes around it
//! and never serializes a block again.

use bytes::Bytes;

use crate::frame::{encode_frame, OPCODE_TEXT};
use crate::queue::QueuedBlock;

/// What closes a notification after its message.
const SUFFIX: &[u8] = b"}}";

/// One subscription's notification envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The subscription's key on its connection (its id is this number in decimal).
    key: u64,
    /// Everything before the message.
    prefix: Vec<u8>,
}

impl Envelope {
    /// The envelope of subscription `key`, whose id is `key` in decimal.
    pub fn new(key: u64) -> Self {
        let prefix = format!(
            r#"{{"jsonrpc":"2.0","method":"{}","params":{{"subscription":"{key}","result":"#,
            super::protocol::NOTIFICATION_METHOD
        )
        .into_bytes();
        Self { key, prefix }
    }

    /// The subscription's key.
    pub fn key(&self) -> u64 {
        self.key
    }

    /// `frames` (whole unmasked text frames, back to back) with each message wrapped.
    pub fn wrap(
        &self,
        frames: &QueuedBlock,
        received_at: Option<std::time::Instant>,
    ) -> QueuedBlock {
        let extra = self.prefix.len() + SUFFIX.len() + 8;
        let mut out = Vec::with_capacity(frames.frames.len() + frames.messages as usize * extra);
        let mut message = Vec::new();
        for payload in payloads(&frames.frames) {
            message.clear();
            message.extend_from_slice(&self.prefix);
            message.extend_from_slice(payload);
            message.extend_from_slice(SUFFIX);
            encode_frame(OPCODE_TEXT, &message, &mut out);
        }
        QueuedBlock {
            height: frames.height,
            frames: Bytes::from(out),
            messages: frames.messages,
            received_at,
            subscription: Some(self.key),
        }
    }
}

/// The payloads of whole unmasked frames written back to back by [`encode_frame`]; stops at
/// anything it cannot read (never reads past the end).
fn payloads(mut frames: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let second = *frames.get(1)?;
        let (len, header): (usize, usize) = match second & 0x7f {
            126 => (
                usize::from(u16::from_be_bytes([*frames.get(2)?, *frames.get(3)?])),
                4,
            ),
            127 => {
                let bytes: [u8; 8] = frames.get(2..10)?.try_into().ok()?;
                (usize::try_from(u64::from_be_bytes(bytes)).ok()?, 10)
            }
            n => (usize::from(n), 2),
        };
        let payload = frames.get(header..header.checked_add(len)?)?;
        frames = &frames[header + len..];
        Some(payload)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn frames_of(messages: &[Vec<u8>]) -> QueuedBlock {
        let mut out = Vec::new();
        for m in messages {
            encode_frame(OPCODE_TEXT, m, &mut out);
        }
        QueuedBlock {
            height: 9,
            frames: Bytes::from(out),
            messages: messages.len() as u32,
            received_at: None,
            subscription: None,
        }
    }

    #[test]
    fn every_message_is_wrapped_whatever_its_frame_header() {
        // Payloads with 2-, 4- and 10-byte frame headers.
        let messages: Vec<Vec<u8>> = [10usize, 300, 70_000]
            .iter()
            .map(|&n| {
                json!({"height": 9, "pad": "x".repeat(n)})
                    .to_string()
                    .into_bytes()
            })
            .collect();
        let wrapped = Envelope::new(12).wrap(&frames_of(&messages), None);
        assert_eq!(wrapped.subscription, Some(12));
        assert_eq!(wrapped.height, 9);
        assert_eq!(wrapped.messages, 3);
        let out: Vec<&[u8]> = payloads(&wrapped.frames).collect();
        assert_eq!(out.len(), 3);
        for (payload, original) in out.iter().zip(&messages) {
            let notification: Value = serde_json::from_slice(payload).expect("JSON");
            let message: Value = serde_json::from_slice(original).expect("JSON");
            assert_eq!(
                notification,
                json!({"jsonrpc": "2.0", "method": "subscription", "params": {"subscription": "12", "result": message}})
            );
        }
    }

    #[test]
    fn truncated_frames_end_the_walk_without_panicking() {
        let block = frames_of(&[b"{}".to_vec(), vec![b'x'; 200]]);
        for cut in 0..block.frames.len() {
            let n = payloads(&block.frames[..cut]).count();
            assert!(n <= 1, "cut at {cut}");
        }
    }
}
