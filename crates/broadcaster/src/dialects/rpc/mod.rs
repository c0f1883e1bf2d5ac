//! The one-socket JSON-RPC stream channel as a dialect: `ws(s)://<host>:9985/api/v1/streams`,
//! many subscriptions over one WebSocket, controlled by JSON-RPC 2.0 requests, events as
//! `subscription` notifications. The URL streams are unchanged beside it.
//!
//! - [`protocol`]: the messages, the request parser and the error codes;
//! - one file per method, each turning its request into operations of the
//!   [`Connection`](crate::engine::Connection) and answering: `authenticate`, `subscribe`,
//!   `unsubscribe`, `update`, `describe`;
//! - [`limits`]: the per-connection limits and their defaults;
//! - this file: dispatch, what the channel says when a subscription's start ends, and the
//!   close (a `closing` notification with every subscription's `last_heights`, then the close
//!   frame).
//!
//! Answers go through the connection's queue, so they are ordered with the notifications: a
//! `subscribe` answer comes before the subscription's first notification, an `unsubscribe`
//! answer after its last, an `update` answer after every notification filtered with the old
//! filters.

mod authenticate;
mod describe;
pub mod limits;
pub mod protocol;
mod subscribe;
mod unsubscribe;
mod update;

use std::sync::Arc;

use serde_json::{json, Value};

use crate::config::StreamsConfig;
use crate::engine::connection::{Access, EndReason, SubscribeRefusal};
use crate::engine::{
    ClientMessage, Connection, Dialect, Ending, Farewell, LastHeights, SubscriptionEvent,
};
use crate::envelope::TextFrameEnvelope;
use crate::metrics::BroadcastMetrics;
use protocol::{
    error_message, notification_message, parse_request, result_message, Call, Method, RpcError,
    CLOSING_METHOD, HISTORY_UNAVAILABLE, INVALID_REQUEST, LIMIT_REACHED, METHOD_NOT_FOUND,
    NOTIFICATION_METHOD, NOT_AUTHORIZED, SUBSCRIPTION_ERROR_METHOD,
};

/// Path of the JSON-RPC channel on the stream port.
pub const RPC_PATH: &str = crate::http::STREAMS_PATH;

/// Longest reason a close frame can carry (RFC 6455 5.5: a 125-byte payload, 2 of them the
/// code). A longer `last_heights` is only in the `closing` notification sent before it.
const MAX_CLOSE_REASON: usize = 123;

/// The JSON-RPC dialect of a connection.
#[derive(Debug, Default)]
pub(crate) struct JsonRpc;

/// The notification each message of subscription `key` is wrapped in:
/// `{"jsonrpc":"2.0","method":"subscription","params":{"subscription":"<key>","result":<message>}}`.
pub fn envelope(key: u64) -> TextFrameEnvelope {
    let prefix = format!(
        r#"{{"jsonrpc":"2.0","method":"{NOTIFICATION_METHOD}","params":{{"subscription":"{key}","result":"#
    );
    TextFrameEnvelope::new(prefix.into_bytes(), b"}}")
}

/// Counts a request by method and answer.
fn count(metrics: &BroadcastMetrics, method: Option<Method>, code: Option<i64>) {
    let code = code.map_or_else(|| "ok".to_owned(), |c| c.to_string());
    metrics
        .rpc_requests
        .with_label_values(&[method.map_or("none", Method::name), &code])
        .inc();
}

/// Answers request `id` with `result`.
fn answer(conn: &Connection, method: Method, id: &Value, result: Value) {
    count(conn.metrics(), Some(method), None);
    conn.reply(&result_message(id, result));
}

/// Answers request `id` with `error`.
fn answer_error(conn: &Connection, method: Option<Method>, id: &Value, error: &RpcError) {
    count(conn.metrics(), method, Some(error.code));
    conn.reply(&error_message(id, error));
}

/// The error for a refused subscribe (or update).
fn refusal_error(refusal: &SubscribeRefusal) -> RpcError {
    match refusal {
        SubscribeRefusal::Subscriptions { max } => RpcError::new(
            LIMIT_REACHED,
            format!("at most {max} subscriptions per connection (streams.rpc_max_subscriptions)"),
        )
        .with_data(json!({"limit": "subscriptions", "max": max})),
        SubscribeRefusal::FilterValues { max } => RpcError::new(
            LIMIT_REACHED,
            format!("at most {max} filter values per connection (streams.rpc_max_filter_values)"),
        )
        .with_data(json!({"limit": "filter_values", "max": max})),
        SubscribeRefusal::Address(refusal) => {
            let limit = format!("{}_per_address", refusal.label());
            RpcError::new(LIMIT_REACHED, refusal.to_string())
                .with_data(json!({"limit": limit, "max": refusal.max()}))
        }
        SubscribeRefusal::NotAllowed(err) => authenticate::auth_error(err),
        SubscribeRefusal::GroupFull { max } => RpcError::new(
            LIMIT_REACHED,
            format!("a consumer group has at most {max} members"),
        )
        .with_data(json!({"limit": "group_members", "max": max})),
        SubscribeRefusal::Replays { max } => RpcError::new(
            LIMIT_REACHED,
            format!("at most {max} subscriptions from one address may replay history from the database at once (streams.replay_max_per_ip); retry when they have caught up"),
        )
        .with_data(json!({"limit": "replays_per_address", "max": max})),
    }
}

/// The subscription key that JSON-RPC id `id` names on this connection.
fn lookup(conn: &Connection, id: &str) -> Result<u64, RpcError> {
    id.parse::<u64>()
        .ok()
        .filter(|key| key.to_string() == id && conn.contains(*key))
        .ok_or_else(|| {
            RpcError::invalid_params("subscription", "no such subscription on this connection")
        })
}

impl JsonRpc {
    /// Answers a request sent before `authenticate` in signed mode with -32001; the
    /// connection then ends with 1008.
    fn refuse_unauthenticated(conn: &Connection, method: Option<Method>, id: &Value) -> Ending {
        let error = RpcError::new(
            NOT_AUTHORIZED,
            "this server requires a signed stream token: send authenticate first",
        )
        .with_data(json!({"reason": "missing_token"}));
        answer_error(conn, method, id, &error);
        Ending::NotAuthenticated
    }

    /// Handles one request; `Err` ends the connection.
    fn on_request(conn: &mut Connection, text: &[u8]) -> Result<(), Ending> {
        let unauthenticated = matches!(conn.access(), Access::Required);
        let request = match parse_request(text) {
            Ok(request) => request,
            Err(refused) => {
                // Before `authenticate`, any other method (an unknown one too) ends the
                // connection; a request too malformed to name a method does not.
                let other_method = refused.error.code == METHOD_NOT_FOUND
                    || refused.method.is_some_and(|m| m != Method::Authenticate);
                if unauthenticated && other_method {
                    return Err(Self::refuse_unauthenticated(
                        conn,
                        refused.method,
                        &refused.id,
                    ));
                }
                answer_error(conn, refused.method, &refused.id, &refused.error);
                return Ok(());
            }
        };
        let method = request.call.method();
        let id = request.id;
        if unauthenticated && method != Method::Authenticate {
            return Err(Self::refuse_unauthenticated(conn, Some(method), &id));
        }
        let outcome = match request.call {
            Call::Authenticate(credential) => authenticate::run(conn, &credential).map(Some),
            Call::Subscribe(subscription) => subscribe::run(conn, &id, subscription).map(|()| None),
            Call::Unsubscribe { subscription } => {
                unsubscribe::run(conn, &subscription).map(|()| Some(Value::Bool(true)))
            }
            Call::Update {
                subscription,
                add,
                remove,
            } => update::run(conn, &id, &subscription, add, remove),
            Call::Describe { stream } => Ok(Some(describe::run(conn, stream))),
        };
        match outcome {
            Ok(Some(result)) => answer(conn, method, &id, result),
            // Answered later (subscribe once accepted, update once live).
            Ok(None) => {}
            Err(error) => answer_error(conn, Some(method), &id, &error),
        }
        Ok(())
    }
}

impl Dialect for JsonRpc {
    const NAME: &'static str = "json-rpc";

    fn on_message(&mut self, conn: &mut Connection, message: ClientMessage) -> Result<(), Ending> {
        match message {
            ClientMessage::Text(text) => Self::on_request(conn, &text),
            ClientMessage::Binary(_) => {
                answer_error(
                    conn,
                    None,
                    &Value::Null,
                    &RpcError::new(INVALID_REQUEST, "requests are JSON in text frames"),
                );
                Ok(())
            }
        }
    }

    fn on_subscription(
        &mut self,
        conn: &mut Connection,
        event: SubscriptionEvent,
    ) -> Result<(), Ending> {
        match event {
            SubscriptionEvent::Accepted { key, tag } => {
                answer(conn, Method::Subscribe, &tag, json!(key.to_string()));
            }
            SubscriptionEvent::Refused {
                tag,
                from_height,
                lowest,
                pending,
                ..
            } => {
                let from = from_height.unwrap_or(0);
                let error = RpcError::new(
                    HISTORY_UNAVAILABLE,
                    format!("from_height {from} is below the stored history, which starts at height {lowest}"),
                )
                .with_data(json!({"lowest_height": lowest, "from_height": from}));
                answer_error(conn, Some(Method::Subscribe), &tag, &error);
                update::drop_pending(conn, pending);
            }
            SubscriptionEvent::Ended {
                key,
                why,
                last_height,
                pending,
            } => {
                let error = match why {
                    EndReason::HistoryPruned { lowest } => RpcError::new(
                        HISTORY_UNAVAILABLE,
                        format!("the history this subscription replays is no longer stored; it starts at height {lowest}"),
                    )
                    .with_data(json!({"lowest_height": lowest})),
                    EndReason::NotAllowed(err) => authenticate::auth_error(&err),
                    // The channel has no groups; stream-sea's do.
                    EndReason::GroupFull => RpcError::new(LIMIT_REACHED, "the group is full"),
                };
                conn.reply(&notification_message(
                    SUBSCRIPTION_ERROR_METHOD,
                    protocol::SubscriptionEnded {
                        error,
                        last_height,
                        subscription: key.to_string(),
                    },
                ));
                update::drop_pending(conn, pending);
            }
            SubscriptionEvent::UpdatesApplied { tags, after, .. } => {
                for id in tags {
                    answer(
                        conn,
                        Method::Update,
                        &id,
                        json!({"applies_after_height": after}),
                    );
                }
            }
        }
        Ok(())
    }

    fn farewell(&self, ending: &Ending, heights: &LastHeights, config: &StreamsConfig) -> Farewell {
        let Some(closing) = ending.closing(config) else {
            return Farewell::default();
        };
        let mut notice = None;
        let description = closing.reason.map(|mut fields| {
            if !closing.resumable {
                return Value::Object(fields).to_string();
            }
            let heights: serde_json::Map<String, Value> = heights
                .iter()
                .map(|(key, height)| (key.to_string(), json!(height)))
                .collect();
            let heights = Value::Object(heights);
            notice = Some(notification_message(
                CLOSING_METHOD,
                protocol::Closing {
                    code: closing.code.into(),
                    last_heights: heights
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(key, height)| (key.clone(), height.as_u64()))
                        .collect(),
                    reason: fields["reason"].as_str().unwrap_or_default().to_owned(),
                },
            ));
            let short = Value::Object(fields.clone()).to_string();
            fields.insert("last_heights".into(), heights);
            let long = Value::Object(fields).to_string();
            if long.len() <= MAX_CLOSE_REASON {
                long
            } else {
                short
            }
        });
        Farewell {
            notice,
            close: Some(actix_ws::CloseReason {
                code: closing.code,
                description,
            }),
        }
    }
}

/// Shared by the methods: the envelope as the hub's deliveries take it.
fn shared_envelope(key: u64) -> Arc<dyn crate::envelope::Envelope> {
    Arc::new(envelope(key))
}
