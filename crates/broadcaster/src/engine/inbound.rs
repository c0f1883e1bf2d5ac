//! What clients send over a WebSocket, frame by frame: whole messages put together from their
//! fragments (for dialects that read requests) or only checked (for one-way streams), control
//! frames passed on. The driver reads one frame per token of the client's budget, so every
//! frame counts, continuation frames included, however small or empty.
//!
//! Checks the protocol requires: a text message must be UTF-8 as a whole (RFC 6455 5.6, 8.1),
//! even when it arrives in fragments and even when the stream ignores it; a message put
//! together from fragments may not pass the frame size limit in all (1009).

use actix_ws::{CloseReason, Item, Message};
use bytes::{Bytes, BytesMut};

use super::close::Ending;

/// A whole message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClientMessage {
    /// A text message (valid UTF-8).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
}

/// What a frame from the client amounts to.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A whole message, for the dialect.
    Message(ClientMessage),
    /// A ping to answer with its payload.
    Ping(Bytes),
    /// A pong.
    Pong,
    /// The client's close frame.
    Close(Option<CloseReason>),
    /// Nothing to act on (a fragment taken in, a message ignored).
    Nothing,
}

/// How a dialect takes client messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reading {
    /// It reads requests: messages are put together, up to `max_bytes` in all.
    Whole {
        /// Largest message (its fragments together).
        max_bytes: usize,
    },
    /// A one-way stream: messages are checked (UTF-8) and dropped, never kept.
    CheckOnly,
}

/// Puts fragmented client messages together (or only checks them).
#[derive(Debug)]
pub(crate) struct Reassembly {
    reading: Reading,
    /// Fragments so far of a message being put together, and whether it is text.
    partial: Option<(bool, BytesMut)>,
    /// UTF-8 check of fragmented text that is not kept.
    text: FragmentedText,
}

impl Reassembly {
    /// Takes messages as `reading` says.
    pub(crate) fn new(reading: Reading) -> Self {
        Self {
            reading,
            partial: None,
            text: FragmentedText::default(),
        }
    }

    /// Takes one frame from the client.
    pub(crate) fn frame(&mut self, message: Message) -> Result<Inbound, Ending> {
        Ok(match message {
            Message::Ping(payload) => Inbound::Ping(payload),
            Message::Pong(_) => Inbound::Pong,
            Message::Close(reason) => Inbound::Close(reason),
            Message::Nop => Inbound::Nothing,
            // A single-frame text message is checked as UTF-8 by actix-ws already.
            Message::Text(text) => self.whole(ClientMessage::Text(text.into_bytes())),
            Message::Binary(bytes) => self.whole(ClientMessage::Binary(bytes)),
            Message::Continuation(item) => match self.reading {
                Reading::CheckOnly => {
                    if !self.text.check(&item) {
                        return Err(Ending::InvalidText);
                    }
                    Inbound::Nothing
                }
                Reading::Whole { max_bytes } => self.fragment(item, max_bytes)?,
            },
        })
    }

    fn whole(&self, message: ClientMessage) -> Inbound {
        match self.reading {
            Reading::Whole { .. } => Inbound::Message(message),
            Reading::CheckOnly => Inbound::Nothing,
        }
    }

    fn fragment(&mut self, item: Item, max_bytes: usize) -> Result<Inbound, Ending> {
        let (first, bytes, last) = match item {
            Item::FirstText(bytes) => (Some(true), bytes, false),
            Item::FirstBinary(bytes) => (Some(false), bytes, false),
            Item::Continue(bytes) => (None, bytes, false),
            Item::Last(bytes) => (None, bytes, true),
        };
        if let Some(is_text) = first {
            self.partial = Some((is_text, BytesMut::new()));
        }
        // The codec refuses a continuation without a first fragment; be safe regardless.
        let Some((is_text, buffer)) = self.partial.as_mut() else {
            return Err(Ending::ProtocolError(
                "continuation without a first fragment".into(),
            ));
        };
        if buffer.len() + bytes.len() > max_bytes {
            self.partial = None;
            return Err(Ending::FrameTooBig);
        }
        buffer.extend_from_slice(&bytes);
        if !last {
            return Ok(Inbound::Nothing);
        }
        let is_text = *is_text;
        let message = std::mem::take(buffer).freeze();
        self.partial = None;
        if is_text {
            if std::str::from_utf8(&message).is_err() {
                return Err(Ending::InvalidText);
            }
            Ok(Inbound::Message(ClientMessage::Text(message)))
        } else {
            Ok(Inbound::Message(ClientMessage::Binary(message)))
        }
    }
}

/// UTF-8 check of fragmented text messages from clients (RFC 6455 5.6: the whole message must
/// be UTF-8) without keeping them: only the up to three bytes of a code point split across
/// fragments are carried over.
#[derive(Debug, Default)]
pub(crate) struct FragmentedText {
    in_text: bool,
    carry: Vec<u8>,
}

impl FragmentedText {
    /// False when the message is not UTF-8.
    pub(crate) fn check(&mut self, item: &Item) -> bool {
        match item {
            Item::FirstText(bytes) => {
                self.in_text = true;
                self.carry.clear();
                self.feed(bytes, false)
            }
            Item::FirstBinary(_) => {
                self.in_text = false;
                true
            }
            Item::Continue(bytes) => !self.in_text || self.feed(bytes, false),
            Item::Last(bytes) => {
                let valid = !self.in_text || self.feed(bytes, true);
                self.in_text = false;
                valid
            }
        }
    }

    fn feed(&mut self, bytes: &[u8], last: bool) -> bool {
        let joined;
        let data: &[u8] = if self.carry.is_empty() {
            bytes
        } else {
            joined = [self.carry.as_slice(), bytes].concat();
            &joined
        };
        match std::str::from_utf8(data) {
            Ok(_) => {
                self.carry.clear();
                true
            }
            // A code point cut at the end of this fragment: the next one completes it.
            Err(err) if err.error_len().is_none() && !last => {
                let tail = data[err.valid_up_to()..].to_vec();
                self.carry = tail;
                true
            }
            Err(_) => false,
        }
    }
}

/// Whether a protocol error is text that is not UTF-8 (1007) rather than a broken frame (1002).
pub(crate) fn is_invalid_utf8(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::InvalidData
        && err
            .get_ref()
            .is_some_and(|inner| inner.is::<std::str::Utf8Error>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(b: &[u8]) -> Bytes {
        Bytes::copy_from_slice(b)
    }

    fn run(items: Vec<Item>) -> bool {
        let mut text = FragmentedText::default();
        items.iter().all(|item| text.check(item))
    }

    #[test]
    fn code_points_split_across_fragments_are_valid_and_broken_ones_are_not() {
        let euro = "\u{20ac}".as_bytes(); // three bytes
        assert!(run(vec![
            Item::FirstText(whole(&euro[..1])),
            Item::Continue(whole(&euro[1..2])),
            Item::Last(whole(&euro[2..]))
        ]));
        assert!(run(vec![
            Item::FirstText(whole(b"hello ")),
            Item::Last(whole(b"world"))
        ]));
        // A code point cut short at the end of the message.
        assert!(!run(vec![
            Item::FirstText(whole(b"ok")),
            Item::Last(whole(&euro[..2]))
        ]));
        // An invalid byte in a middle fragment.
        assert!(!run(vec![
            Item::FirstText(whole(b"ok")),
            Item::Continue(whole(&[0xff])),
            Item::Last(whole(b"x"))
        ]));
        // Binary messages are not text.
        assert!(run(vec![
            Item::FirstBinary(whole(&[0xff])),
            Item::Last(whole(&[0xfe]))
        ]));
    }

    fn feed(reassembly: &mut Reassembly, items: Vec<Item>) -> Vec<Result<Inbound, Ending>> {
        items
            .into_iter()
            .map(|item| reassembly.frame(Message::Continuation(item)))
            .collect()
    }

    #[test]
    fn fragments_make_one_message_and_each_one_is_a_step_of_its_own() {
        let mut reassembly = Reassembly::new(Reading::Whole { max_bytes: 100 });
        let steps = feed(
            &mut reassembly,
            vec![
                Item::FirstText(whole(b"{\"a\"")),
                Item::Continue(Bytes::new()),
                Item::Continue(Bytes::new()),
                Item::Last(whole(b":1}")),
            ],
        );
        assert_eq!(steps.len(), 4, "every fragment is read on its own");
        assert!(steps[..3].iter().all(|s| matches!(s, Ok(Inbound::Nothing))));
        assert!(matches!(
            &steps[3],
            Ok(Inbound::Message(ClientMessage::Text(t))) if t.as_ref() == b"{\"a\":1}"
        ));
    }

    #[test]
    fn fragments_over_the_limit_in_all_are_too_big_and_bad_text_is_refused() {
        let mut reassembly = Reassembly::new(Reading::Whole { max_bytes: 10 });
        let steps = feed(
            &mut reassembly,
            vec![
                Item::FirstBinary(whole(&[0; 6])),
                Item::Last(whole(&[0; 6])),
            ],
        );
        assert!(matches!(steps[1], Err(Ending::FrameTooBig)));
        let steps = feed(
            &mut reassembly,
            vec![Item::FirstText(whole(b"ok")), Item::Last(whole(&[0xff]))],
        );
        assert!(matches!(steps[1], Err(Ending::InvalidText)));
    }

    #[test]
    fn a_one_way_stream_keeps_nothing_but_still_checks_text() {
        let mut reassembly = Reassembly::new(Reading::CheckOnly);
        assert!(matches!(
            reassembly.frame(Message::Text("hello".into())),
            Ok(Inbound::Nothing)
        ));
        let steps = feed(
            &mut reassembly,
            vec![
                Item::FirstText(whole(&[b'x'; 1000])),
                Item::Last(whole(&[0xc3])),
            ],
        );
        assert!(matches!(steps[0], Ok(Inbound::Nothing)));
        assert!(matches!(steps[1], Err(Ending::InvalidText)));
    }
}
