//! The URL streams: one stream per WebSocket, chosen and filtered by the URL
//! (`/api/v1/streams/valid_transactions?...`, `/api/v1/streams/valid_blocks?...`). The server
//! sends one JSON text message per event (or per block with `batch=block`), pings, and at the
//! end a close frame whose reason is a JSON object (`reason`, `last_height`, ...).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::{Error, Message};

use super::{websocket, Closed, Options, Ws};

/// Validators for every message shape the streams publish, from the same Rust types the
/// catalogue's JSON Schemas are generated from.
fn message_validators() -> &'static [jsonschema::Validator] {
    use planetmint_streams_model::event::{BlockBatchEvent, BlockEvent, TransactionEvent};
    static VALIDATORS: std::sync::OnceLock<Vec<jsonschema::Validator>> = std::sync::OnceLock::new();
    VALIDATORS.get_or_init(|| {
        [
            serde_json::to_value(schemars::schema_for!(TransactionEvent<'static>)),
            serde_json::to_value(schemars::schema_for!(BlockEvent<'static>)),
            serde_json::to_value(schemars::schema_for!(BlockBatchEvent<'static>)),
        ]
        .into_iter()
        .map(|schema| {
            jsonschema::validator_for(&schema.expect("schema JSON")).expect("valid schema")
        })
        .collect()
    })
}

/// Panics unless `message` validates against one of the published message schemas.
pub fn assert_published_shape(message: &Value) {
    assert!(
        message_validators().iter().any(|v| v.is_valid(message)),
        "message does not match any published JSON Schema: {message}"
    );
}

/// A subscriber of one URL stream.
pub struct UrlStream {
    /// The connection itself, for frames the methods do not cover (client pings, text).
    pub ws: Ws,
}

impl UrlStream {
    /// Subscribes at `url`; the test fails unless the upgrade succeeds.
    pub async fn connect(url: &str) -> Self {
        Self::connect_with(url, &Options::default())
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"))
    }

    /// Subscribes at `url` with `options`; the upgrade's error (an HTTP refusal carries the
    /// status and the JSON body) when it does not succeed.
    pub async fn connect_with(url: &str, options: &Options) -> Result<Self, Error> {
        Ok(Self {
            ws: websocket(url, options).await?,
        })
    }

    /// The next message as JSON, skipping pings and pongs; fails the test on a close, a
    /// protocol error or when nothing comes `within`. Every message is checked against the
    /// published JSON Schemas.
    pub async fn next_event(&mut self, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let message = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("a message in time")
                .expect("stream open")
                .expect("no protocol error");
            match message {
                Message::Text(text) => {
                    let message: Value = serde_json::from_str(text.as_str()).expect("JSON message");
                    assert_published_shape(&message);
                    return message;
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected message {other:?}"),
            }
        }
    }

    /// The next `n` messages (see [`UrlStream::next_event`]), all `within`.
    pub async fn take(&mut self, n: usize, within: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + within;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            out.push(self.next_event(left).await);
        }
        out
    }

    /// Reads until the server's close frame (fails the test when none comes `within`):
    /// the messages before it, each checked against the published schemas, and the frame
    /// (`None` when the connection ended without one).
    pub async fn until_close(&mut self, within: Duration) -> (Vec<Value>, Option<Closed>) {
        super::until_close(&mut self.ws, within, assert_published_shape).await
    }

    /// The next frame of any kind, or `None` when nothing comes `within`.
    pub async fn next_frame(&mut self, within: Duration) -> Option<Option<Result<Message, Error>>> {
        tokio::time::timeout(within, self.ws.next()).await.ok()
    }

    /// Waits until the server has sent something this subscriber has not read (see
    /// [`super::wait_unread`]), without reading it.
    pub async fn wait_unread(&self, within: Duration) {
        super::wait_unread(&self.ws, within).await
    }

    /// Fails the test unless nothing but pings and pongs arrives for `quiet`.
    pub async fn assert_silent(&mut self, quiet: Duration) {
        super::assert_silent(&mut self.ws, quiet).await
    }

    /// Sends a ping with `payload`.
    pub async fn ping(&mut self, payload: &[u8]) {
        self.ws
            .send(Message::Ping(payload.to_vec().into()))
            .await
            .expect("send ping");
    }

    /// Closes from the client's side and reads until the server has answered (2 s at most).
    pub async fn close(self) {
        close_ws(self.ws).await;
    }
}

/// Sends a close frame on `ws` and reads until the server has answered (2 s at most).
pub async fn close_ws(mut ws: Ws) {
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// A client that follows the delivery contract: it remembers the last height whose events it
/// has all seen, reconnects with `from_height` after any disconnect, and skips events of the
/// block in progress that it already had. Its `events` must equal the chain's, exactly once.
pub struct ExactlyOnceClient {
    /// The stream's URL (without `from_height`).
    pub url: String,
    /// The last height whose events it has all seen.
    pub complete: Option<u64>,
    /// Every event it accepted, in order.
    pub events: Vec<Value>,
    current: Option<u64>,
    current_ids: std::collections::HashSet<String>,
    /// How many times it connected again.
    pub reconnects: usize,
}

impl ExactlyOnceClient {
    /// A client of `url`, resuming after `from_height` (live when `None`).
    pub fn new(url: &str, from_height: Option<u64>) -> Self {
        Self {
            url: url.to_owned(),
            complete: from_height,
            events: Vec::new(),
            current: None,
            current_ids: Default::default(),
            reconnects: 0,
        }
    }

    fn target(&self) -> String {
        match self.complete {
            Some(h) => format!("{}?from_height={h}", self.url),
            None => self.url.clone(),
        }
    }

    fn accept(&mut self, event: Value) {
        let height = event["height"].as_u64().expect("height");
        if Some(height) != self.current {
            if let Some(done) = self.current {
                self.complete = Some(done);
            }
            self.current = Some(height);
            self.current_ids.clear();
        }
        let id = event["transaction_id"].as_str().expect("id").to_owned();
        if self.current_ids.insert(id) {
            self.events.push(event);
        }
    }

    /// Reads until `want` events are held or `within` passes, reconnecting as needed
    /// (`url` may change between connections through `url_now`).
    pub async fn run_until(
        &mut self,
        want: usize,
        within: Duration,
        url_now: impl Fn() -> Option<String>,
    ) {
        let deadline = tokio::time::Instant::now() + within;
        while self.events.len() < want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {want} events in time",
                self.events.len()
            );
            if let Some(url) = url_now() {
                self.url = url;
            }
            let connected = tokio::time::timeout(
                Duration::from_secs(2),
                tokio_tungstenite::connect_async(self.target()),
            )
            .await;
            let Ok(Ok((mut ws, _))) = connected else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            loop {
                if self.events.len() >= want {
                    let _ = ws.close(None).await;
                    return;
                }
                match tokio::time::timeout_at(deadline, ws.next()).await {
                    Ok(Some(Ok(Message::Text(text)))) => {
                        self.accept(serde_json::from_str(text.as_str()).expect("JSON"))
                    }
                    Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) => break,
                    Ok(Some(Ok(_))) => {}
                    Err(_) => panic!("only {} of {want} events in time", self.events.len()),
                }
            }
            self.reconnects += 1;
            // The block in progress may have been cut: everything after `complete` comes
            // again, and what was already seen of block `current` is skipped.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
