//! The few bytes of RFC 6455 framing the tools read by hand: the limit server's view of client
//! frames, and `wsload`'s raw drain of never-reading connections (read without a WebSocket
//! library, so that reading a ping does not make it write a pong into a socket the server has
//! already closed, which would hide the close frame behind).

/// Where a frame's parts are, once its header is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    /// FIN bit.
    pub fin: bool,
    /// Opcode (1 text, 2 binary, 8 close, 9 ping, 10 pong, 0 continuation).
    pub opcode: u8,
    /// Header length, masking key included.
    pub header_len: usize,
    /// Payload length.
    pub payload_len: usize,
    /// Masking key, for client frames.
    pub mask: Option<[u8; 4]>,
}

impl FrameHead {
    /// Header plus payload.
    pub fn total_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// Opcode of a close frame.
pub const OPCODE_CLOSE: u8 = 0x8;
/// Opcode of a text frame.
pub const OPCODE_TEXT: u8 = 0x1;

/// The head of the frame at the start of `buf`, or `None` until its header is all there.
pub fn parse_head(buf: &[u8]) -> Option<FrameHead> {
    let first = *buf.first()?;
    let second = *buf.get(1)?;
    let (payload_len, mut header_len) = match second & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (usize::try_from(u64::from_be_bytes(bytes)).ok()?, 10)
        }
        short => (usize::from(short), 2),
    };
    let mask = if second & 0x80 != 0 {
        let key: [u8; 4] = buf.get(header_len..header_len + 4)?.try_into().ok()?;
        header_len += 4;
        Some(key)
    } else {
        None
    };
    Some(FrameHead {
        fin: first & 0x80 != 0,
        opcode: first & 0x0f,
        header_len,
        payload_len,
        mask,
    })
}

/// The status code of a close frame's payload (`None`: the frame carries no code).
pub fn close_code(payload: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*payload.first()?, *payload.get(1)?]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_of_every_length_form() {
        assert_eq!(parse_head(&[0x88]), None);
        let close = parse_head(&[0x88, 0x82, 1, 2, 3, 4]).expect("masked close");
        assert_eq!(
            (close.opcode, close.header_len, close.payload_len),
            (8, 6, 2)
        );
        assert_eq!(close.mask, Some([1, 2, 3, 4]));
        assert_eq!(
            parse_head(&[0x8a, 0x80 | 126, 0, 200]),
            None,
            "mask key missing"
        );
        let pong = parse_head(&[0x8a, 0x80 | 126, 0, 200, 0, 0, 0, 0]).expect("head");
        assert_eq!(pong.total_len(), 208);
        let text = parse_head(&[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]).expect("head");
        assert_eq!(
            (text.fin, text.opcode, text.header_len, text.payload_len),
            (true, 1, 10, 65536)
        );
        assert_eq!(close_code(&[0x0f, 0xa0, b'{']), Some(4000));
        assert_eq!(close_code(&[]), None);
    }
}
