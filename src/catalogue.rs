//! The stream catalogue (`GET /api/v1/streams`) and the AsyncAPI document
//! (`GET /api/v1/streams/asyncapi.json`), built from the Rust message types (JSON Schema by
//! schemars) and the parser's own parameter table, so neither can drift from the code.
//! The stream server holds the same catalogue: the JSON-RPC `describe` answers with its
//! entries.

use planetmint_streams_api::Advertised;
use planetmint_streams_broadcaster::rpc::protocol::{
    Method, CLOSING_METHOD, ERROR_CODES, NOTIFICATION_METHOD, SUBSCRIPTION_ERROR_METHOD,
};
use planetmint_streams_broadcaster::rpc::RPC_PATH;
use planetmint_streams_broadcaster::subscription::{ParameterSpec, PARAMETERS};
use planetmint_streams_model::event::{BlockBatchEvent, BlockEvent, TransactionEvent};
use planetmint_streams_model::vocabulary::{StreamKind, ASYNCAPI_PATH};
use serde_json::{json, Map, Value};

fn schema_of<T: schemars::JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null)
}

fn parameter(p: &ParameterSpec) -> Value {
    json!({
        "name": p.name,
        "description": p.description,
        "repeatable": p.repeatable,
        "schema": serde_json::from_str::<Value>(p.schema).unwrap_or(Value::Null),
        "example": p.example,
    })
}

/// A parameter's JSON Schema, with its description, as an array when it may repeat.
fn parameter_schema(p: &ParameterSpec) -> Value {
    let mut schema: Value = serde_json::from_str(p.schema).unwrap_or(Value::Null);
    if let Some(object) = schema.as_object_mut() {
        object.insert("description".into(), p.description.into());
    }
    if p.repeatable {
        json!({"type": "array", "items": schema})
    } else {
        schema
    }
}

/// The schema of a stream's name.
fn stream_name_schema() -> Value {
    let names: Vec<&str> = StreamKind::ALL.iter().map(|s| s.name()).collect();
    json!({"type": "string", "enum": names})
}

/// One message a stream sends, as both documents describe it.
struct MessageDoc {
    /// Its name in the AsyncAPI document.
    name: &'static str,
    /// Its AsyncAPI title.
    title: &'static str,
    /// The catalogue's key for its schema.
    catalogue_key: &'static str,
    /// Its JSON Schema.
    schema: fn() -> Value,
}

/// One URL stream, as both documents describe it.
struct StreamDoc {
    kind: StreamKind,
    /// The catalogue's description.
    description: &'static str,
    /// The AsyncAPI channel's description.
    channel_description: &'static str,
    /// The AsyncAPI operation receiving it.
    operation: &'static str,
    messages: &'static [MessageDoc],
}

/// The URL streams, in the catalogue's order.
const STREAMS: [StreamDoc; 2] = [
    StreamDoc {
        kind: StreamKind::ValidTransactions,
        description: "One message per committed transaction, in block height order and in the block's order; all messages of a block are written back to back. Without parameters: blocks committed after the client connected (Planetmint's behaviour).",
        channel_description: "Committed transactions, one message each (or one per block with batch=block).",
        operation: "receiveTransactions",
        messages: &[
            MessageDoc {
                name: "transaction",
                title: "A committed transaction",
                catalogue_key: "message_schema",
                schema: schema_of::<TransactionEvent<'static>>,
            },
            MessageDoc {
                name: "blockBatch",
                title: "A block's transactions (batch=block)",
                catalogue_key: "batch_message_schema",
                schema: schema_of::<BlockBatchEvent<'static>>,
            },
        ],
    },
    StreamDoc {
        kind: StreamKind::ValidBlocks,
        description: "One message per committed block (empty blocks included), in height order.",
        channel_description: "Committed blocks, one message each.",
        operation: "receiveBlocks",
        messages: &[MessageDoc {
            name: "block",
            title: "A committed block",
            catalogue_key: "message_schema",
            schema: schema_of::<BlockEvent<'static>>,
        }],
    },
];

/// The JSON-RPC channel's messages: what clients send, then what they receive.
const RPC_SENT: &[&str] = &["request"];
const RPC_RECEIVED: &[&str] = &["answer", "notification", "closing", "subscriptionError"];

/// A channel's `messages`: each named message, by reference to the components.
fn channel_messages<'a>(names: impl IntoIterator<Item = &'a str>) -> Value {
    names
        .into_iter()
        .map(|name| {
            (
                name.to_owned(),
                json!({"$ref": format!("#/components/messages/{name}")}),
            )
        })
        .collect::<Map<String, Value>>()
        .into()
}

/// An operation: `action` on `channel` with the named messages of that channel.
fn operation<'a>(action: &str, channel: &str, names: impl IntoIterator<Item = &'a str>) -> Value {
    let messages: Vec<Value> = names
        .into_iter()
        .map(|name| json!({"$ref": format!("#/channels/{channel}/messages/{name}")}))
        .collect();
    json!({
        "action": action,
        "channel": {"$ref": format!("#/channels/{channel}")},
        "messages": messages,
    })
}

/// What the server sends (nothing sends 1011: internal failures close with 1001 on shutdown).
const CLOSE_CODES: &[(u16, &str)] = planetmint_streams_model::vocabulary::close::ALL;

/// `GET /api/v1/streams`: every stream with its URL, description, message schemas and
/// parameters.
pub fn catalogue(advertised: &Advertised) -> Value {
    let parameters: Vec<Value> = PARAMETERS.iter().map(parameter).collect();
    let close_codes: Map<String, Value> = CLOSE_CODES
        .iter()
        .map(|(code, meaning)| (code.to_string(), Value::from(*meaning)))
        .collect();
    let streams: Vec<Value> = STREAMS
        .iter()
        .map(|stream| {
            let mut entry = json!({
                "name": stream.kind.name(),
                "url": format!("{}{}", advertised.base(), stream.kind.path()),
                "description": stream.description,
                "parameters": parameters,
            });
            if let Some(entry) = entry.as_object_mut() {
                for message in stream.messages {
                    entry.insert(message.catalogue_key.into(), (message.schema)());
                }
            }
            entry
        })
        .collect();
    json!({
        "streams": streams,
        "close_codes": close_codes,
        "rpc_url": rpc_url(advertised),
        "asyncapi": ASYNCAPI_PATH,
    })
}

/// URL of the one-socket JSON-RPC channel.
fn rpc_url(advertised: &Advertised) -> String {
    format!("{}{RPC_PATH}", advertised.base())
}

/// JSON Schema of `subscribe`'s options: the URL parameters as JSON (no `token`: that is
/// `authenticate`'s).
fn subscribe_options() -> Value {
    let mut properties: Map<String, Value> = PARAMETERS
        .iter()
        .filter(|p| p.name != "token")
        .map(|p| (p.name.to_owned(), parameter_schema(p)))
        .collect();
    properties.insert("stream".into(), stream_name_schema());
    json!({"type": "object", "required": ["stream"], "properties": properties, "additionalProperties": false})
}

/// JSON Schemas of the channel's messages: requests, answers, notifications.
fn rpc_messages() -> Value {
    let filters = json!({
        "type": "object",
        "properties": {
            "public_key": {"type": "array", "items": {"type": "string"}},
            "asset_id": {"type": "array", "items": {"type": "string"}},
            "operation": {"type": "array", "items": {"type": "string"}},
        },
        "additionalProperties": false,
    });
    let request = |method: &str, params: Value| {
        json!({
            "type": "object",
            "required": ["jsonrpc", "id", "method", "params"],
            "properties": {
                "jsonrpc": {"const": "2.0"},
                "id": {"type": ["number", "string"]},
                "method": {"const": method},
                "params": params,
            },
        })
    };
    let string_param = |name: &str| json!({"type": "object", "required": [name], "properties": {name: {"type": "string"}}, "additionalProperties": false});
    let stream_param = json!({"type": "object", "required": ["stream"], "properties": {"stream": stream_name_schema()}, "additionalProperties": false});
    // A message the server sends unasked: a JSON-RPC notification of `method`.
    let notification = |method: &str, params: Value| {
        json!({
            "type": "object",
            "required": ["jsonrpc", "method", "params"],
            "properties": {
                "jsonrpc": {"const": "2.0"},
                "method": {"const": method},
                "params": params,
            },
        })
    };
    let methods: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
    let stream_payloads: Vec<Value> = STREAMS
        .iter()
        .flat_map(|stream| stream.messages)
        .map(|message| json!({"$ref": format!("#/components/messages/{}/payload", message.name)}))
        .collect();
    json!({
        "request": {
            "name": "request",
            "title": "A JSON-RPC 2.0 request (one per text frame, no batches)",
            "summary": format!("Methods: {}", methods.join(", ")),
            "payload": {"oneOf": [
                request("authenticate", string_param("token")),
                request("subscribe", subscribe_options()),
                request("unsubscribe", string_param("subscription")),
                request("update", json!({"type": "object", "required": ["subscription"], "properties": {"subscription": {"type": "string"}, "add": filters, "remove": filters}, "additionalProperties": false})),
                request("describe", stream_param),
            ]},
        },
        "answer": {
            "name": "answer",
            "title": "The answer to a request, with its id",
            "summary": "authenticate: {streams, expires_at}; subscribe: the subscription id (a string); unsubscribe: true; update: {applies_after_height}; describe: the stream's catalogue entry.",
            "payload": {
                "type": "object",
                "required": ["jsonrpc", "id"],
                "properties": {
                    "jsonrpc": {"const": "2.0"},
                    "id": {"type": ["number", "string", "null"]},
                    "result": {},
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"type": "integer", "enum": ERROR_CODES},
                            "message": {"type": "string"},
                            "data": {"type": "object", "description": "parameter (-32602), lowest_height (-32003), reason (-32001), limit and max (-32002)"},
                        },
                    },
                },
                "oneOf": [{"required": ["result"]}, {"required": ["error"]}],
            },
        },
        "notification": {
            "name": "notification",
            "title": "One message of a subscription, exactly as the URL stream with the same options sends it",
            "payload": notification(NOTIFICATION_METHOD, json!({
                "type": "object",
                "required": ["subscription", "result"],
                "properties": {
                    "subscription": {"type": "string"},
                    "result": {"oneOf": stream_payloads},
                },
            })),
        },
        "closing": {
            "name": "closing",
            "title": "Sent just before the server closes the connection (too slow, no pong, shutdown, token expired)",
            "summary": "Carries every subscription's last height completely sent; resubscribe with from_height = that height. The close frame carries the same when it fits its 123 bytes.",
            "payload": notification(CLOSING_METHOD, json!({
                "type": "object",
                "required": ["code", "reason", "last_heights"],
                "properties": {
                    "code": {"type": "integer"},
                    "reason": {"type": "string"},
                    "last_heights": {"type": "object", "additionalProperties": {"type": ["integer", "null"]}},
                },
            })),
        },
        "subscriptionError": {
            "name": "subscriptionError",
            "title": "One subscription ended by the server (its replay found the history pruned)",
            "payload": notification(
                SUBSCRIPTION_ERROR_METHOD,
                json!({"type": "object", "required": ["subscription", "error"]}),
            ),
        },
    })
}

/// An AsyncAPI 3.0 document describing both WebSocket channels.
pub fn asyncapi(advertised: &Advertised, version: &str) -> Value {
    let query: Map<String, Value> = PARAMETERS
        .iter()
        .map(|p| (p.name.to_owned(), parameter_schema(p)))
        .collect();
    let bindings = json!({"ws": {"method": "GET", "query": {"type": "object", "properties": query}, "bindingVersion": "0.1.0"}});
    let mut messages = Map::new();
    let mut channels = Map::new();
    let mut operations = Map::new();
    for stream in &STREAMS {
        let name = stream.kind.name();
        for message in stream.messages {
            messages.insert(
                message.name.into(),
                json!({"name": message.name, "title": message.title, "payload": (message.schema)()}),
            );
        }
        let message_names = || stream.messages.iter().map(|m| m.name);
        channels.insert(
            name.into(),
            json!({
                "address": stream.kind.path(),
                "description": stream.channel_description,
                "servers": [{"$ref": "#/servers/streams"}],
                "messages": channel_messages(message_names()),
                "bindings": bindings,
            }),
        );
        operations.insert(
            stream.operation.into(),
            operation("receive", name, message_names()),
        );
    }
    if let Value::Object(rpc) = rpc_messages() {
        messages.extend(rpc);
    }
    channels.insert(
        "rpc".into(),
        json!({
            "address": RPC_PATH,
            "description": "One socket, many subscriptions: JSON-RPC 2.0 requests (authenticate, subscribe, unsubscribe, update, describe) and subscription notifications whose result is what the URL stream with the same options sends. With auth.mode = signed the first request must be authenticate (or the URL carries token=).",
            "servers": [{"$ref": "#/servers/streams"}],
            "messages": channel_messages(RPC_SENT.iter().chain(RPC_RECEIVED).copied()),
            "bindings": {"ws": {"method": "GET", "query": {"type": "object", "properties": {"token": {"type": "string", "description": "Signed stream token (optional: prefer the authenticate request, which keeps it out of URLs)"}}}, "bindingVersion": "0.1.0"}},
        }),
    );
    operations.insert(
        "sendRpcRequests".into(),
        operation("send", "rpc", RPC_SENT.iter().copied()),
    );
    operations.insert(
        "receiveRpc".into(),
        operation("receive", "rpc", RPC_RECEIVED.iter().copied()),
    );
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "planetmint-streams",
            "version": version,
            "description": "Committed Planetmint blocks and transactions over WebSocket, compatible with Planetmint's event stream API, with resume by height, filters and block framing.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "streams": {
                "host": format!("{}:{}", advertised.host, advertised.port),
                "protocol": advertised.scheme,
                "description": "The stream server (Planetmint's event stream port).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages}
    })
}

/// With the JetStream tier: the catalogue names the NATS URLs (top-level `jetstream`) and, in
/// each stream's entry, the JetStream stream and subject holding its events.
pub fn add_jetstream(
    catalogue: &mut Value,
    nats: &planetmint_streams_jetstream::NatsConfig,
    names: &[planetmint_streams_jetstream::StreamNames],
) {
    let websocket = (!nats.websocket_url.is_empty()).then(|| nats.websocket_url.clone());
    catalogue["jetstream"] = json!({
        "nats_urls": nats.server_urls(),
        "nats_websocket_url": websocket,
        "config": crate::jetstream::CONFIG_PATH,
        "seek_by_height": "/api/v1/streams/{stream}/jetstream?height={height}",
        "max_age_seconds": nats.max_age.as_secs(),
        "docs": "docs/jetstream.md",
    });
    let Some(streams) = catalogue["streams"].as_array_mut() else {
        return;
    };
    for entry in streams {
        let name = entry["name"].as_str().unwrap_or_default().to_owned();
        if let Some(names) = names.iter().find(|n| n.kind.name() == name) {
            entry["jetstream"] = json!({"stream": names.stream, "subject": names.subject});
        }
    }
}
