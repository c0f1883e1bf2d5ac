//! Drop-in mode: requests the API does not answer itself go to Planetmint's own API unchanged,
//! and the root documents are Planetmint's with `streams`/`streamedblocks` pointing at us.
//!
//! Method, path, query, headers and body are forwarded; status, headers and body come back.
//! Hop-by-hop headers (RFC 9110 7.6.1) are dropped in both directions and `X-Forwarded-*` are
//! added. When Planetmint cannot be reached or does not answer in time the client gets a 502
//! with a JSON body; the root documents are then built by us instead.

use std::time::Duration;

use actix_web::body::{BodyStream, SizedStream};
use actix_web::http::header::{self, HeaderName};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::TryStreamExt;
use serde_json::Value;
use tracing::warn;

use crate::discovery::Advertised;

/// Headers that describe one connection, not the request: never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// How long the root document may take upstream before we answer with our own.
const ROOT_DOCUMENT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where Planetmint's API is and how to reach it.
#[derive(Debug, Clone)]
pub struct Upstream {
    base: String,
    timeout: Duration,
}

impl Upstream {
    /// Upstream at `base` (`http://host:port`).
    pub fn new(base: &str, timeout: Duration) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            timeout,
        }
    }

    /// The upstream base URL.
    pub fn base(&self) -> &str {
        &self.base
    }
}

/// An HTTP client for one worker (awc clients are per thread).
pub fn client() -> awc::Client {
    awc::Client::builder()
        .disable_redirects()
        .timeout(Duration::from_secs(3600))
        .finish()
}

fn is_hop_by_hop(name: &HeaderName, connection_listed: &[String]) -> bool {
    HOP_BY_HOP.contains(&name.as_str()) || connection_listed.iter().any(|h| h == name.as_str())
}

fn connection_listed(headers: &header::HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_ascii_lowercase())
        .collect()
}

fn bad_gateway(message: &str) -> HttpResponse {
    HttpResponse::BadGateway().json(serde_json::json!({
        "error": message,
        "status": 502,
    }))
}

/// Forwards the request to Planetmint and relays the answer.
pub async fn forward(
    req: HttpRequest,
    body: web::Bytes,
    upstream: &Upstream,
    client: &awc::Client,
) -> HttpResponse {
    let path_and_query = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let url = format!("{}{path_and_query}", upstream.base);
    let mut request = client
        .request(req.method().clone(), &url)
        .timeout(upstream.timeout);
    let listed = connection_listed(req.headers());
    for (name, value) in req.headers() {
        if !is_hop_by_hop(name, &listed) {
            request = request.append_header((name.clone(), value.clone()));
        }
    }
    if let Some(peer) = req.peer_addr() {
        let forwarded_for = match req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(earlier) => format!("{earlier}, {}", peer.ip()),
            None => peer.ip().to_string(),
        };
        request = request.insert_header(("x-forwarded-for", forwarded_for));
    }
    if let Some(host) = req.headers().get(header::HOST) {
        request = request.insert_header(("x-forwarded-host", host.clone()));
    }
    request = request.insert_header((
        "x-forwarded-proto",
        req.connection_info().scheme().to_owned(),
    ));
    let response = match request.send_body(body).await {
        Ok(response) => response,
        Err(err) => {
            warn!(upstream = %upstream.base, error = %err, path = req.path(), "forwarding to Planetmint failed");
            let message = match err {
                awc::error::SendRequestError::Timeout => format!(
                    "Planetmint's API at {} did not answer within {:?}",
                    upstream.base, upstream.timeout
                ),
                other => format!(
                    "Planetmint's API at {} cannot be reached: {other}",
                    upstream.base
                ),
            };
            return bad_gateway(&message);
        }
    };
    let mut reply = HttpResponse::build(response.status());
    let listed = connection_listed(response.headers());
    for (name, value) in response.headers() {
        if !is_hop_by_hop(name, &listed) && name != header::CONTENT_LENGTH {
            reply.append_header((name.clone(), value.clone()));
        }
    }
    let length = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let stream = response.map_err(|e| -> Box<dyn std::error::Error> { Box::new(e) });
    match length {
        Some(length) => reply.body(SizedStream::new(length, stream)),
        None => reply.body(BodyStream::new(stream)),
    }
}

/// Planetmint's root document at `path` (`/` or `/api/v1/`) with our stream URLs, or `None`
/// when Planetmint does not give a JSON object in time.
pub async fn root_document(
    path: &str,
    upstream: &Upstream,
    client: &awc::Client,
    advertised: &Advertised,
) -> Option<Value> {
    let url = format!("{}{path}", upstream.base);
    let mut response = client
        .get(&url)
        .insert_header((header::ACCEPT, "application/json"))
        .timeout(ROOT_DOCUMENT_TIMEOUT.min(upstream.timeout))
        .send()
        .await
        .ok()?;
    if response.status() != StatusCode::OK {
        return None;
    }
    let mut document: Value = response.json().limit(1 << 20).await.ok()?;
    let v1 = if path == "/" {
        document.get_mut("api")?.get_mut("v1")?
    } else {
        &mut document
    };
    let v1 = v1.as_object_mut()?;
    v1.insert("streams".into(), advertised.valid_transactions().into());
    v1.insert("streamedblocks".into(), advertised.valid_blocks().into());
    Some(document)
}
