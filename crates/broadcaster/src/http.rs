//! The HTTP words of the node, shared by the stream port and the API port: the paths of the
//! streams and the JSON-RPC channel, and the one shape of every JSON error the node answers
//! (`{"error", "status", ...}`), with the headers that go with it.

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;

use crate::subscription::StreamKind;

/// Path of the transactions stream (Planetmint's).
pub const VALID_TRANSACTIONS_PATH: &str = "/api/v1/streams/valid_transactions";
/// Path of the blocks stream (Planetmint's).
pub const VALID_BLOCKS_PATH: &str = "/api/v1/streams/valid_blocks";
/// Path of the one-socket channel (JSON-RPC, stream-sea) on the stream port, and of the
/// stream catalogue on the API port.
pub const STREAMS_PATH: &str = "/api/v1/streams";

/// Seconds a refused client is told to wait (`Retry-After`).
const RETRY_AFTER_SECONDS: &str = "5";

/// A stream's path on the stream port.
pub fn stream_path(stream: StreamKind) -> &'static str {
    match stream {
        StreamKind::ValidTransactions => VALID_TRANSACTIONS_PATH,
        StreamKind::ValidBlocks => VALID_BLOCKS_PATH,
    }
}

/// The JSON body of every HTTP error the node answers: `{"error": message, "status": code}`
/// and any `extra` fields (`parameter`, `path`, `reason`, ...).
pub fn json_error_body(status: u16, message: &str, extra: &[(&str, &str)]) -> serde_json::Value {
    let mut body = serde_json::Map::new();
    body.insert("error".into(), message.into());
    body.insert("status".into(), status.into());
    for (key, value) in extra {
        body.insert((*key).into(), (*value).into());
    }
    serde_json::Value::Object(body)
}

/// A JSON error response `{"error": message, "status": code, ...extra}`.
pub fn json_error(status: StatusCode, message: &str, extra: Option<(&str, &str)>) -> HttpResponse {
    let extra: Vec<(&str, &str)> = extra.into_iter().collect();
    HttpResponse::build(status).json(json_error_body(status.as_u16(), message, &extra))
}

/// A JSON error telling the client to retry later (`Retry-After`).
pub fn retry_later(status: StatusCode, message: &str, extra: Option<(&str, &str)>) -> HttpResponse {
    let mut response = json_error(status, message, extra);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_paths_end_with_their_names_under_the_channel() {
        for stream in StreamKind::ALL {
            let path = stream_path(stream);
            assert!(path.ends_with(stream.name()));
            assert!(path.starts_with(STREAMS_PATH));
        }
    }

    #[test]
    fn error_bodies_have_error_status_and_extras() {
        let body = json_error_body(400, "bad", &[("parameter", "from_height")]);
        assert_eq!(
            body,
            serde_json::json!({"error": "bad", "status": 400, "parameter": "from_height"})
        );
    }
}
