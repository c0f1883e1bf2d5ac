//! The load client's Server-Sent Events reader: `GET` a stream URL with
//! `Accept: text/event-stream` over a plain TCP connection, read the response's body
//! (chunked or not) and cut it into events (`event:`, `id:`, `data:` lines, a blank line ends
//! an event; `:` lines are comments), as the WHATWG HTML standard's event-stream
//! interpretation does. Enough HTTP/1.1 for a loopback benchmark: one request per connection,
//! no redirects, no TLS.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::loopback::WsTarget;

/// Largest response head accepted.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest single line (event field) accepted; past it the stream is an error.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 * 1024;

/// Why a Server-Sent Events stream could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum SseError {
    /// The socket failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The response head is not HTTP/1.x or too long.
    #[error("bad response head: {0}")]
    BadHead(String),
    /// The server answered something other than 200.
    #[error("HTTP {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The chunked body is malformed.
    #[error("bad chunked body: {0}")]
    BadChunk(String),
    /// A line is longer than [`MAX_LINE_BYTES`].
    #[error("an event-stream line is longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong,
}

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// The `event:` field (`"message"` when absent).
    pub event: String,
    /// The `id:` field of this event, if it had one.
    pub id: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Cuts an event-stream body into events.
#[derive(Debug, Default)]
pub struct EventParser {
    buf: BytesMut,
    event: Option<String>,
    id: Option<String>,
    data: String,
    has_data: bool,
    /// Comment lines seen (`: keep-alive`).
    pub comments: u64,
}

impl EventParser {
    /// Appends body bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event in what was fed, if any.
    pub fn next_event(&mut self) -> Result<Option<Event>, SseError> {
        loop {
            let Some(end) = self.buf.iter().position(|&b| b == b'\n') else {
                if self.buf.len() > MAX_LINE_BYTES {
                    return Err(SseError::LineTooLong);
                }
                return Ok(None);
            };
            let mut line = self.buf.split_to(end + 1);
            line.truncate(end);
            if line.last() == Some(&b'\r') {
                line.truncate(end - 1);
            }
            if line.is_empty() {
                // A blank line dispatches the event (none when no data line came).
                let event = self.event.take();
                let id = self.id.take();
                if !std::mem::take(&mut self.has_data) {
                    continue;
                }
                return Ok(Some(Event {
                    event: event.unwrap_or_else(|| "message".to_owned()),
                    id,
                    data: std::mem::take(&mut self.data),
                }));
            }
            if line[0] == b':' {
                self.comments += 1;
                continue;
            }
            let text = String::from_utf8_lossy(&line);
            let (field, value) = match text.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (text.as_ref(), ""),
            };
            match field {
                "event" => self.event = Some(value.to_owned()),
                "id" => self.id = Some(value.to_owned()),
                "data" => {
                    if self.has_data {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                    self.has_data = true;
                }
                _ => {} // `retry` and unknown fields
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading a chunk-size line.
    Size,
    /// Inside a chunk: this many data bytes left.
    Data(usize),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// The last chunk was read.
    Done,
}

/// Decodes a `Transfer-Encoding: chunked` body as it arrives.
#[derive(Debug)]
pub struct Chunked {
    state: ChunkState,
}

impl Default for Chunked {
    fn default() -> Self {
        Self {
            state: ChunkState::Size,
        }
    }
}

impl Chunked {
    /// Moves the data of every whole or partial chunk in `input` to `out`, leaving what is not
    /// yet decodable in `input`. Returns whether the body ended (the zero-size chunk).
    pub fn decode(
        &mut self,
        input: &mut BytesMut,
        out: &mut EventParser,
    ) -> Result<bool, SseError> {
        loop {
            match self.state {
                ChunkState::Done => return Ok(true),
                ChunkState::Size => {
                    let Some(end) = input.windows(2).position(|w| w == b"\r\n") else {
                        if input.len() > 1024 {
                            return Err(SseError::BadChunk("chunk-size line too long".into()));
                        }
                        return Ok(false);
                    };
                    let line = std::str::from_utf8(&input[..end])
                        .map_err(|_| SseError::BadChunk("chunk size not ASCII".into()))?;
                    let hex = line.split(';').next().unwrap_or_default().trim();
                    let size = usize::from_str_radix(hex, 16)
                        .map_err(|_| SseError::BadChunk(format!("chunk size {hex:?}")))?;
                    input.advance(end + 2);
                    self.state = if size == 0 {
                        ChunkState::Done
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if input.is_empty() {
                        return Ok(false);
                    }
                    let take = left.min(input.len());
                    out.feed(&input[..take]);
                    input.advance(take);
                    self.state = if take == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - take)
                    };
                }
                ChunkState::DataEnd => {
                    if input.len() < 2 {
                        return Ok(false);
                    }
                    if &input[..2] != b"\r\n" {
                        return Err(SseError::BadChunk("no CRLF after chunk data".into()));
                    }
                    input.advance(2);
                    self.state = ChunkState::Size;
                }
            }
        }
    }
}

/// An open Server-Sent Events response.
#[derive(Debug)]
pub struct SseStream {
    stream: TcpStream,
    raw: BytesMut,
    chunked: Option<Chunked>,
    parser: EventParser,
    ended: bool,
}

/// The request `open` sends: `GET` with `Accept: text/event-stream`.
pub fn request(target: &WsTarget) -> String {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nUser-Agent: wsload\r\n\r\n",
        target.path_and_query, target.host
    )
}

impl SseStream {
    /// Sends the request on a connected socket and reads the response head: a 200 leaves the
    /// stream ready for [`SseStream::next_event`]; anything else is [`SseError::Status`].
    pub async fn open(mut stream: TcpStream, target: &WsTarget) -> Result<Self, SseError> {
        stream.write_all(request(target).as_bytes()).await?;
        let mut raw = BytesMut::with_capacity(READ_CHUNK);
        let head_len = loop {
            if let Some(pos) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            if raw.len() > MAX_HEAD_BYTES {
                return Err(SseError::BadHead("longer than 16 KiB".into()));
            }
            if stream.read_buf(&mut raw).await? == 0 {
                return Err(SseError::BadHead(
                    "connection closed before the head".into(),
                ));
            }
        };
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        response
            .parse(&raw[..head_len])
            .map_err(|e| SseError::BadHead(e.to_string()))?;
        let status = response.code.unwrap_or(0);
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
        };
        let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        raw.advance(head_len);
        if status != 200 {
            let body = String::from_utf8_lossy(&raw[..raw.len().min(200)]).into_owned();
            return Err(SseError::Status { status, body });
        }
        let mut sse = Self {
            stream,
            raw,
            chunked: chunked.then(Chunked::default),
            parser: EventParser::default(),
            ended: false,
        };
        sse.take_raw()?;
        Ok(sse)
    }

    /// Moves what was read into the event parser (through the chunked decoder if needed).
    fn take_raw(&mut self) -> Result<(), SseError> {
        match self.chunked.as_mut() {
            Some(chunked) => {
                if chunked.decode(&mut self.raw, &mut self.parser)? {
                    self.ended = true;
                }
            }
            None => {
                self.parser.feed(&self.raw);
                self.raw.clear();
            }
        }
        Ok(())
    }

    /// The next event; `None` once the response or the connection ended.
    pub async fn next_event(&mut self) -> Result<Option<Event>, SseError> {
        loop {
            if let Some(event) = self.parser.next_event()? {
                return Ok(Some(event));
            }
            if self.ended {
                return Ok(None);
            }
            self.raw.reserve(READ_CHUNK);
            if self.stream.read_buf(&mut self.raw).await? == 0 {
                return Ok(None);
            }
            self.take_raw()?;
        }
    }

    /// Comment lines (keep-alives) seen so far.
    pub fn comments(&self) -> u64 {
        self.parser.comments
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(parser: &mut EventParser) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(event) = parser.next_event().expect("parse") {
            out.push(event);
        }
        out
    }

    #[test]
    fn events_are_cut_at_blank_lines() {
        let mut p = EventParser::default();
        p.feed(b": keep-alive\n\nevent: valid_transactions\ndata: {\"a\":1}\n\n");
        p.feed(b"event: valid_transactions\nid: 7\ndata: {\"a\":2}\n");
        assert_eq!(
            events(&mut p),
            vec![Event {
                event: "valid_transactions".into(),
                id: None,
                data: "{\"a\":1}".into()
            }]
        );
        assert_eq!(p.comments, 1);
        p.feed(b"\r\ndata:x\r\ndata: y\r\n\r\nid: 9\n\n");
        assert_eq!(
            events(&mut p),
            vec![
                Event {
                    event: "valid_transactions".into(),
                    id: Some("7".into()),
                    data: "{\"a\":2}".into()
                },
                Event {
                    event: "message".into(),
                    id: None,
                    data: "x\ny".into()
                },
            ],
            "an event without data is not dispatched"
        );
    }

    #[test]
    fn chunked_bodies_decode_across_reads() {
        let body = b"event: close\nid: 4\ndata: {\"reason\":\"too slow\",\"last_height\":4}\n\n";
        let mut wire = Vec::new();
        for part in body.chunks(7) {
            wire.extend_from_slice(format!("{:x};ext=1\r\n", part.len()).as_bytes());
            wire.extend_from_slice(part);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        let mut decoder = Chunked::default();
        let mut parser = EventParser::default();
        let mut input = BytesMut::new();
        let mut ended = false;
        for byte in wire.chunks(3) {
            input.extend_from_slice(byte);
            ended = decoder.decode(&mut input, &mut parser).expect("decode");
        }
        assert!(ended);
        let got = events(&mut parser);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].event, "close");
        assert_eq!(got[0].id.as_deref(), Some("4"));
        assert!(got[0].data.contains("too slow"));

        let mut bad = BytesMut::from(&b"zz\r\n"[..]);
        assert!(matches!(
            Chunked::default().decode(&mut bad, &mut parser),
            Err(SseError::BadChunk(_))
        ));
    }
}
