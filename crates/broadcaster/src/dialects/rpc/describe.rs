//! `describe {"stream"}`: the stream's entry of the catalogue (its message JSON Schemas and
//! parameters), as `GET /api/v1/streams` on the API port publishes it.

use serde_json::{json, Value};

use crate::engine::Connection;
use crate::subscription::StreamKind;

/// The catalogue entry of `stream`.
pub(super) fn run(conn: &Connection, stream: StreamKind) -> Value {
    conn.ctx
        .catalogue
        .as_ref()
        .and_then(|catalogue| {
            catalogue["streams"]
                .as_array()?
                .iter()
                .find(|entry| entry["name"] == stream.name())
                .cloned()
        })
        .unwrap_or_else(|| json!({"name": stream.name()}))
}
