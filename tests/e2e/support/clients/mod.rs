//! One client per way of talking to the node, shared by every test: a test never carries a
//! protocol client of its own.
//!
//! - [`http`]: raw HTTP/1.1 over TCP (the API, refusals before an upgrade, the proxy).
//! - [`url_stream`]: the URL streams (`/api/v1/streams/valid_transactions`, `.../valid_blocks`):
//!   connect with options, the next event, the close frame with its JSON reason.
//! - [`json_rpc`]: the JSON-RPC channel (`/api/v1/streams`): calls, subscriptions and their
//!   notifications, the closing notice.
//! - [`stream_sea`]: stream-sea's protocol on the channel (`authenticate`, `subscribe` with
//!   an optional consumer group, deliveries with their `payload`), a raw client of ours beside
//!   stream-sea's own library (`tests/clients/stream_sea.py`).
//! - [`raw_websocket`]: hand-made WebSocket frames over TCP, for what a well-behaved client
//!   library cannot send (masking faults, fragmented pings, floods) and for reading the
//!   server's frames byte for byte.
//!
//! A new way in gets its own file here, named after the protocol (`sse.rs`, `ndjson.rs`,
//! `stream_sea.rs`, ...), with the same shape: a client struct with `connect`, the next
//! message as JSON, and how the stream ended. The clients that are not ours (Python
//! `websockets`, kosoku, Chromium) live in `tests/clients/` and their tests.

pub mod http;
pub mod json_rpc;
pub mod raw_websocket;
pub mod stream_sea;
pub mod url_stream;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// A WebSocket client connection (plain or TLS).
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a WebSocket upgrade may take before the test fails.
pub const CONNECT_WITHIN: Duration = Duration::from_secs(10);

/// How a WebSocket connection is opened.
#[derive(Clone, Default)]
pub struct Options {
    /// TLS settings for `wss://` (trusted roots, client certificate); the platform's roots
    /// when `None`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Extra request headers (e.g. `Origin`).
    pub headers: Vec<(String, String)>,
}

impl Options {
    /// With the TLS settings `config`.
    pub fn tls(config: Arc<rustls::ClientConfig>) -> Self {
        Self {
            tls: Some(config),
            ..Self::default()
        }
    }
}

/// Opens a WebSocket to `url` (any server: ours, or Chromium's DevTools); the upgrade's error
/// (an HTTP refusal with its status and body, a TLS failure) when it does not succeed in
/// [`CONNECT_WITHIN`].
pub async fn websocket(
    url: &str,
    options: &Options,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut request = url.into_client_request()?;
    for (name, value) in &options.headers {
        let name: tokio_tungstenite::tungstenite::http::HeaderName =
            name.parse().expect("a header name");
        let value = HeaderValue::from_str(value).expect("a header value");
        request.headers_mut().insert(name, value);
    }
    let connector = options.tls.clone().map(Connector::Rustls);
    let connecting =
        tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector);
    let (ws, _) = tokio::time::timeout(CONNECT_WITHIN, connecting)
        .await
        .unwrap_or_else(|_| panic!("{url}: no WebSocket upgrade in {CONNECT_WITHIN:?}"))?;
    Ok(ws)
}

/// The next text message on `ws` as JSON, skipping every other frame (pings, pongs); `Err`
/// once the server closed (with its close frame, if it sent one). Fails the test when
/// nothing comes `within`. For the protocols whose messages are JSON texts (JSON-RPC,
/// stream-sea); the URL streams check more ([`url_stream::UrlStream::next_event`]).
pub async fn next_json(ws: &mut Ws, within: Duration) -> Result<Value, Option<Closed>> {
    loop {
        let message = tokio::time::timeout(within, ws.next())
            .await
            .expect("a message in time");
        match message {
            Some(Ok(Message::Text(text))) => {
                return Ok(serde_json::from_str(text.as_str()).expect("JSON"))
            }
            Some(Ok(Message::Close(frame))) => return Err(frame.map(Closed::of)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(None),
        }
    }
}

/// Reads `ws` until the server's close frame (fails the test when none comes `within`): the
/// JSON messages before it, each given to `check` first, and the frame (`None` when the
/// connection ended without one).
pub async fn until_close(
    ws: &mut Ws,
    within: Duration,
    check: impl Fn(&Value),
) -> (Vec<Value>, Option<Closed>) {
    let deadline = tokio::time::Instant::now() + within;
    let mut messages = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Text(text))) => {
                let message: Value = serde_json::from_str(text.as_str()).expect("JSON");
                check(&message);
                messages.push(message);
            }
            Some(Ok(Message::Close(frame))) => return (messages, frame.map(Closed::of)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (messages, None),
        }
    }
}

/// Fails the test unless nothing but pings and pongs arrives on `ws` for `quiet`.
pub async fn assert_silent(ws: &mut Ws, quiet: Duration) {
    let deadline = tokio::time::Instant::now() + quiet;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(other) => panic!("expected silence, got {other:?}"),
        }
    }
}

/// Waits until the server has sent on `ws` bytes its client has not read yet, looking at the
/// socket without reading from it: for tests of a client that stops reading. Fails the test
/// when nothing comes `within` or the connection ends instead.
pub async fn wait_unread(ws: &Ws, within: Duration) {
    let MaybeTlsStream::Plain(tcp) = ws.get_ref() else {
        panic!("wait_unread looks at plain TCP connections only");
    };
    let mut byte = [0u8; 1];
    let peeked = tokio::time::timeout(within, tcp.peek(&mut byte))
        .await
        .expect("data from the server in time")
        .expect("peek at the socket");
    assert_eq!(peeked, 1, "the server ended the connection instead");
}

/// The close frame a server sent: its code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The close code.
    pub code: u16,
    /// The reason, as sent.
    pub reason: String,
}

impl Closed {
    /// The reason as JSON (our server's reasons are JSON objects).
    pub fn reason_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.reason)
            .unwrap_or_else(|e| panic!("close reason is not JSON ({e}): {}", self.reason))
    }

    fn of(frame: tokio_tungstenite::tungstenite::protocol::CloseFrame) -> Self {
        Self {
            code: u16::from(frame.code),
            reason: frame.reason.to_string(),
        }
    }
}
