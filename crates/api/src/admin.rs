//! The token-issuing admin endpoint: `POST /admin/tokens`, on its own address (loopback by
//! default), for a backend that hands signed stream URLs to its users.
//!
//! Request (JSON): `{"streams": ["valid_transactions"], "public_keys": [...], "asset_ids":
//! [...], "operations": [...], "ttl": "2m"}` with `Authorization: Bearer <admin secret>`.
//! Answer: `{"token", "expires_at", "urls": {"<stream>": "<signed stream URL>"}}`. Refusals:
//! 401 without the right bearer secret, 400 for a bad request (JSON `{"error", "parameter"}`).
//!
//! With `[tls]` the endpoint is served over TLS like the other ports; without it the node
//! refuses to start when `auth.admin.bind` is not a loopback address.

use planetmint_streams_broadcaster::http::json_error_body;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use planetmint_streams_auth::{
    signed_url, BearerError, BearerSecret, Grant, Stream, TokenAuthority,
};
use serde::Deserialize;
use tracing::info;

use crate::discovery::Advertised;

/// What the admin endpoint shares.
pub struct AdminContext {
    /// Issues and verifies tokens.
    pub authority: Arc<TokenAuthority>,
    /// The secret callers must present.
    pub secret: BearerSecret,
    /// Where the streams are published (for the URLs handed out).
    pub advertised: Advertised,
}

/// The body of `POST /admin/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    streams: Vec<String>,
    #[serde(default)]
    public_keys: Vec<String>,
    #[serde(default)]
    asset_ids: Vec<String>,
    #[serde(default)]
    operations: Vec<String>,
    #[serde(default, with = "humantime_serde")]
    ttl: Option<Duration>,
}

fn error(status: StatusCode, message: &str, parameter: Option<&str>) -> HttpResponse {
    let extra: Vec<(&str, &str)> = parameter.map(|p| ("parameter", p)).into_iter().collect();
    HttpResponse::build(status).json(json_error_body(status.as_u16(), message, &extra))
}

/// Largest request body the admin endpoint reads (a token request is a few hundred bytes).
pub const MAX_REQUEST_BODY: usize = 64 * 1024;

async fn issue(
    req: HttpRequest,
    payload: web::Payload,
    ctx: web::Data<AdminContext>,
) -> HttpResponse {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Err(err) = ctx.secret.check(authorization) {
        info!(peer = ?req.peer_addr(), reason = err.reason(), "admin request refused");
        let mut response = error(StatusCode::UNAUTHORIZED, &err.to_string(), None);
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static(BearerError::WWW_AUTHENTICATE),
        );
        return response;
    }
    // The body is read only once the caller has shown the secret.
    let body = match payload.to_bytes_limited(MAX_REQUEST_BODY).await {
        Ok(Ok(body)) => body,
        Ok(Err(err)) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("bad request body: {err}"),
                Some("body"),
            )
        }
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body larger than {MAX_REQUEST_BODY} bytes"),
                Some("body"),
            )
        }
    };
    let request: TokenRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("bad request body: {err}"),
                Some("body"),
            )
        }
    };
    let mut streams = Vec::new();
    for name in &request.streams {
        match name.parse::<Stream>() {
            Ok(stream) => streams.push(stream),
            Err(err) => return error(StatusCode::BAD_REQUEST, &err.to_string(), Some("streams")),
        }
    }
    let mut grant = Grant::new(streams.iter().copied());
    for key in request.public_keys {
        grant = grant.public_key(key);
    }
    for asset in request.asset_ids {
        grant = grant.asset_id(asset);
    }
    for operation in request.operations {
        grant = grant.operation(operation);
    }
    let issued = match ctx.authority.issue(&grant, request.ttl) {
        Ok(issued) => issued,
        Err(err) => {
            let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return error(status, &err.to_string(), Some(err.parameter()));
        }
    };
    let mut urls = serde_json::Map::new();
    for stream in &streams {
        let base = match stream {
            Stream::ValidTransactions => ctx.advertised.valid_transactions(),
            Stream::ValidBlocks => ctx.advertised.valid_blocks(),
        };
        match signed_url(&base, issued.claims.pins.query_pairs(), &issued.token) {
            Ok(url) => {
                urls.insert(stream.name().to_owned(), url.into());
            }
            Err(err) => return error(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string(), None),
        }
    }
    info!(streams = ?request.streams, expires_at = issued.claims.expires_at, "token issued");
    HttpResponse::Ok().json(serde_json::json!({
        "token": issued.token,
        "expires_at": issued.claims.expires_at,
        "urls": urls,
    }))
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    error(
        StatusCode::NOT_FOUND,
        &format!("no such path: {}", req.path()),
        None,
    )
}

/// Builds the admin server on an already bound listener; with `tls` (the node's `[tls]`) it
/// speaks HTTPS only, so the bearer secret and the tokens it hands out never cross a network
/// in clear.
pub fn build(
    ctx: Arc<AdminContext>,
    listener: std::net::TcpListener,
    tls: Option<rustls::ServerConfig>,
) -> std::io::Result<actix_web::dev::Server> {
    let data = web::Data::from(ctx);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/admin/tokens", web::post().to(issue))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1);
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}
