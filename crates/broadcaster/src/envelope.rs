//! How a dialect wraps each message of a subscription: the JSON-RPC notification, the
//! stream-sea delivery, the Server-Sent Event, the NDJSON line around the very message the URL
//! stream sends.
//!
//! The hub queues a block's shared frames with the subscription's [`Envelope`]; the wrapping is
//! written only when the socket takes the delivery ([`write`]), so a block waiting for a slow
//! reader is never copied per subscription.

use std::fmt;

use crate::frame::{encode_frame_of, payloads, OPCODE_TEXT};
use crate::queue::Delivery;

/// One message of a delivery, as an envelope sees it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The JSON the URL stream sends for it.
    pub payload: &'a [u8],
    /// Its block's height.
    pub height: u64,
    /// Whether it is the last message of its block in this delivery.
    pub last_in_block: bool,
}

/// Wraps the messages of one subscription as its dialect sends them.
pub trait Envelope: Send + Sync + fmt::Debug {
    /// Appends `message`, wrapped and framed for the socket, to `out`.
    fn wrap(&self, message: Message<'_>, out: &mut Vec<u8>);

    /// About how many bytes wrapping adds to one message (queue accounting).
    fn overhead(&self) -> usize;
}

/// A WebSocket text frame holding `prefix`, the message, `suffix`: a JSON object around the
/// message (a JSON-RPC notification, a stream-sea delivery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFrameEnvelope {
    prefix: Box<[u8]>,
    suffix: &'static [u8],
}

impl TextFrameEnvelope {
    /// Each message becomes the text frame `prefix + message + suffix`.
    pub fn new(prefix: impl Into<Box<[u8]>>, suffix: &'static [u8]) -> Self {
        Self {
            prefix: prefix.into(),
            suffix,
        }
    }
}

impl Envelope for TextFrameEnvelope {
    fn wrap(&self, message: Message<'_>, out: &mut Vec<u8>) {
        encode_frame_of(
            OPCODE_TEXT,
            &[&self.prefix, message.payload, self.suffix],
            out,
        );
    }

    fn overhead(&self) -> usize {
        // The frame header may grow by up to 8 bytes with the longer payload.
        self.prefix.len() + self.suffix.len() + 8
    }
}

/// The bytes the socket is given for `delivery`: its frames as they are, or each of their
/// messages wrapped in the delivery's envelope.
pub fn write(delivery: &Delivery, out: &mut Vec<u8>) {
    let Some(envelope) = &delivery.envelope else {
        out.extend_from_slice(&delivery.frames);
        return;
    };
    out.reserve(delivery.wire_len());
    let mut messages = payloads(&delivery.frames).peekable();
    while let Some(payload) = messages.next() {
        let message = Message {
            payload,
            height: delivery.height,
            last_in_block: messages.peek().is_none(),
        };
        envelope.wrap(message, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode_frame;
    use bytes::Bytes;
    use std::sync::Arc;

    /// Marks each message with its height and whether it ends the block.
    #[derive(Debug)]
    struct Marking;

    impl Envelope for Marking {
        fn wrap(&self, message: Message<'_>, out: &mut Vec<u8>) {
            out.extend_from_slice(
                format!("{}{}:", message.height, message.last_in_block).as_bytes(),
            );
            out.extend_from_slice(message.payload);
            out.push(b'\n');
        }

        fn overhead(&self) -> usize {
            30
        }
    }

    fn delivery(messages: &[&str]) -> Delivery {
        let mut frames = Vec::new();
        for m in messages {
            encode_frame(OPCODE_TEXT, m.as_bytes(), &mut frames);
        }
        Delivery::shared(7, Bytes::from(frames), messages.len() as u32)
    }

    #[test]
    fn without_an_envelope_the_frames_go_out_as_they_are() {
        let plain = delivery(&["{\"a\":1}", "{\"b\":2}"]);
        let mut out = Vec::new();
        write(&plain, &mut out);
        assert_eq!(out, plain.frames.to_vec());
    }

    #[test]
    fn each_message_is_wrapped_and_only_the_last_ends_the_block() {
        let mut wrapped = delivery(&["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
        wrapped.envelope = Some(Arc::new(Marking));
        let mut out = Vec::new();
        write(&wrapped, &mut out);
        assert_eq!(
            String::from_utf8(out).expect("text"),
            "7false:{\"a\":1}\n7false:{\"b\":2}\n7true:{\"c\":3}\n"
        );
    }

    #[test]
    fn a_text_frame_envelope_frames_prefix_message_and_suffix_as_one_message() {
        let envelope = TextFrameEnvelope::new(b"{\"x\":".to_vec(), b"}");
        // Messages whose wrapped length crosses the 126- and 65,536-byte header sizes.
        for len in [10usize, 120, 65_530, 70_000] {
            let payload = "1".repeat(len);
            let mut out = Vec::new();
            envelope.wrap(
                Message {
                    payload: payload.as_bytes(),
                    height: 1,
                    last_in_block: true,
                },
                &mut out,
            );
            let mut expected = Vec::new();
            encode_frame(
                OPCODE_TEXT,
                format!("{{\"x\":{payload}}}").as_bytes(),
                &mut expected,
            );
            assert_eq!(out, expected, "message of {len} bytes");
            assert!(out.len() <= len + envelope.overhead() + 2);
        }
    }
}
