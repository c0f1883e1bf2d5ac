//! The HTTP side of the stream port: routes, checks before the upgrade, JSON errors.
//!
//! A request to a stream path is checked in this order, each refusal a JSON body:
//! query parameters (400), the signed token when required (401 missing or malformed, 403
//! refused), Origin (403), WebSocket handshake (400), connection limits (503 server full,
//! 429 too many from this address), and for a resume that must read Tarantool, the
//! per-address replay limit (429). Only then is it upgraded.

use std::sync::Arc;
use std::time::Duration;

use actix_http::ws::HandshakeError;
use actix_web::body::MessageBody;
use actix_web::http::{header, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use planetmint_streams_auth::{token_from_query, unix_now, AuthError, Requested};
use planetmint_streams_model::vocabulary::json_error_body;
use tracing::{debug, info};

use crate::body::StreamBody;
use crate::limits::Refusal;
use crate::metrics::GaugeCount;
use crate::queue::SubscriberQueue;
use crate::session;
use crate::subscription::{StreamKind, Subscription};
use crate::StreamContext;

pub use planetmint_streams_model::vocabulary::{VALID_BLOCKS_PATH, VALID_TRANSACTIONS_PATH};
/// How long a connection may linger after the response (the close frame) was written:
/// none. RFC 6455 5.5.1 has the server close TCP right after the close handshake; actix-http
/// would otherwise wait up to a second for the client to close first.
const CLOSE_LINGER: Duration = Duration::ZERO;
/// Seconds a refused client is told to wait (`Retry-After`).
const RETRY_AFTER_SECONDS: &str = "5";

/// The one WebSocket version the server speaks (RFC 6455).
const WEBSOCKET_VERSION: &str = "13";

/// A JSON error response `{"error": message, "status": code, ...extra}`.
pub fn json_error(status: StatusCode, message: &str, extra: Option<(&str, &str)>) -> HttpResponse {
    let extra: Vec<(&str, &str)> = extra.into_iter().collect();
    HttpResponse::build(status).json(json_error_body(status.as_u16(), message, &extra))
}

pub(crate) fn retry_later(status: StatusCode, message: &str) -> HttpResponse {
    let mut response = json_error(status, message, None);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
    );
    response
}

/// The 403 for a browser Origin that `streams.allowed_origins` does not list.
pub(crate) fn origin_refused(ctx: &StreamContext, req: &HttpRequest) -> Option<HttpResponse> {
    let origin = req.headers().get(header::ORIGIN)?;
    let allowed = &ctx.config.allowed_origins;
    let origin = origin.to_str().unwrap_or("");
    if !allowed.is_empty() && !allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        return Some(json_error(
            StatusCode::FORBIDDEN,
            "this Origin may not subscribe",
            Some(("origin", origin)),
        ));
    }
    None
}

async fn valid_transactions(
    req: HttpRequest,
    payload: web::Payload,
    ctx: web::Data<StreamContext>,
) -> HttpResponse {
    subscribe(
        req,
        payload,
        ctx.into_inner(),
        StreamKind::ValidTransactions,
    )
}

async fn valid_blocks(
    req: HttpRequest,
    payload: web::Payload,
    ctx: web::Data<StreamContext>,
) -> HttpResponse {
    subscribe(req, payload, ctx.into_inner(), StreamKind::ValidBlocks)
}

fn subscribe(
    req: HttpRequest,
    payload: web::Payload,
    ctx: Arc<StreamContext>,
    stream: StreamKind,
) -> HttpResponse {
    let metrics = ctx.hub.metrics();
    let refuse = |reason: &str, response: HttpResponse| {
        metrics.rejected.with_label_values(&[reason]).inc();
        response
    };
    let subscription =
        match Subscription::parse(stream, req.query_string(), &ctx.config.param_limits()) {
            Ok(subscription) => subscription,
            Err(err) => {
                return refuse(
                    "bad_parameter",
                    json_error(
                        StatusCode::BAD_REQUEST,
                        &err.message,
                        Some(("parameter", &err.parameter)),
                    ),
                )
            }
        };
    let token_expires = match authorize(&ctx, &req, stream, &subscription) {
        Ok(expires) => expires,
        Err(err) => return token_refused(&ctx, &req, stream, &err),
    };
    let slot = match admit_upgrade(&ctx, &req, "a WebSocket stream") {
        Ok(slot) => slot,
        Err(response) => return *response,
    };
    // Replays that read Tarantool are limited per address (the read budget limits them all).
    let replay_slot = match subscription.from_height {
        Some(after) if ctx.hub.needs_source(after) => {
            match ctx.replay_limiter.acquire(req.peer_addr().map(|a| a.ip())) {
                Ok(slot) => Some(slot),
                Err(_) => {
                    return refuse(
                        "too_many_replays_from_ip",
                        retry_later(
                            StatusCode::TOO_MANY_REQUESTS,
                            "too many subscriptions from this address are replaying history; retry when they have caught up",
                        ),
                    )
                }
            }
        }
        _ => None,
    };
    let (response, session, inbound) = match actix_ws::handle(&req, payload) {
        Ok(parts) => parts,
        Err(err) => {
            return refuse(
                "not_websocket",
                json_error(StatusCode::BAD_REQUEST, &err.to_string(), None),
            )
        }
    };
    let inbound = inbound.max_frame_size(ctx.config.max_frame_size);
    // A live subscriber gets every block published after this: its handshake is answered now.
    let connected_after = ctx.hub.last_published();
    let queue = Arc::new(SubscriberQueue::new(
        ctx.config.queue_limits(),
        subscription.from_height.or(connected_after),
    ));
    debug!(
        stream = stream.name(),
        peer = ?req.peer_addr(),
        from_height = subscription.from_height,
        "subscriber connected"
    );
    let (head, control) = response.into_parts();
    metrics
        .connections
        .with_label_values(&[stream.name()])
        .inc();
    let counted = GaugeCount::new(metrics.subscribers.with_label_values(&[stream.name()]));
    let body = StreamBody::new(control, queue.clone(), stream, metrics);
    let session_parts = session::SessionParts {
        session,
        inbound,
        queue,
        slot,
        token_expires,
        replay_slot,
        counted,
        connected_after,
    };
    actix_web::rt::spawn(session::run(ctx.clone(), subscription, session_parts));
    head.set_body(body.boxed())
}

/// The checks every upgrade (URL stream or JSON-RPC channel) makes after its own: Origin
/// (403), the WebSocket handshake (400, naming `what` the path is), the connection limits
/// (503, 429). Returns the connection's slot, or the refusal, counted in the metrics.
pub(crate) fn admit_upgrade(
    ctx: &StreamContext,
    req: &HttpRequest,
    what: &str,
) -> Result<crate::limits::ConnectionSlot, Box<HttpResponse>> {
    let refuse = |reason: &str, response: HttpResponse| {
        ctx.hub
            .metrics()
            .rejected
            .with_label_values(&[reason])
            .inc();
        Box::new(response)
    };
    if let Some(response) = origin_refused(ctx, req) {
        return Err(refuse("origin", response));
    }
    if let Err(err) = actix_http::ws::verify_handshake(req.head()) {
        let message = format!("this is {what}; connect with a WebSocket client ({err})");
        // RFC 6455 4.2.2: a version the server does not speak is answered with the one it
        // does, so that a client can retry with it (426: RFC 9110 15.5.22).
        let response = if matches!(err, HandshakeError::UnsupportedVersion) {
            let mut response = json_error(StatusCode::UPGRADE_REQUIRED, &message, None);
            let headers = response.headers_mut();
            headers.insert(
                header::SEC_WEBSOCKET_VERSION,
                header::HeaderValue::from_static(WEBSOCKET_VERSION),
            );
            headers.insert(
                header::UPGRADE,
                header::HeaderValue::from_static("websocket"),
            );
            response
        } else {
            json_error(StatusCode::BAD_REQUEST, &message, None)
        };
        return Err(refuse("not_websocket", response));
    }
    ctx.limiter
        .acquire(req.peer_addr().map(|a| a.ip()))
        .map_err(|refusal| {
            let (reason, response) = connection_refused(refusal);
            refuse(reason, response)
        })
}

/// The answer to a request refused by the connection limits (metric reason and response:
/// 503 when the server is full, 429 for too many from this address).
fn connection_refused(refusal: Refusal) -> (&'static str, HttpResponse) {
    match refusal {
        Refusal::Full => (
            "server_full",
            retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server has no room for more subscribers",
            ),
        ),
        Refusal::TooManyFromIp => (
            "too_many_from_ip",
            retry_later(
                StatusCode::TOO_MANY_REQUESTS,
                "too many subscriptions from this address",
            ),
        ),
    }
}

/// In signed mode, checks the URL's token against the subscription; returns when the token
/// expires (for `close_on_expiry`).
fn authorize(
    ctx: &StreamContext,
    req: &HttpRequest,
    stream: StreamKind,
    subscription: &Subscription,
) -> Result<Option<std::time::Instant>, AuthError> {
    let Some(authority) = &ctx.auth else {
        return Ok(None);
    };
    let requested = Requested {
        stream,
        public_keys: &subscription.filter.public_keys,
        asset_ids: &subscription.filter.asset_ids,
        operations: &subscription.filter.operations,
    };
    let claims = token_from_query(req.query_string())
        .and_then(|token| authority.authorize(token.as_deref(), &requested))?;
    Ok(ctx
        .close_on_expiry
        .then(|| std::time::Instant::now() + claims.expires_in(unix_now())))
}

/// The refusal of a stream URL whose token does not allow it.
fn token_refused(
    ctx: &StreamContext,
    req: &HttpRequest,
    stream: StreamKind,
    err: &AuthError,
) -> HttpResponse {
    // The reason is logged; the token never is (it is a credential).
    info!(stream = stream.name(), peer = ?req.peer_addr(), reason = err.reason(), "stream URL refused");
    ctx.hub
        .metrics()
        .rejected
        .with_label_values(&[err.reason()])
        .inc();
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::FORBIDDEN);
    let mut response = json_error(status, &err.to_string(), Some(("reason", err.reason())));
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Token param=\"token\""),
        );
    }
    response
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    json_error(
        StatusCode::NOT_FOUND,
        "no such path",
        Some(("path", req.path())),
    )
}

async fn method_not_allowed() -> HttpResponse {
    json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "stream paths accept GET (a WebSocket upgrade)",
        None,
    )
}

/// Registers the stream routes on an actix-web app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(VALID_TRANSACTIONS_PATH)
            .route(web::get().to(valid_transactions))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource(VALID_BLOCKS_PATH)
            .route(web::get().to(valid_blocks))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource(crate::rpc::RPC_PATH)
            .route(web::get().to(crate::rpc::upgrade))
            .default_service(web::to(method_not_allowed)),
    )
    .default_service(web::to(not_found));
}

/// Tunes an accepted socket for streaming:
/// - TCP_NODELAY: a block's frames go out in one write; with Nagle's algorithm that write
///   waits while the previous block is unacknowledged, and a client's delayed ACK made that up
///   to 40 ms (p99 36 ms at 75 blocks/s in benchmark S4, against 4 ms without it).
/// - TCP_USER_TIMEOUT: data a client leaves unacknowledged (it stopped reading) for longer
///   makes the kernel drop the connection, so a stuck client cannot hold a socket and its
///   buffers forever.
fn tune_stream_socket(connection: &dyn std::any::Any, timeout: Duration) {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    let tcp = connection
        .downcast_ref::<actix_web::rt::net::TcpStream>()
        .or_else(|| connection.downcast_ref::<Tls>().map(|tls| tls.get_ref().0));
    if let Some(stream) = tcp {
        let socket = socket2::SockRef::from(stream);
        if let Err(err) = socket.set_tcp_nodelay(true) {
            debug!(error = %err, "cannot set TCP_NODELAY");
        }
        if let Err(err) = socket.set_tcp_user_timeout(Some(timeout)) {
            debug!(error = %err, "cannot set TCP_USER_TIMEOUT");
        }
    }
}

/// Builds the stream server on an already bound listener; the caller runs (awaits) it and
/// stops it through its handle.
pub fn build(
    ctx: Arc<StreamContext>,
    listener: std::net::TcpListener,
    tls: Option<rustls::ServerConfig>,
) -> std::io::Result<actix_web::dev::Server> {
    let workers = match ctx.config.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let grace = ctx.config.shutdown_grace.as_secs().max(1);
    // Room for the requests refused with 503/429 on top of the subscriptions themselves.
    let max_sockets_per_worker = ctx.config.max_connections.div_ceil(workers) + 1024;
    let handshake_timeout = ctx.config.handshake_timeout;
    let user_timeout = ctx.config.tcp_user_timeout;
    let data = web::Data::from(ctx);
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(configure))
        .workers(workers)
        .max_connections(max_sockets_per_worker)
        .client_request_timeout(handshake_timeout)
        // RFC 6455 5.5.1: after the close handshake the server closes TCP at once (actix
        // otherwise lingers up to a second for the client to close first).
        .client_disconnect_timeout(CLOSE_LINGER)
        .on_connect(move |connection, _| tune_stream_socket(connection, user_timeout))
        .disable_signals()
        .shutdown_timeout(grace);
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}
