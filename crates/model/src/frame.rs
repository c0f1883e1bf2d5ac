//! Server-to-client WebSocket frames (RFC 6455 section 5.2), encoded once and shared.
//!
//! Frames a server sends are never masked, so the bytes of a frame are the same for every
//! subscriber: a block's messages are framed once and the same buffer goes to every socket.

/// Text frame opcode.
pub const OPCODE_TEXT: u8 = 0x1;

/// Appends one final (FIN) unmasked frame with `opcode` and `payload` to `out`.
pub fn encode_frame(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x80 | (opcode & 0x0f));
    let len = payload.len();
    if len < 126 {
        out.push(len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&len16.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// Length of the header [`encode_frame`] writes for a payload of `len` bytes.
pub fn header_len(len: usize) -> usize {
    if len < 126 {
        2
    } else if len <= usize::from(u16::MAX) {
        4
    } else {
        10
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_use_the_shortest_form() {
        for (len, header) in [
            (0usize, 2usize),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
        ] {
            let payload = vec![b'x'; len];
            let mut out = Vec::new();
            encode_frame(OPCODE_TEXT, &payload, &mut out);
            assert_eq!(out.len(), header + len, "payload of {len}");
            assert_eq!(header_len(len), header);
            assert_eq!(out[0], 0x81, "FIN + text");
            assert_eq!(out[1] & 0x80, 0, "not masked");
        }
        let mut out = Vec::new();
        encode_frame(OPCODE_TEXT, &[0; 300], &mut out);
        assert_eq!(&out[..4], &[0x81, 126, 1, 44]);
    }
}
