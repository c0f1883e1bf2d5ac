//! Inbound text checks the protocol requires of a one-way stream: whole messages must be
//! UTF-8 (RFC 6455 5.6, 8.1), even when they arrive in fragments, and even though the stream
//! ignores them.

use actix_ws::Item;

/// UTF-8 check of fragmented text messages from clients (RFC 6455 5.6: the whole message must
/// be UTF-8) without reassembling them: only the up to three bytes of a code point split
/// across fragments are carried over.
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
    use bytes::Bytes;

    fn run(items: Vec<Item>) -> bool {
        let mut text = FragmentedText::default();
        items.iter().all(|item| text.check(item))
    }

    #[test]
    fn code_points_split_across_fragments_are_valid_and_broken_ones_are_not() {
        let euro = "\u{20ac}".as_bytes(); // three bytes
        let whole = |b: &[u8]| Bytes::copy_from_slice(b);
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
}
