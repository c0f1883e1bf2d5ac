//! stream-sea's schemas over HTTP, on the stream port and the API port (its client library
//! uses one host and port for the socket and for these):
//!
//! - `GET /api/v1/streams/<stream>/schema` -> `{"name", "version", "fields"}` in stream-sea's
//!   field types, describing exactly the events the stream sends; made from the same JSON
//!   Schemas the catalogue publishes (the Rust message types, by schemars);
//! - `POST /api/v1/schema-versions-vector` `{"schemaNames": [...]}` (gzip-encoded, as the
//!   client sends it) -> `{"versionsVector": [<version or null>, ...]}`;
//! - `POST /api/v1/streams/<stream>/publish` and `/define`: 405, the chain's streams are
//!   read-only.

use std::io::Read;
use std::sync::OnceLock;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use planetmint_streams_model::event::{BlockEvent, TransactionEvent};
use serde_json::{json, Map, Value};

use crate::http::json_error;
use crate::subscription::StreamKind;

/// The version of the streams' message schemas (bumped when a message changes shape).
pub const SCHEMA_VERSION: &str = "1";
/// Path of the versions vector.
pub const VERSIONS_VECTOR_PATH: &str = "/api/v1/schema-versions-vector";
/// Largest request body the versions vector reads, after decompression.
const MAX_BODY_BYTES: u64 = 64 * 1024;

/// A JSON Schema's `$ref` target within its `$defs`.
fn resolve<'a>(schema: &'a Value, root: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference
            .strip_prefix("#/$defs/")
            .and_then(|name| root["$defs"].get(name))
            .unwrap_or(schema),
        None => schema,
    }
}

/// The stream-sea type of a JSON Schema (`string`, `integer`, `float`, `object`, and their
/// `array<...>`); a union of a string and an object (Planetmint's `asset_ids` items: an id, or
/// a version 2.0 asset object) is the first of them.
fn field_type(schema: &Value, root: &Value) -> String {
    let schema = resolve(schema, root);
    if let Some(choices) = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array)
    {
        return choices
            .first()
            .map_or_else(|| "object".to_owned(), |first| field_type(first, root));
    }
    let kind = match &schema["type"] {
        Value::String(kind) => kind.as_str(),
        // ["object", "null"] and the like: the first that is not null.
        Value::Array(kinds) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| *k != "null")
            .unwrap_or("object"),
        _ => "object",
    };
    match kind {
        "array" => format!("array<{}>", field_type(&schema["items"], root)),
        "integer" => "integer".to_owned(),
        "number" => "float".to_owned(),
        "string" => "string".to_owned(),
        _ => "object".to_owned(),
    }
}

/// stream-sea fields of a JSON Schema object: every property, with its type and
/// description; those not every message has are marked `"optional": true`.
fn fields(root: &Value) -> Vec<Value> {
    let required: Vec<&str> = root["required"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    root["properties"]
        .as_object()
        .map(|properties| {
            properties
                .iter()
                .map(|(name, schema)| {
                    let mut field = Map::new();
                    field.insert("name".into(), name.clone().into());
                    field.insert("type".into(), field_type(schema, root).into());
                    if let Some(description) = schema.get("description") {
                        field.insert("description".into(), description.clone());
                    }
                    if !required.contains(&name.as_str()) {
                        field.insert("optional".into(), true.into());
                    }
                    Value::Object(field)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The JSON Schema of a stream's messages (what the catalogue publishes as
/// `message_schema`).
pub fn message_schema(stream: StreamKind) -> Value {
    match stream {
        StreamKind::ValidTransactions => crate::catalogue::schema_of::<TransactionEvent<'static>>(),
        StreamKind::ValidBlocks => crate::catalogue::schema_of::<BlockEvent<'static>>(),
    }
}

/// A stream's schema in stream-sea's form: exactly `name`, `version` and `fields`.
pub fn stream_schema(stream: StreamKind) -> Value {
    json!({
        "name": stream.name(),
        "version": SCHEMA_VERSION,
        "fields": fields(&message_schema(stream)),
    })
}

fn stream_schema_bytes(stream: StreamKind) -> &'static str {
    static SCHEMAS: OnceLock<[String; 2]> = OnceLock::new();
    let schemas = SCHEMAS.get_or_init(|| StreamKind::ALL.map(|s| stream_schema(s).to_string()));
    &schemas[usize::from(stream == StreamKind::ValidBlocks)]
}

fn unknown_stream(name: &str) -> HttpResponse {
    json_error(
        StatusCode::NOT_FOUND,
        "no such stream: expected valid_transactions or valid_blocks",
        Some(("stream", name)),
    )
}

/// `GET /api/v1/streams/<stream>/schema`.
async fn schema(path: web::Path<String>) -> HttpResponse {
    match path.parse::<StreamKind>() {
        Ok(stream) => HttpResponse::Ok()
            .content_type("application/json")
            .body(stream_schema_bytes(stream)),
        Err(_) => unknown_stream(&path),
    }
}

/// `POST /api/v1/streams/<stream>/publish` or `/define`.
async fn read_only(path: web::Path<(String, String)>) -> HttpResponse {
    let (stream, action) = path.into_inner();
    if stream.parse::<StreamKind>().is_err() {
        return unknown_stream(&stream);
    }
    let mut response = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("the node's streams are the chain's committed blocks and read-only: nothing can be {}d here", action),
        Some(("stream", &stream)),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
    response
}

/// The body as sent, or gunzipped when `Content-Encoding: gzip` says so (up to
/// [`MAX_BODY_BYTES`] once decompressed).
fn decoded(req: &HttpRequest, body: &[u8]) -> Result<Vec<u8>, &'static str> {
    let gzip = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("gzip"));
    if !gzip || body.is_empty() {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(MAX_BODY_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|_| "the body is not gzip")?;
    if out.len() as u64 > MAX_BODY_BYTES {
        return Err("the body is too large");
    }
    Ok(out)
}

/// `POST /api/v1/schema-versions-vector`.
async fn versions_vector(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let body = match decoded(&req, &body) {
        Ok(body) => body,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, message, None),
    };
    let names = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|request| request.get("schemaNames").cloned())
        .and_then(|names| names.as_array().cloned());
    let Some(names) = names else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "expected {\"schemaNames\": [\"<stream>\", ...]}",
            Some(("parameter", "schemaNames")),
        );
    };
    let versions: Vec<Value> = names
        .iter()
        .map(|name| match name.as_str().map(str::parse::<StreamKind>) {
            Some(Ok(_)) => Value::from(SCHEMA_VERSION),
            _ => Value::Null,
        })
        .collect();
    HttpResponse::Ok().json(json!({ "versionsVector": versions }))
}

/// Registers the schema routes (both ports).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/v1/streams/{stream}/schema").route(web::get().to(schema)))
        .service(
            web::resource("/api/v1/streams/{stream}/{action:publish|define}")
                .route(web::post().to(read_only)),
        )
        .service(
            web::resource(VERSIONS_VECTOR_PATH)
                .app_data(web::PayloadConfig::new(MAX_BODY_BYTES as usize))
                .route(web::post().to(versions_vector)),
        );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(stream: StreamKind) -> Vec<(String, String, bool)> {
        stream_schema(stream)["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().unwrap_or("").to_owned(),
                    f["type"].as_str().unwrap_or("").to_owned(),
                    f.get("optional").is_some(),
                )
            })
            .collect()
    }

    #[test]
    fn the_schemas_name_every_field_of_the_messages_in_stream_seas_types() {
        let schema = stream_schema(StreamKind::ValidTransactions);
        assert_eq!(
            schema
                .as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>()),
            Some(vec![
                "fields".to_owned(),
                "name".to_owned(),
                "version".to_owned()
            ]),
            "exactly the three keys SchemaDefinition takes"
        );
        let mut tx = types(StreamKind::ValidTransactions);
        tx.sort();
        assert_eq!(
            tx,
            vec![
                ("asset_id".into(), "string".into(), false),
                ("asset_ids".into(), "array<string>".into(), false),
                ("height".into(), "integer".into(), false),
                ("transaction".into(), "object".into(), true),
                ("transaction_id".into(), "string".into(), false),
            ]
        );
        let mut blocks = types(StreamKind::ValidBlocks);
        blocks.sort();
        assert_eq!(
            blocks,
            vec![
                ("hash".into(), "string".into(), false),
                ("height".into(), "integer".into(), false),
                ("transaction_ids".into(), "array<string>".into(), false),
            ]
        );
    }
}
