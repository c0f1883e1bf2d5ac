//! WebSocket frames by hand over TCP (RFC 6455 section 5): an upgrade, masked client frames of
//! any shape (faults included), and the server's frames parsed from the bytes as they arrive.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::http::upgrade_request;

/// Opens a raw TCP connection and sends a WebSocket upgrade for `path`; returns the socket
/// after the 101 response.
pub async fn raw_upgrade(addr: &str, path: &str) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    socket
        .write_all(upgrade_request(addr, path, "").as_bytes())
        .await
        .expect("handshake");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = socket.read(&mut byte).await.expect("read");
        assert_eq!(n, 1, "connection closed during the handshake");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    socket
}

/// A masked client frame (RFC 6455 5.3).
pub fn client_frame(opcode: u8, payload: &[u8], fin: bool) -> Vec<u8> {
    let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// One frame a server sent (servers never mask).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFrame {
    /// The first byte: FIN, reserved bits and opcode (`0x81` a final text frame, `0x88` a
    /// close, `0x89` a ping, `0x8a` a pong).
    pub first: u8,
    /// The payload.
    pub payload: Vec<u8>,
}

impl ServerFrame {
    /// The opcode.
    pub fn opcode(&self) -> u8 {
        self.first & 0x0f
    }

    /// A close frame's code and reason (1005 when it carries no code).
    pub fn close(&self) -> Option<(u16, String)> {
        if self.opcode() != 0x8 {
            return None;
        }
        if self.payload.len() < 2 {
            return Some((1005, String::new()));
        }
        Some((
            u16::from_be_bytes([self.payload[0], self.payload[1]]),
            String::from_utf8_lossy(&self.payload[2..]).into_owned(),
        ))
    }
}

/// The whole frames at the start of `bytes`, and how many bytes they take.
pub fn server_frames(bytes: &[u8]) -> (Vec<ServerFrame>, usize) {
    let mut frames = Vec::new();
    let mut pos = 0;
    while bytes.len() >= pos + 2 {
        let (len, header) = match bytes[pos + 1] & 0x7f {
            126 if bytes.len() >= pos + 4 => (
                usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]])),
                4,
            ),
            127 if bytes.len() >= pos + 10 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&bytes[pos + 2..pos + 10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            126 | 127 => break,
            n => (usize::from(n), 2),
        };
        if bytes.len() < pos + header + len {
            break;
        }
        frames.push(ServerFrame {
            first: bytes[pos],
            payload: bytes[pos + header..pos + header + len].to_vec(),
        });
        pos += header + len;
    }
    (frames, pos)
}

/// Reads server frames until a close frame; returns its code and reason (`None` when the
/// connection ends, or nothing comes `within`, first).
pub async fn read_close_frame(socket: &mut TcpStream, within: Duration) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (frames, _) = server_frames(&buf);
        if let Some(close) = frames.iter().find_map(ServerFrame::close) {
            return Some(close);
        }
        match tokio::time::timeout_at(deadline, socket.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
