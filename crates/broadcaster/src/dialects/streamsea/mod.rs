//! The stream-sea protocol (`../shared/spec/stream-sea.md`, seed 002) on the one-socket
//! channel, so its public client library reads Planetmint's streams unchanged.
//!
//! Client messages are JSON objects with `id` and `action`: `authenticate` (first, and only
//! first: `basic` with `clientId`/`clientSecret`, or `jwt`), `subscribe` (payload: a stream
//! name, optionally followed by the URL stream's query string; optional `groupId`, a consumer
//! group, see [`crate::groups`]), `unsubscribe` (payload: the subscribe request's id). Every
//! answer and delivery carries the request's `id`; a subscription's answer comes exactly once,
//! before its first delivery; each delivery is `{"id", "action": "subscription",
//! "streamName", "payload": <the JSON the URL stream sends>}`.

pub mod messages;
pub mod schema;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::config::StreamsConfig;
use planetmint_streams_auth::Credential;

use crate::engine::connection::{EndReason, SubscribeRefusal, SubscribeRequest};
use crate::engine::{
    ClientMessage, Connection, Dialect, Ending, Farewell, LastHeights, SubscriptionEvent,
};
use crate::envelope::TextFrameEnvelope;
use crate::subscription::{StreamKind, Subscription};
use messages::{Answer, AuthenticatePayload, Request};

/// Longest reason a close frame can carry.
const MAX_CLOSE_REASON: usize = 123;

/// What the client is told when a request fails.
fn failure(id: &Value, action: &Value, payload: Value) -> String {
    Answer {
        id: id.clone(),
        action: action.clone(),
        success: false,
        stream_name: None,
        payload,
    }
    .to_text()
}

/// The answer to a subscribe, refused or not.
fn subscription_answer(id: u64, stream: &str, success: bool, payload: Value) -> String {
    Answer {
        id: id.into(),
        action: "subscription".into(),
        success,
        stream_name: Some(stream.to_owned()),
        payload,
    }
    .to_text()
}

/// `{"error": message}` and the parameter at fault.
fn error(message: impl Into<String>, parameter: Option<&str>) -> Value {
    let mut payload = Map::new();
    payload.insert("error".into(), Value::String(message.into()));
    if let Some(parameter) = parameter {
        payload.insert("parameter".into(), Value::String(parameter.to_owned()));
    }
    Value::Object(payload)
}

/// Whether `text` is an RFC 4122 UUID in its 8-4-4-4-12 hexadecimal form.
fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The options of a subscription, written the same way however they were given (the key of
/// a consumer group: same group id, same stream, same options).
fn canonical(subscription: &Subscription) -> String {
    let sorted = |values: &std::collections::HashSet<String>| {
        let mut values: Vec<&str> = values.iter().map(String::as_str).collect();
        values.sort_unstable();
        values.join(",")
    };
    let filter = &subscription.filter;
    format!(
        "{}|keys={}|in={:?}|assets={}|ops={}|{:?}|{:?}",
        subscription.stream.name(),
        sorted(&filter.public_keys),
        filter.key_role,
        sorted(&filter.asset_ids),
        sorted(&filter.operations),
        subscription.framing,
        subscription.payload,
    )
}

/// A subscription as the client knows it.
#[derive(Debug)]
struct Opened {
    /// The subscribe request's id (every message of it carries it).
    id: Value,
    stream: StreamKind,
}

/// The stream-sea dialect of a connection.
#[derive(Debug, Default)]
pub(crate) struct StreamSea {
    authenticated: bool,
    /// Open subscriptions by key.
    opened: HashMap<u64, Opened>,
}

impl StreamSea {
    /// The key of the open subscription that request `id` made.
    fn key_of(&self, id: &Value) -> Option<u64> {
        self.opened
            .iter()
            .find(|(_, opened)| &opened.id == id)
            .map(|(key, _)| *key)
    }

    fn authenticate(
        &mut self,
        conn: &mut Connection,
        id: u64,
        payload: AuthenticatePayload,
    ) -> Result<(), Ending> {
        let action = json!("authenticate");
        if self.authenticated {
            conn.reply(&failure(
                &id.into(),
                &action,
                error("authenticate is only the first message", None),
            ));
            return Ok(());
        }
        let credential = match &payload {
            AuthenticatePayload::Basic {
                client_id,
                client_secret,
            } => Credential::ClientSecret {
                client_id,
                secret: client_secret,
            },
            AuthenticatePayload::Jwt { client_id, jwt } => Credential::Jwt {
                client_id: Some(client_id),
                jwt,
            },
        };
        match authenticate_with(conn, credential) {
            Ok(payload) => {
                self.authenticated = true;
                conn.reply(
                    &Answer {
                        id: id.into(),
                        action,
                        success: true,
                        stream_name: None,
                        payload,
                    }
                    .to_text(),
                );
                Ok(())
            }
            Err(message) => {
                conn.reply(&failure(&id.into(), &action, error(message, None)));
                Err(Ending::NotAuthenticated)
            }
        }
    }

    fn subscribe(&mut self, conn: &mut Connection, id: u64, target: &str, group_id: Option<&str>) {
        let (name, query) = target.split_once('?').unwrap_or((target, ""));
        let refuse = |conn: &Connection, payload: Value| {
            conn.reply(&subscription_answer(id, name, false, payload));
        };
        let Ok(stream) = name.parse::<StreamKind>() else {
            refuse(
                conn,
                error(
                    "unknown stream: expected valid_transactions or valid_blocks",
                    Some("stream"),
                ),
            );
            return;
        };
        if self.key_of(&id.into()).is_some() {
            refuse(
                conn,
                error("id is already that of an open subscription", Some("id")),
            );
            return;
        }
        let subscription = match Subscription::parse(stream, query, &conn.ctx.config.param_limits())
        {
            Ok(subscription) => subscription,
            Err(err) => {
                refuse(conn, error(err.message, Some(&err.parameter)));
                return;
            }
        };
        let group = match group_id {
            None => None,
            Some(group) if is_uuid(group) => {
                if subscription.from_height.is_some() {
                    refuse(conn, error("a consumer group starts live: from_height cannot be combined with groupId (resume each worker with partition=i/n and from_height, or use the JetStream tier's durable consumers)", Some("from_height")));
                    return;
                }
                if subscription.filter.partition.is_some() {
                    refuse(conn, error("partition cannot be combined with groupId: the group shares the stream among its members itself", Some("partition")));
                    return;
                }
                Some(format!(
                    "{}|{}",
                    group.to_ascii_lowercase(),
                    canonical(&subscription)
                ))
            }
            Some(_) => {
                refuse(
                    conn,
                    error(
                        "groupId must be an RFC 4122 UUID (8-4-4-4-12 hexadecimal digits)",
                        Some("groupId"),
                    ),
                );
                return;
            }
        };
        let key = conn.new_key();
        let prefix = format!(
            r#"{{"id":{id},"action":"subscription","streamName":"{}","payload":"#,
            stream.name()
        );
        let request = SubscribeRequest {
            subscription,
            envelope: Some(Arc::new(TextFrameEnvelope::new(prefix.into_bytes(), b"}"))),
            tag: id.into(),
            since: None,
            replay_slot: None,
            group,
        };
        match conn.subscribe(key, request) {
            Ok(()) => {
                self.opened.insert(
                    key,
                    Opened {
                        id: id.into(),
                        stream,
                    },
                );
            }
            Err(refusal) => refuse(conn, refusal_payload(&refusal)),
        }
    }

    fn unsubscribe(&mut self, conn: &mut Connection, id: u64, target: u64) {
        match self.key_of(&target.into()) {
            Some(key) => {
                conn.unsubscribe(key);
                self.opened.remove(&key);
                conn.reply(
                    &Answer {
                        id: id.into(),
                        action: "unsubscribe".into(),
                        success: true,
                        stream_name: None,
                        payload: target.into(),
                    }
                    .to_text(),
                );
            }
            None => {
                conn.reply(&failure(
                    &id.into(),
                    &json!("unsubscribe"),
                    error(
                        "payload must be the id of an open subscription's subscribe request",
                        Some("payload"),
                    ),
                ));
            }
        }
    }

    fn on_text(&mut self, conn: &mut Connection, text: &[u8]) -> Result<(), Ending> {
        let message = match serde_json::from_slice::<Value>(text) {
            Ok(message @ Value::Object(_)) => message,
            _ => {
                conn.reply(&failure(
                    &Value::Null,
                    &Value::Null,
                    error("a message is one JSON object with id and action", None),
                ));
                return self.unless_authenticated();
            }
        };
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        let action = message.get("action").cloned().unwrap_or(Value::Null);
        let known = matches!(
            action.as_str(),
            Some("authenticate" | "subscribe" | "unsubscribe")
        );
        if known && action != "authenticate" && !self.authenticated {
            conn.reply(&failure(&id, &action, error("authenticate first", None)));
            return Err(Ending::NotAuthenticated);
        }
        if !known {
            conn.reply(&failure(
                &id,
                &action,
                error(
                    "unknown action: expected authenticate, subscribe or unsubscribe",
                    Some("action"),
                ),
            ));
            return self.unless_authenticated();
        }
        let request: Request = match serde_path_to_error::deserialize(message) {
            Ok(request) => request,
            Err(err) => {
                let parameter = err.path().iter().find_map(|segment| match segment {
                    serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                    _ => None,
                });
                conn.reply(&failure(
                    &id,
                    &action,
                    error(err.inner().to_string(), parameter.as_deref()),
                ));
                return self.unless_authenticated();
            }
        };
        match request {
            Request::Authenticate { id, payload } => self.authenticate(conn, id, payload),
            Request::Subscribe {
                id,
                payload,
                group_id,
            } => {
                self.subscribe(conn, id, &payload, group_id.as_deref());
                Ok(())
            }
            Request::Unsubscribe { id, payload } => {
                self.unsubscribe(conn, id, payload);
                Ok(())
            }
        }
    }

    /// Before authenticating, anything that is not `authenticate` ends the connection.
    fn unless_authenticated(&self) -> Result<(), Ending> {
        if self.authenticated {
            Ok(())
        } else {
            Err(Ending::NotAuthenticated)
        }
    }
}

/// Presents `credential` as the connection's; the authenticate answer's payload.
fn authenticate_with(conn: &mut Connection, credential: Credential<'_>) -> Result<Value, String> {
    let authenticated = conn
        .authenticate(credential)
        .map_err(|err| err.to_string())?;
    Ok(json!({
        "streams": authenticated.streams.iter().map(|s| s.name()).collect::<Vec<_>>(),
        "expiresAt": authenticated.expires_at,
    }))
}

/// The payload of a refused subscribe.
fn refusal_payload(refusal: &SubscribeRefusal) -> Value {
    match refusal {
        SubscribeRefusal::Subscriptions { max } => {
            json!({"error": format!("at most {max} subscriptions per connection"), "limit": "subscriptions", "max": max})
        }
        SubscribeRefusal::FilterValues { max } => {
            json!({"error": format!("at most {max} filter values per connection"), "limit": "filter_values", "max": max})
        }
        SubscribeRefusal::Address(refusal) => {
            json!({"error": refusal.to_string(), "limit": format!("{}_per_address", refusal.label()), "max": refusal.max()})
        }
        SubscribeRefusal::NotAllowed(err) => {
            json!({"error": err.to_string(), "reason": err.reason()})
        }
        SubscribeRefusal::Replays { max } => {
            json!({"error": format!("at most {max} subscriptions from one address may replay history at once; retry when they have caught up"), "limit": "replays_per_address", "max": max})
        }
        SubscribeRefusal::GroupFull { max } => {
            json!({"error": format!("a consumer group has at most {max} members"), "limit": "group_members", "max": max})
        }
    }
}

impl Dialect for StreamSea {
    const NAME: &'static str = "stream-sea";

    fn on_message(&mut self, conn: &mut Connection, message: ClientMessage) -> Result<(), Ending> {
        match message {
            ClientMessage::Text(text) => self.on_text(conn, &text),
            ClientMessage::Binary(_) => {
                conn.reply(&failure(
                    &Value::Null,
                    &Value::Null,
                    error("messages are JSON in text frames", None),
                ));
                self.unless_authenticated()
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
                let stream = self.opened.get(&key).map_or("", |o| o.stream.name());
                let id = tag.as_u64().unwrap_or(0);
                conn.reply(&subscription_answer(id, stream, true, tag));
            }
            SubscriptionEvent::Refused {
                tag,
                from_height,
                lowest,
                ..
            } => {
                let key = self.key_of(&tag);
                let stream = key
                    .and_then(|key| self.opened.remove(&key))
                    .map_or("", |o| o.stream.name());
                let from = from_height.unwrap_or(0);
                let id = tag.as_u64().unwrap_or(0);
                conn.reply(&subscription_answer(
                    id,
                    stream,
                    false,
                    json!({"error": format!("from_height {from} is below the stored history, which starts at height {lowest}"),
                           "parameter": "from_height", "lowest_height": lowest}),
                ));
            }
            SubscriptionEvent::Ended {
                key,
                why,
                last_height,
                ..
            } => {
                let Some(opened) = self.opened.remove(&key) else {
                    return Ok(());
                };
                let message = match why {
                    EndReason::HistoryPruned { lowest } => format!("the history this subscription replays is no longer stored; it starts at height {lowest}"),
                    EndReason::NotAllowed(err) => err.to_string(),
                    EndReason::GroupFull => "the consumer group filled up before this member joined".to_owned(),
                };
                let id = opened.id.as_u64().unwrap_or(0);
                conn.reply(&subscription_answer(
                    id,
                    opened.stream.name(),
                    false,
                    json!({"error": message, "last_height": last_height}),
                ));
            }
            SubscriptionEvent::UpdatesApplied { .. } => {}
        }
        Ok(())
    }

    fn farewell(&self, ending: &Ending, heights: &LastHeights, config: &StreamsConfig) -> Farewell {
        let Some(closing) = ending.closing(config) else {
            return Farewell::default();
        };
        let description = closing.reason.map(|mut fields| {
            if closing.resumable {
                let heights: Map<String, Value> = heights
                    .iter()
                    .filter_map(|(key, height)| {
                        let opened = self.opened.get(key)?;
                        Some((opened.id.to_string(), json!(height)))
                    })
                    .collect();
                let short = Value::Object(fields.clone()).to_string();
                fields.insert("last_heights".into(), Value::Object(heights));
                let long = Value::Object(fields).to_string();
                if long.len() <= MAX_CLOSE_REASON {
                    long
                } else {
                    short
                }
            } else {
                Value::Object(fields).to_string()
            }
        });
        Farewell {
            notice: None,
            close: Some(actix_ws::CloseReason {
                code: closing.code,
                description,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_are_rfc_4122_uuids() {
        assert!(is_uuid("0f8fad5b-d9cb-469f-a165-70867728950e"));
        assert!(is_uuid("0F8FAD5B-D9CB-469F-A165-70867728950E"));
        for bad in [
            "",
            "0f8fad5bd9cb469fa16570867728950e",
            "0f8fad5b-d9cb-469f-a165-70867728950",
            "0f8fad5b-d9cb-469f-a165-70867728950g",
            "{0f8fad5b-d9cb-469f-a165-70867728950e}",
        ] {
            assert!(!is_uuid(bad), "{bad}");
        }
    }

    #[test]
    fn the_same_options_in_any_order_make_the_same_group() {
        let key = "4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW";
        let key2 = "zeLcy7Xzntvupb1PChe1B3KjxRKcCdM1zJEKyKpc653";
        let parse = |query: &str| {
            Subscription::parse(StreamKind::ValidTransactions, query, &Default::default())
                .expect("valid")
        };
        let a = parse(&format!(
            "public_key={key}&public_key={key2}&operation=create"
        ));
        let b = parse(&format!(
            "operation=CREATE&public_key={key2}&public_key={key}"
        ));
        assert_eq!(canonical(&a), canonical(&b));
        assert_ne!(canonical(&a), canonical(&parse("")));
        assert_ne!(canonical(&parse("batch=block")), canonical(&parse("")));
    }
}
