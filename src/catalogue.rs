//! The stream catalogue (`GET /api/v1/streams`) and the AsyncAPI document
//! (`GET /api/v1/streams/asyncapi.json`), built from the Rust message types (JSON Schema by
//! schemars) and the parser's own parameter table, so neither can drift from the code.

use planetmint_streams_api::Advertised;
use planetmint_streams_broadcaster::subscription::{ParameterSpec, PARAMETERS};
use planetmint_streams_model::event::{BlockBatchEvent, BlockEvent, TransactionEvent};
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

const CLOSE_CODES: &[(u16, &str)] = &[
    (1000, "normal close"),
    (1001, "server shutting down; reason {\"reason\", \"last_height\"}: reconnect with from_height=last_height"),
    (1002, "protocol error"),
    (1007, "a text frame from the client was not UTF-8"),
    (1008, "policy: too many frames from the client, or a refused token"),
    (1009, "a frame from the client was too big"),
    (1011, "internal error"),
    (4000, "too slow or no pong; reason {\"reason\", \"last_height\"}: reconnect with from_height=last_height"),
    (4001, "from_height is below the history still stored; reason {\"reason\", \"from_height\", \"lowest_height\"}"),
];

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
        "asyncapi": "/api/v1/streams/asyncapi.json",
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
                "address": "/api/v1/streams/valid_transactions",
                "description": "Committed transactions, one message each (or one per block with batch=block).",
                "servers": [{"$ref": "#/servers/streams"}],
                "messages": {
                    "transaction": {"$ref": "#/components/messages/transaction"},
                    "blockBatch": {"$ref": "#/components/messages/blockBatch"},
                },
                "bindings": bindings,
            },
            "valid_blocks": {
                "address": "/api/v1/streams/valid_blocks",
                "description": "Committed blocks, one message each.",
                "servers": [{"$ref": "#/servers/streams"}],
                "messages": {"block": {"$ref": "#/components/messages/block"}},
                "bindings": bindings,
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
            }
        },
        "components": {
            "messages": {
                "transaction": {"name": "transaction", "title": "A committed transaction", "payload": schema_of::<TransactionEvent<'static>>()},
                "blockBatch": {"name": "blockBatch", "title": "A block's transactions (batch=block)", "payload": schema_of::<BlockBatchEvent<'static>>()},
                "block": {"name": "block", "title": "A committed block", "payload": schema_of::<BlockEvent<'static>>()},
            }
        }
    })
}
