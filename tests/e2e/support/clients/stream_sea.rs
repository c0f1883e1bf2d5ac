//! stream-sea's protocol on the channel (`/api/v1/streams`): JSON messages with an `action`
//! (`authenticate`, `subscribe` with an optional `groupId`, `unsubscribe`) and an `id` the
//! answer repeats (`success`, `payload`); deliveries are `{"action": "subscription",
//! "payload": EVENT}`. A raw client of ours, for what stream-sea's own library does not show
//! (consumer groups member by member, the protocol's errors).

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::url_stream::{assert_published_shape, UrlStream};
use super::{Closed, Ws};

/// How long any one message may take before the test fails.
pub const WITHIN: Duration = Duration::from_secs(20);

/// Whether `message` is a delivery (not an answer).
pub fn is_delivery(message: &Value) -> bool {
    message.get("success").is_none() && message["action"] == "subscription"
}

/// A stream-sea client: sends messages with increasing ids.
pub struct StreamSeaClient {
    /// The connection itself, for what the methods do not cover.
    pub ws: Ws,
    next_id: u64,
    /// Deliveries read while waiting for an answer.
    stashed: VecDeque<Value>,
}

impl StreamSeaClient {
    /// Connects to the channel of the stream server at `base` (`ws://host:port`).
    pub async fn connect(base: &str) -> Self {
        Self {
            ws: UrlStream::connect(&format!("{base}/api/v1/streams"))
                .await
                .ws,
            next_id: 1,
            stashed: VecDeque::new(),
        }
    }

    /// Sends `message` with the next id; returns the id.
    pub async fn send(&mut self, mut message: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        message["id"] = json!(id);
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .expect("send");
        id
    }

    /// The next message (stashed deliveries first); a delivery's payload is checked against
    /// the published schemas.
    pub async fn next(&mut self) -> Value {
        if let Some(message) = self.stashed.pop_front() {
            return message;
        }
        let message = self.read().await;
        if is_delivery(&message) {
            assert_published_shape(&message["payload"]);
        }
        message
    }

    /// The answer to request `id` (deliveries read meanwhile are kept for
    /// [`StreamSeaClient::next`]).
    pub async fn answer(&mut self, id: u64) -> Value {
        loop {
            let message = self.read().await;
            if is_delivery(&message) {
                assert_published_shape(&message["payload"]);
                self.stashed.push_back(message);
            } else if message["id"] == id || message["id"].is_null() {
                return message;
            } else {
                panic!("an answer to another request: {message}");
            }
        }
    }

    /// Authenticates with `payload` (`{"type": "basic", ...}`, `{"type": "jwt", ...}`);
    /// returns the answer.
    pub async fn authenticate(&mut self, payload: Value) -> Value {
        let id = self
            .send(json!({"action": "authenticate", "payload": payload}))
            .await;
        self.answer(id).await
    }

    /// Subscribes to `stream`, in consumer group `group` when given; returns the request's id
    /// and the answer.
    pub async fn subscribe(&mut self, stream: &str, group: Option<&str>) -> (u64, Value) {
        let mut message = json!({"action": "subscribe", "payload": stream});
        if let Some(group) = group {
            message["groupId"] = json!(group);
        }
        let id = self.send(message).await;
        (id, self.answer(id).await)
    }

    /// Reads until the server's close frame (see [`super::until_close`]).
    pub async fn until_close(&mut self, within: Duration) -> (Vec<Value>, Option<Closed>) {
        super::until_close(&mut self.ws, within, |_| {}).await
    }

    /// Fails the test unless nothing but pings and pongs arrives for `quiet`.
    pub async fn assert_silent(&mut self, quiet: Duration) {
        super::assert_silent(&mut self.ws, quiet).await
    }

    async fn read(&mut self) -> Value {
        super::next_json(&mut self.ws, WITHIN)
            .await
            .unwrap_or_else(|closed| panic!("the connection closed: {closed:?}"))
    }
}
