//! Raw HTTP/1.1 over TCP: requests written byte for byte (so that tests can send what no HTTP
//! library would), responses read by `Content-Length` or to the end of the connection.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a response may take before the test fails.
pub const WITHIN: Duration = Duration::from_secs(10);

/// The `Sec-WebSocket-Key` of every hand-made upgrade request (RFC 6455's sample nonce).
pub const WEBSOCKET_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// `GET path` over a fresh connection; returns status and body.
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    http_request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// `GET path` and parse the JSON body.
pub async fn get_json(addr: &str, path: &str) -> (u16, Value) {
    let (status, body) = http_get(addr, path).await;
    let json = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{path}: body is not JSON ({e}): {body}"));
    (status, json)
}

/// Sends a raw HTTP request; returns status and body. Reads until the body announced by
/// `Content-Length` is complete (or the connection ends), not until the server closes.
pub async fn http_request(addr: &str, request: &str) -> (u16, String) {
    http_request_bytes(addr, request.as_bytes()).await
}

/// Sends a raw HTTP request of any bytes (a gzip body); returns status and body (see
/// [`http_request`]).
pub async fn http_request_bytes(addr: &str, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut response = Vec::new();
    let mut chunk = [0u8; 8192];
    let complete = |response: &[u8]| {
        let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
            return false;
        };
        let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
        head.lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .is_some_and(|len| response.len() >= end + 4 + len)
    };
    while !complete(&response) {
        let n = tokio::time::timeout(WITHIN, stream.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
    }
    parse_http_response(&response)
}

/// The status and body of a raw HTTP response (status 0 when it has no status line).
pub fn parse_http_response(response: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A WebSocket upgrade request for `target` (path and query) to `host`, with `headers`
/// (each ending in `\r\n`) added.
pub fn upgrade_request(host: &str, target: &str, headers: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WEBSOCKET_KEY}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    )
}

/// The status and JSON body (`null` when the body is not JSON) the server answers to an
/// upgrade request for `target`: the refusals that come before any upgrade.
pub async fn upgrade_status(addr: &str, target: &str) -> (u16, Value) {
    let (status, body) = http_request(addr, &upgrade_request(addr, target, "")).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Writes `request` on a fresh connection and reads until the server ends it; fails the test
/// unless that happens in [`WITHIN`]. Returns the whole response as text.
pub async fn exchange(addr: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(WITHIN, stream.read_to_end(&mut out))
        .await
        .expect("in time")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes `request` on a fresh connection and returns what the server sent within `within`
/// (all of it when it ends the connection sooner).
pub async fn exchange_for(addr: &str, request: &str, within: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A connection from `source` (a loopback address) to `addr` with `head` written.
pub async fn open_from(source: &str, addr: &str, head: &[u8]) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{source}:0").parse().expect("source"))
        .expect("bind source");
    let mut stream = socket
        .connect(addr.parse().expect("addr"))
        .await
        .expect("connect");
    stream.write_all(head).await.expect("write");
    stream
}

/// One response on `stream`: status, lower-cased head, body (by `Content-Length`); `None`
/// when the connection ends before a whole one arrived. Fails the test when nothing whole
/// comes `within`.
pub async fn read_response(
    stream: &mut TcpStream,
    within: Duration,
) -> Option<(u16, String, String)> {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let status = head.split_whitespace().nth(1)?.parse().ok()?;
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                return Some((status, head, body));
            }
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .expect("a response in time")
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Whether the server closes `stream` within `within` (reads and discards until then).
pub async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}
