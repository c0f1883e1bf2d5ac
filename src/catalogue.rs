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
use planetmint_streams_model::vocabulary::{
    ASYNCAPI_PATH, VALID_BLOCKS_PATH, VALID_TRANSACTIONS_PATH,
};
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
    json!({
        "streams": [
            {
                "name": "valid_transactions",
                "url": advertised.valid_transactions(),
                "description": "One message per committed transaction, in block height order and in the block's order; all messages of a block are written back to back. Without parameters: blocks committed after the client connected (Planetmint's behaviour).",
                "message_schema": schema_of::<TransactionEvent<'static>>(),
                "batch_message_schema": schema_of::<BlockBatchEvent<'static>>(),
                "parameters": parameters,
            },
            {
                "name": "valid_blocks",
                "url": advertised.valid_blocks(),
                "description": "One message per committed block (empty blocks included), in height order.",
                "message_schema": schema_of::<BlockEvent<'static>>(),
                "parameters": parameters,
            }
        ],
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
        .map(|p| {
            let mut schema: Value = serde_json::from_str(p.schema).unwrap_or(Value::Null);
            if let Some(object) = schema.as_object_mut() {
                object.insert("description".into(), p.description.into());
            }
            let schema = if p.repeatable {
                json!({"type": "array", "items": schema})
            } else {
                schema
            };
            (p.name.to_owned(), schema)
        })
        .collect();
    properties.insert(
        "stream".into(),
        json!({"type": "string", "enum": ["valid_transactions", "valid_blocks"]}),
    );
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
    let stream_param = json!({"type": "object", "required": ["stream"], "properties": {"stream": {"type": "string", "enum": ["valid_transactions", "valid_blocks"]}}, "additionalProperties": false});
    let methods: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
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
            "payload": {
                "type": "object",
                "required": ["jsonrpc", "method", "params"],
                "properties": {
                    "jsonrpc": {"const": "2.0"},
                    "method": {"const": NOTIFICATION_METHOD},
                    "params": {
                        "type": "object",
                        "required": ["subscription", "result"],
                        "properties": {
                            "subscription": {"type": "string"},
                            "result": {"oneOf": [
                                {"$ref": "#/components/messages/transaction/payload"},
                                {"$ref": "#/components/messages/blockBatch/payload"},
                                {"$ref": "#/components/messages/block/payload"},
                            ]},
                        },
                    },
                },
            },
        },
        "closing": {
            "name": "closing",
            "title": "Sent just before the server closes the connection (too slow, shutdown, token expired, flooding)",
            "summary": "Carries every subscription's last height completely sent; resubscribe with from_height = that height. The close frame carries the same when it fits its 123 bytes.",
            "payload": {
                "type": "object",
                "required": ["jsonrpc", "method", "params"],
                "properties": {
                    "jsonrpc": {"const": "2.0"},
                    "method": {"const": CLOSING_METHOD},
                    "params": {
                        "type": "object",
                        "required": ["code", "reason", "last_heights"],
                        "properties": {
                            "code": {"type": "integer"},
                            "reason": {"type": "string"},
                            "last_heights": {"type": "object", "additionalProperties": {"type": ["integer", "null"]}},
                        },
                    },
                },
            },
        },
        "subscriptionError": {
            "name": "subscriptionError",
            "title": "One subscription ended by the server (its replay found the history pruned)",
            "payload": {
                "type": "object",
                "required": ["jsonrpc", "method", "params"],
                "properties": {
                    "jsonrpc": {"const": "2.0"},
                    "method": {"const": SUBSCRIPTION_ERROR_METHOD},
                    "params": {"type": "object", "required": ["subscription", "error"]},
                },
            },
        },
    })
}

/// An AsyncAPI 3.0 document describing both WebSocket channels.
pub fn asyncapi(advertised: &Advertised, version: &str) -> Value {
    let query: Map<String, Value> = PARAMETERS
        .iter()
        .map(|p| {
            let mut schema: Value = serde_json::from_str(p.schema).unwrap_or(Value::Null);
            if let Some(object) = schema.as_object_mut() {
                object.insert("description".into(), p.description.into());
            }
            let schema = if p.repeatable {
                json!({"type": "array", "items": schema})
            } else {
                schema
            };
            (p.name.to_owned(), schema)
        })
        .collect();
    let bindings = json!({"ws": {"method": "GET", "query": {"type": "object", "properties": query}, "bindingVersion": "0.1.0"}});
    let mut messages = json!({
        "transaction": {"name": "transaction", "title": "A committed transaction", "payload": schema_of::<TransactionEvent<'static>>()},
        "blockBatch": {"name": "blockBatch", "title": "A block's transactions (batch=block)", "payload": schema_of::<BlockBatchEvent<'static>>()},
        "block": {"name": "block", "title": "A committed block", "payload": schema_of::<BlockEvent<'static>>()},
    });
    if let (Some(all), Value::Object(rpc)) = (messages.as_object_mut(), rpc_messages()) {
        all.extend(rpc);
    }
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
        "channels": {
            "valid_transactions": {
                "address": VALID_TRANSACTIONS_PATH,
                "description": "Committed transactions, one message each (or one per block with batch=block).",
                "servers": [{"$ref": "#/servers/streams"}],
                "messages": {
                    "transaction": {"$ref": "#/components/messages/transaction"},
                    "blockBatch": {"$ref": "#/components/messages/blockBatch"},
                },
                "bindings": bindings,
            },
            "valid_blocks": {
                "address": VALID_BLOCKS_PATH,
                "description": "Committed blocks, one message each.",
                "servers": [{"$ref": "#/servers/streams"}],
                "messages": {"block": {"$ref": "#/components/messages/block"}},
                "bindings": bindings,
            },
            "rpc": {
                "address": RPC_PATH,
                "description": "One socket, many subscriptions: JSON-RPC 2.0 requests (authenticate, subscribe, unsubscribe, update, describe) and subscription notifications whose result is what the URL stream with the same options sends. With auth.mode = signed the first request must be authenticate (or the URL carries token=).",
                "servers": [{"$ref": "#/servers/streams"}],
                "messages": {
                    "request": {"$ref": "#/components/messages/request"},
                    "answer": {"$ref": "#/components/messages/answer"},
                    "notification": {"$ref": "#/components/messages/notification"},
                    "closing": {"$ref": "#/components/messages/closing"},
                    "subscriptionError": {"$ref": "#/components/messages/subscriptionError"},
                },
                "bindings": {"ws": {"method": "GET", "query": {"type": "object", "properties": {"token": {"type": "string", "description": "Signed stream token (optional: prefer the authenticate request, which keeps it out of URLs)"}}}, "bindingVersion": "0.1.0"}},
            }
        },
        "operations": {
            "receiveTransactions": {
                "action": "receive",
                "channel": {"$ref": "#/channels/valid_transactions"},
                "messages": [
                    {"$ref": "#/channels/valid_transactions/messages/transaction"},
                    {"$ref": "#/channels/valid_transactions/messages/blockBatch"},
                ],
            },
            "receiveBlocks": {
                "action": "receive",
                "channel": {"$ref": "#/channels/valid_blocks"},
                "messages": [{"$ref": "#/channels/valid_blocks/messages/block"}],
            },
            "sendRpcRequests": {
                "action": "send",
                "channel": {"$ref": "#/channels/rpc"},
                "messages": [{"$ref": "#/channels/rpc/messages/request"}],
            },
            "receiveRpc": {
                "action": "receive",
                "channel": {"$ref": "#/channels/rpc"},
                "messages": [
                    {"$ref": "#/channels/rpc/messages/answer"},
                    {"$ref": "#/channels/rpc/messages/notification"},
                    {"$ref": "#/channels/rpc/messages/closing"},
                    {"$ref": "#/channels/rpc/messages/subscriptionError"},
                ],
            }
        },
        "components": {"messages": messages}
    })
}
