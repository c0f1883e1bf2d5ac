//! Server-to-client WebSocket frames (RFC 6455 section 5.2), encoded once and shared.
//!
//! Frames a server sends are never masked, so the bytes of a frame are the same for every
//! subscriber: a block's messages are framed once and the same buffer goes to every socket.

/// Text frame opcode.
pub const OPCODE_TEXT: u8 = 0x1;

/// Appends one final (FIN) unmasked frame with `opcode` and `payload` to `out`.
pub fn encode_frame(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    encode_frame_of(opcode, &[payload], out);
}

/// Appends one final unmasked frame whose payload is `parts` back to back (an envelope
/// around a shared message is framed without first copying it into a buffer of its own).
pub fn encode_frame_of(opcode: u8, parts: &[&[u8]], out: &mut Vec<u8>) {
    let len: usize = parts.iter().map(|part| part.len()).sum();
    out.reserve(header_len(len) + len);
    out.push(0x80 | (opcode & 0x0f));
    if len < 126 {
        out.push(len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&len16.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    for part in parts {
        out.extend_from_slice(part);
    }
}

/// The payloads of whole unmasked frames written back to back by [`encode_frame`]; stops at
/// anything it cannot read (never reads past the end).
pub fn payloads(mut frames: &[u8]) -> impl Iterator<Item = &[u8]> {
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

    #[test]
    fn a_frame_of_parts_is_the_frame_of_their_concatenation() {
        for sizes in [[1usize, 2, 3], [60, 60, 10], [100, 70_000, 5]] {
            let parts: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![b'a'; n]).collect();
            let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            let mut joined = Vec::new();
            encode_frame(OPCODE_TEXT, &parts.concat(), &mut joined);
            let mut of_parts = Vec::new();
            encode_frame_of(OPCODE_TEXT, &refs, &mut of_parts);
            assert_eq!(joined, of_parts);
        }
    }

    #[test]
    fn payloads_walk_every_frame_and_stop_at_a_truncated_one() {
        let mut frames = Vec::new();
        for n in [10usize, 300, 70_000] {
            encode_frame(OPCODE_TEXT, &vec![b'x'; n], &mut frames);
        }
        let lens: Vec<usize> = payloads(&frames).map(<[u8]>::len).collect();
        assert_eq!(lens, vec![10, 300, 70_000]);
        for cut in [1, 5, 14, 300, frames.len() - 1] {
            assert!(payloads(&frames[..cut]).count() < 3, "cut at {cut}");
        }
    }
}
