//! The JSON-RPC channel (`/api/v1/streams`): one WebSocket carrying requests (`authenticate`,
//! `subscribe`, `update`, `unsubscribe`, `describe`), their answers, `subscription`
//! notifications (`params.subscription`, `params.result`) and, before the server closes, a
//! `closing` notification (`params.code`, `params.reason`, `params.last_heights`).

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{Error, Message};

use super::{websocket, Closed, Options, Ws};

/// How long any one message may take before the test fails.
pub const WITHIN: Duration = Duration::from_secs(30);

/// A JSON-RPC client: requests get increasing ids; the notifications read meanwhile are kept,
/// in order.
pub struct RpcClient {
    /// The connection itself, for what the methods do not cover.
    pub ws: Ws,
    next_id: u64,
    notifications: Vec<Value>,
}

impl RpcClient {
    /// Connects to the channel at `url`; the test fails unless the upgrade succeeds.
    pub async fn connect(url: &str) -> Self {
        Self::connect_with(url, &Options::default())
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"))
    }

    /// Connects to the channel at `url` with `options`; the upgrade's error when refused.
    pub async fn connect_with(url: &str, options: &Options) -> Result<Self, Error> {
        Ok(Self {
            ws: websocket(url, options).await?,
            next_id: 1,
            notifications: Vec::new(),
        })
    }

    /// Sends `text` as it is (malformed requests included).
    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("send");
    }

    /// Queues `request` without flushing (see [`RpcClient::flush`]): for many requests in one
    /// write.
    pub async fn feed(&mut self, request: &Value) {
        self.ws
            .feed(Message::Text(request.to_string().into()))
            .await
            .expect("send");
    }

    /// Writes what was fed.
    pub async fn flush(&mut self) {
        self.ws.flush().await.expect("send");
    }

    /// The next text message as JSON, skipping pings and pongs; `Err` once the server closed
    /// (with its close frame, if it sent one). Fails the test when nothing comes in
    /// [`WITHIN`].
    pub async fn next(&mut self) -> Result<Value, Option<Closed>> {
        super::next_json(&mut self.ws, WITHIN).await
    }

    /// The next answer (the notifications before it are kept).
    pub async fn answer(&mut self) -> Value {
        loop {
            let message = self.next().await.expect("connection open");
            if message["method"] == "subscription" {
                self.notifications.push(message);
            } else {
                return message;
            }
        }
    }

    /// Calls `method` with `params` and returns the answer (`result` or `error`), checking
    /// that it answers this request.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_text(&request.to_string()).await;
        let answer = self.answer().await;
        assert_eq!(answer["id"], id, "{answer}");
        assert_eq!(answer["jsonrpc"], "2.0");
        answer
    }

    /// Subscribes with `params`; the test fails unless the server accepts. Returns the
    /// subscription's id.
    pub async fn subscribe(&mut self, params: Value) -> String {
        let answer = self.call("subscribe", params).await;
        answer["result"]
            .as_str()
            .unwrap_or_else(|| panic!("subscribed: {answer}"))
            .to_owned()
    }

    /// Reads notifications until `done` holds for the kept ones (every message meanwhile must
    /// be a `subscription` notification).
    pub async fn until(&mut self, done: impl Fn(&[Value]) -> bool) {
        while !done(&self.notifications) {
            let message = self.next().await.expect("connection open");
            assert_eq!(message["method"], "subscription", "{message}");
            self.notifications.push(message);
        }
    }

    /// The results of the next `n` notifications, each of which must be for `subscription`.
    pub async fn next_results(&mut self, subscription: &str, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let notification = self.next().await.expect("connection open");
            assert_eq!(notification["method"], "subscription", "{notification}");
            assert_eq!(
                notification["params"]["subscription"], subscription,
                "{notification}"
            );
            out.push(notification["params"]["result"].clone());
            self.notifications.push(notification);
        }
        out
    }

    /// Reads up to the `closing` notification and returns it (the notifications before it
    /// are kept).
    pub async fn closing(&mut self) -> Value {
        loop {
            let message = self.next().await.expect("the closing notification");
            if message["method"] == "closing" {
                return message;
            }
            self.notifications.push(message);
        }
    }

    /// The results of subscription `id` kept so far, in order.
    pub fn results(&self, id: &str) -> Vec<Value> {
        self.notifications
            .iter()
            .filter(|n| n["params"]["subscription"] == id)
            .map(|n| n["params"]["result"].clone())
            .collect()
    }

    /// Waits until the server has sent something this client has not read (see
    /// [`super::wait_unread`]), without reading it.
    pub async fn wait_unread(&self, within: Duration) {
        super::wait_unread(&self.ws, within).await
    }

    /// Closes from the client's side and reads until the server has answered (2 s at most).
    pub async fn close(self) {
        super::url_stream::close_ws(self.ws).await;
    }
}

/// The `error.code` of an answer; fails the test when it is not an error.
pub fn error_code(answer: &Value) -> i64 {
    answer["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("an error: {answer}"))
}
