//! The stream catalogue (`GET /api/v1/streams` on the API port) and the AsyncAPI document
//! (`GET /api/v1/streams/asyncapi.json`), written from the declarations beside them: the
//! message types (by schemars), the stream options ([`StreamOptions`], which the URL and
//! JSON-RPC parsers read), the JSON-RPC params and messages
//! ([`crate::dialects::rpc::protocol`]) and stream-sea's ([`crate::dialects::streamsea`]).
//! Nothing here is written twice: a parameter or a message field the parsers accept is
//! described because it is declared.

use planetmint_streams_model::event::{BlockBatchEvent, BlockEvent, TransactionEvent};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use crate::dialects::http::{EVENT_STREAM, NDJSON};
use crate::dialects::rpc::protocol::{
    Answer, AuthenticateParams, Closing, DescribeParams, Method, Notification, SubscribeParams,
    SubscriptionEnded, SubscriptionMessage, UnsubscribeParams, UpdateParams, CLOSING_METHOD,
    FILTER_OPTIONS, NOTIFICATION_METHOD, SUBSCRIPTION_ERROR_METHOD,
};
use crate::dialects::rpc::RPC_PATH;
use crate::dialects::streamsea::messages as sea;
use crate::dialects::streamsea::schema::{SCHEMA_VERSION, VERSIONS_VECTOR_PATH};
use crate::http::stream_path;
use crate::subscription::{parameters, Parameter, StreamKind, StreamOptions};

/// Where clients reach the stream port, as the root documents advertise it.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint<'a> {
    /// `ws` or `wss`.
    pub scheme: &'a str,
    /// Host name.
    pub host: &'a str,
    /// Port.
    pub port: u16,
}

impl Endpoint<'_> {
    /// `ws(s)://host:port`.
    pub fn websocket(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host, self.port)
    }

    /// `http(s)://host:port`: the same port, for plain HTTP streams and schemas.
    pub fn http(&self) -> String {
        let scheme = if self.scheme == "wss" {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

/// Path of the AsyncAPI document on the API port.
pub const ASYNCAPI_PATH: &str = "/api/v1/streams/asyncapi.json";

/// The JSON Schema of `T`, self-contained (no `$ref`: every published schema can be used on
/// its own, wherever it sits in a document).
pub fn schema_of<T: JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12()
        .with(|settings| settings.inline_subschemas = true)
        .into_generator();
    let mut schema =
        serde_json::to_value(generator.into_root_schema_for::<T>()).unwrap_or(Value::Null);
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
    }
    schema
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

fn parameter(p: &Parameter) -> Value {
    json!({
        "name": p.name,
        "description": p.description,
        "repeatable": p.repeatable,
        "schema": p.schema,
        "example": p.example,
    })
}

/// A parameter's JSON Schema, with its description, as an array when it may repeat.
fn parameter_schema(p: &Parameter) -> Value {
    let mut schema = p.schema.clone();
    if let Some(object) = schema.as_object_mut() {
        object.insert("description".into(), p.description.clone().into());
    }
    if p.repeatable {
        json!({"type": "array", "items": schema})
    } else {
        schema
    }
}

/// The channel's messages: what clients send, then what they receive.
const RPC_SENT: &[&str] = &["request"];
const RPC_RECEIVED: &[&str] = &["answer", "notification", "closing", "subscriptionError"];
const SEA_SENT: &[&str] = &["seaRequest"];
const SEA_RECEIVED: &[&str] = &["seaAnswer", "seaDelivery"];

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
const CLOSE_CODES: &[(u16, &str)] = crate::close_codes::ALL;

/// `GET /api/v1/streams`: every stream with its URLs (WebSocket, Server-Sent Events, NDJSON,
/// stream-sea), description, message schemas and parameters; the one-socket channel.
pub fn catalogue(endpoint: &Endpoint<'_>) -> Value {
    let parameters: Vec<Value> = parameters().iter().map(parameter).collect();
    let close_codes: Map<String, Value> = CLOSE_CODES
        .iter()
        .map(|(code, meaning)| (code.to_string(), Value::from(*meaning)))
        .collect();
    let http = endpoint.http();
    let streams: Vec<Value> = STREAMS
        .iter()
        .map(|stream| {
            let path = stream_path(stream.kind);
            let mut entry = json!({
                "name": stream.kind.name(),
                "url": format!("{}{path}", endpoint.websocket()),
                "description": stream.description,
                "parameters": parameters,
                "http": {
                    "url": format!("{http}{path}"),
                    "server_sent_events": {"accept": EVENT_STREAM, "resume": "Last-Event-ID (the height of the last complete block), or from_height"},
                    "ndjson": {"accept": NDJSON, "resume": "from_height"},
                },
                "stream_sea": {
                    "stream_name": stream.kind.name(),
                    "schema_url": format!("{http}/api/v1/streams/{}/schema", stream.kind.name()),
                    "schema_version": SCHEMA_VERSION,
                },
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
        "rpc_url": rpc_url(endpoint),
        "channel": {
            "url": rpc_url(endpoint),
            "dialects": {
                "json-rpc": "the first message is a JSON-RPC 2.0 request (\"jsonrpc\": \"2.0\")",
                "stream-sea": "the first message is stream-sea's authenticate ({\"id\": 1, \"action\": \"authenticate\", ...})",
            },
            "schema_versions_url": format!("{http}{VERSIONS_VECTOR_PATH}"),
        },
        "asyncapi": ASYNCAPI_PATH,
    })
}

/// URL of the one-socket channel.
fn rpc_url(endpoint: &Endpoint<'_>) -> String {
    format!("{}{RPC_PATH}", endpoint.websocket())
}

/// JSON Schema of `subscribe`'s params: the stream, and its options as JSON.
fn subscribe_params() -> Value {
    let mut schema = StreamOptions::schema().clone();
    let stream = schema_of::<SubscribeParams>();
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
        object.remove("title");
        if let Some(properties) = object.get_mut("properties").and_then(Value::as_object_mut) {
            properties.insert("stream".into(), stream["properties"]["stream"].clone());
        }
        object.insert("required".into(), json!(["stream"]));
    }
    schema
}

/// JSON Schema of `update`'s params: `add` and `remove` take the filter options only.
fn update_params() -> Value {
    let mut schema = schema_of::<UpdateParams>();
    let options = StreamOptions::schema();
    let filters: Map<String, Value> = FILTER_OPTIONS
        .iter()
        .filter_map(|name| {
            Some((
                (*name).to_owned(),
                options["properties"].get(*name)?.clone(),
            ))
        })
        .collect();
    let filters =
        json!({"type": ["object", "null"], "properties": filters, "additionalProperties": false});
    if let Some(properties) = schema["properties"].as_object_mut() {
        for change in ["add", "remove"] {
            let description = properties[change]["description"].clone();
            let mut change_schema = filters.clone();
            change_schema["description"] = description;
            properties.insert(change.into(), change_schema);
        }
    }
    schema
}

/// A request of `method` with `params`.
fn request(method: Method, params: Value) -> Value {
    json!({
        "type": "object",
        "required": ["jsonrpc", "id", "method", "params"],
        "properties": {
            "jsonrpc": {"const": "2.0"},
            "id": {"type": ["number", "string"]},
            "method": {"const": method.name()},
            "params": params,
        },
    })
}

/// A notification's schema with its method fixed.
fn notification<P: JsonSchema>(method: &str) -> Value {
    let mut schema = schema_of::<Notification<'static, P>>();
    schema["properties"]["method"] = json!({"const": method});
    schema
}

/// JSON Schemas of the JSON-RPC channel's messages: requests, answers, notifications.
fn rpc_messages() -> Value {
    let methods: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
    let stream_payloads: Vec<Value> = STREAMS
        .iter()
        .flat_map(|stream| stream.messages)
        .map(|message| json!({"$ref": format!("#/components/messages/{}/payload", message.name)}))
        .collect();
    let mut subscription = notification::<SubscriptionMessage>(NOTIFICATION_METHOD);
    subscription["properties"]["params"]["properties"]["result"] =
        json!({"oneOf": stream_payloads});
    json!({
        "request": {
            "name": "request",
            "title": "A JSON-RPC 2.0 request (one per text frame, no batches)",
            "summary": format!("Methods: {}", methods.join(", ")),
            "payload": {"oneOf": [
                request(Method::Authenticate, schema_of::<AuthenticateParams>()),
                request(Method::Subscribe, subscribe_params()),
                request(Method::Unsubscribe, schema_of::<UnsubscribeParams>()),
                request(Method::Update, update_params()),
                request(Method::Describe, schema_of::<DescribeParams>()),
            ]},
        },
        "answer": {
            "name": "answer",
            "title": "The answer to a request, with its id",
            "payload": schema_of::<Answer<'static>>(),
        },
        "notification": {
            "name": "notification",
            "title": "One message of a subscription, exactly as the URL stream with the same options sends it",
            "payload": subscription,
        },
        "closing": {
            "name": "closing",
            "title": "Sent just before the server closes the connection (too slow, no pong, shutdown, token expired)",
            "summary": "Carries every subscription's last height completely sent; resubscribe with from_height = that height. The close frame carries the same when it fits its 123 bytes.",
            "payload": notification::<Closing>(CLOSING_METHOD),
        },
        "subscriptionError": {
            "name": "subscriptionError",
            "title": "One subscription ended by the server (its replay found the history pruned, or a new credential does not allow it)",
            "payload": notification::<SubscriptionEnded>(SUBSCRIPTION_ERROR_METHOD),
        },
        "seaRequest": {
            "name": "seaRequest",
            "title": "A stream-sea request (authenticate first; ids count up from 1)",
            "payload": schema_of::<sea::Request>(),
        },
        "seaAnswer": {
            "name": "seaAnswer",
            "title": "The answer to a stream-sea request (a subscribe's comes before its first delivery)",
            "payload": schema_of::<sea::Answer>(),
        },
        "seaDelivery": {
            "name": "seaDelivery",
            "title": "One message of a stream-sea subscription, exactly as the URL stream with the same options sends it",
            "payload": schema_of::<sea::Delivery>(),
        },
    })
}

/// An AsyncAPI 3.0 document describing the stream port: the URL streams (over WebSocket and
/// plain HTTP) and the one-socket channel (JSON-RPC and stream-sea).
pub fn asyncapi(endpoint: &Endpoint<'_>, version: &str) -> Value {
    let query: Map<String, Value> = parameters()
        .iter()
        .map(|p| (p.name.clone(), parameter_schema(p)))
        .collect();
    let bindings = json!({
        "ws": {"method": "GET", "query": {"type": "object", "properties": query}, "bindingVersion": "0.1.0"},
        "http": {"method": "GET", "bindingVersion": "0.3.0"},
    });
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
                "address": stream_path(stream.kind),
                "description": format!("{} Over a WebSocket; or, without an upgrade, with Accept: {EVENT_STREAM} (one event per message, id: <height> on the last of each block, Last-Event-ID resumes) or Accept: {NDJSON} (one message per line).", stream.channel_description),
                "servers": [{"$ref": "#/servers/streams"}, {"$ref": "#/servers/streamsHttp"}],
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
    channels.insert(
        "streamSea".into(),
        json!({
            "address": RPC_PATH,
            "description": "The same socket speaking the stream-sea protocol (its first message an authenticate action): subscribe by stream name with the URL stream's query string, an optional consumer group (groupId), every answer and delivery tagged with the request's id. Schemas over HTTP at /api/v1/streams/<stream>/schema.",
            "servers": [{"$ref": "#/servers/streams"}],
            "messages": channel_messages(SEA_SENT.iter().chain(SEA_RECEIVED).copied()),
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
    operations.insert(
        "sendSeaRequests".into(),
        operation("send", "streamSea", SEA_SENT.iter().copied()),
    );
    operations.insert(
        "receiveSea".into(),
        operation("receive", "streamSea", SEA_RECEIVED.iter().copied()),
    );
    let http_scheme = if endpoint.scheme == "wss" {
        "https"
    } else {
        "http"
    };
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "planetmint-streams",
            "version": version,
            "description": "Committed Planetmint blocks and transactions over WebSocket (and Server-Sent Events, NDJSON), compatible with Planetmint's event stream API, with resume by height, filters and block framing.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "streams": {
                "host": format!("{}:{}", endpoint.host, endpoint.port),
                "protocol": endpoint.scheme,
                "description": "The stream server (Planetmint's event stream port).",
            },
            "streamsHttp": {
                "host": format!("{}:{}", endpoint.host, endpoint.port),
                "protocol": http_scheme,
                "description": "The same port, for streams over plain HTTP (Server-Sent Events, NDJSON) and stream-sea's schemas.",
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENDPOINT: Endpoint<'static> = Endpoint {
        scheme: "wss",
        host: "node.example.com",
        port: 443,
    };

    #[test]
    fn published_schemas_stand_alone() {
        let text = asyncapi(&ENDPOINT, "0").to_string();
        assert!(
            !text.contains("#/$defs/"),
            "no reference into a $defs that is not there"
        );
        let catalogue = catalogue(&ENDPOINT);
        assert_eq!(
            catalogue["streams"][0]["http"]["url"],
            "https://node.example.com:443/api/v1/streams/valid_transactions"
        );
    }

    #[test]
    fn every_declared_option_is_a_subscribe_param_and_a_url_parameter() {
        let params = subscribe_params();
        for name in StreamOptions::names() {
            assert!(params["properties"].get(name).is_some(), "{name}");
            assert!(parameters().iter().any(|p| p.name == name), "{name}");
        }
        assert!(params["properties"].get("token").is_none());
        assert_eq!(params["additionalProperties"], false);
    }
}
