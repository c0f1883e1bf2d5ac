//! The HTTP side of the stream port: the routes, and the handlers that admit a request
//! ([`crate::admission`]), upgrade it, and hand the connection to its dialect and the driver
//! ([`crate::engine::drive`]).
//!
//! - `GET /api/v1/streams/valid_transactions`, `/valid_blocks` with a WebSocket upgrade: a URL
//!   stream ([`crate::dialects::url`]); without one, `Accept: text/event-stream` or
//!   `application/x-ndjson` gets the same stream over plain HTTP ([`crate::dialects::http`]).
//!   Its query is parsed first (400).
//! - `GET /api/v1/streams` with a WebSocket upgrade: the one-socket channel, JSON-RPC or
//!   stream-sea ([`crate::dialects::channel`]).

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::http::{header, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpResponseBuilder, HttpServer};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::admission::{admit, refuse, subscription_refused, Admitted, CredentialNeed, WayIn};
use crate::dialects::channel::Channel;
use crate::dialects::http::{last_event_id, Format, PlainHttpStream};
use crate::dialects::url::UrlStream;
use crate::engine::body::{ConnectionBody, Control};
use crate::engine::connection::{Connection, ConnectionLimits};
use crate::engine::inbound::{Reading, Reassembly};
use crate::engine::link::http_control;
use crate::engine::{drive, Dialect, Link};
pub use crate::http::{json_error, VALID_BLOCKS_PATH, VALID_TRANSACTIONS_PATH};
use crate::limits::TokenBucket;
use crate::queue::SubscriberQueue;
use crate::subscription::{StreamKind, Subscription};
use crate::StreamContext;

/// How long a connection may linger after the response (the close frame) was written:
/// none. RFC 6455 5.5.1 has the server close TCP right after the close handshake; actix-http
/// would otherwise wait up to a second for the client to close first.
const CLOSE_LINGER: Duration = Duration::ZERO;

async fn valid_transactions(
    req: HttpRequest,
    payload: web::Payload,
    ctx: web::Data<StreamContext>,
) -> HttpResponse {
    url_stream(
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
    url_stream(req, payload, ctx.into_inner(), StreamKind::ValidBlocks)
}

/// The parts of a WebSocket connection after its upgrade: the response to send (whose body
/// the driver's connection fills) and the link the driver reads and closes.
struct Upgraded {
    response: HttpResponse,
    link: Link,
}

/// Completes a WebSocket handshake; `reading` says how client messages are taken.
fn upgrade_websocket(
    ctx: &StreamContext,
    req: &HttpRequest,
    payload: web::Payload,
    queue: &Arc<SubscriberQueue>,
    reading: Reading,
) -> Result<Upgraded, Box<HttpResponse>> {
    let (response, session, inbound) = actix_ws::handle(req, payload).map_err(|err| {
        Box::new(refuse(
            ctx,
            "not_websocket",
            json_error(StatusCode::BAD_REQUEST, &err.to_string(), None),
        ))
    })?;
    let inbound = inbound.max_frame_size(ctx.config.max_frame_size);
    let (head, control) = response.into_parts();
    let body = ConnectionBody::new(
        Control::WebSocket(control),
        queue.clone(),
        ctx.hub.metrics(),
        CancellationToken::new(),
    );
    Ok(Upgraded {
        response: head.set_body(body.boxed()),
        link: Link::WebSocket {
            session,
            inbound,
            reassembly: Reassembly::new(reading),
        },
    })
}

/// Runs `dialect` over `conn` and `link` until the connection ends.
fn spawn<D: Dialect + 'static>(conn: Connection, dialect: D, link: Link) {
    actix_web::rt::spawn(drive(conn, dialect, link));
}

/// The 400 for a bad query parameter (or `Last-Event-ID`).
fn bad_parameter(ctx: &StreamContext, parameter: &str, message: &str) -> HttpResponse {
    refuse(
        ctx,
        "bad_parameter",
        json_error(
            StatusCode::BAD_REQUEST,
            message,
            Some(("parameter", parameter)),
        ),
    )
}

/// A URL stream: over a WebSocket unless the request asks for a plain HTTP format instead.
fn url_stream(
    req: HttpRequest,
    payload: web::Payload,
    ctx: Arc<StreamContext>,
    stream: StreamKind,
) -> HttpResponse {
    let mut subscription =
        match Subscription::parse(stream, req.query_string(), &ctx.config.param_limits()) {
            Ok(subscription) => subscription,
            Err(err) => return bad_parameter(&ctx, &err.parameter, &err.message),
        };
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let format = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .and_then(Format::from_accept);
    match format {
        Some(format) if !upgrade => {
            // An EventSource resuming after a drop: its Last-Event-ID wins over from_height.
            // (An empty one names nothing: EventSource sends none before its first id.)
            let resume = req
                .headers()
                .get("last-event-id")
                .filter(|value| !value.as_bytes().iter().all(u8::is_ascii_whitespace));
            if let Some(value) = resume {
                match value.to_str().ok().and_then(last_event_id) {
                    Some(height) => subscription.from_height = Some(height),
                    None => {
                        return bad_parameter(
                            &ctx,
                            "Last-Event-ID",
                            "expected the height of the last event received",
                        )
                    }
                }
            }
            plain_http_stream(&req, ctx, format, subscription)
        }
        _ => websocket_stream(&req, payload, ctx, subscription),
    }
}

/// The connection of a URL's one subscription (a WebSocket or a plain HTTP stream): admitted,
/// with its queue; the subscription is opened by its dialect. Also returns the replay slot the
/// subscription's `from_height` took.
fn url_connection(
    ctx: &Arc<StreamContext>,
    req: &HttpRequest,
    what: &str,
    websocket: bool,
    subscription: &Subscription,
) -> Result<(Connection, Option<crate::limits::ConnectionSlot>), Box<HttpResponse>> {
    let way = WayIn {
        what,
        websocket,
        subscription: Some(subscription),
        credential: CredentialNeed::Required,
    };
    let Admitted {
        slot,
        access,
        replay_slot,
    } = admit(ctx, req, way)?;
    let queue = Arc::new(
        SubscriberQueue::new(ctx.config.queue_limits()).with_budget(slot.budget().clone()),
    );
    let peer = req.peer_addr().map(|a| a.ip());
    let budget = TokenBucket::new(
        f64::from(ctx.config.inbound_frames_per_second),
        f64::from(ctx.config.inbound_frames_burst),
    );
    let limits = ConnectionLimits {
        max_subscriptions: 1,
        max_filter_values: usize::MAX,
    };
    let conn = Connection::new(ctx.clone(), queue, slot, peer, access, limits, budget);
    Ok((conn, replay_slot))
}

/// A plain HTTP stream: admitted like a URL stream, opened before its response starts.
fn plain_http_stream(
    req: &HttpRequest,
    ctx: Arc<StreamContext>,
    format: Format,
    subscription: Subscription,
) -> HttpResponse {
    let (mut conn, replay_slot) =
        match url_connection(&ctx, req, format.describe(), false, &subscription) {
            Ok(parts) => parts,
            Err(response) => return *response,
        };
    let queue = conn.queue.clone();
    let since = ctx.hub.last_published();
    let stream = subscription.stream;
    let dialect = match PlainHttpStream::open(&mut conn, format, subscription, since, replay_slot) {
        Ok(dialect) => dialect,
        Err(refusal) => return subscription_refused(&ctx, &refusal),
    };
    let (control, chunks) = http_control();
    let gone = CancellationToken::new();
    let body = ConnectionBody::new(
        Control::Http(chunks),
        queue,
        ctx.hub.metrics(),
        gone.clone(),
    );
    let link = Link::Http {
        control,
        keep_alive: format.keep_alive(),
        gone,
    };
    debug!(stream = stream.name(), peer = ?req.peer_addr(), ?format, "plain HTTP subscriber connected");
    spawn(conn, dialect, link);
    let mut response = HttpResponse::Ok();
    response
        .insert_header((header::CONTENT_TYPE, format.content_type()))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Tells nginx and its kin to pass each event on at once instead of buffering.
        .insert_header(("x-accel-buffering", "no"));
    allow_origin(&ctx, req, &mut response);
    response.body(body)
}

/// Lets a page on another origin read a plain HTTP stream (`EventSource` from a wallet's own
/// site): any origin when `streams.allowed_origins` is empty, else the request's allowed one
/// (admission has refused any other).
fn allow_origin(ctx: &StreamContext, req: &HttpRequest, response: &mut HttpResponseBuilder) {
    if ctx.config.allowed_origins.is_empty() {
        response.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"));
    } else if let Some(origin) = req.headers().get(header::ORIGIN) {
        response
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()))
            .insert_header((header::VARY, "Origin"));
    }
}

/// The CORS preflight of a stream URL (a page sending `Authorization` or `Last-Event-ID`).
async fn preflight(req: HttpRequest, ctx: web::Data<StreamContext>) -> HttpResponse {
    let mut response = HttpResponse::NoContent();
    allow_origin(&ctx, &req, &mut response);
    response
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET"))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "Authorization, Last-Event-ID, Accept",
        ))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
        .finish()
}

/// A URL stream over a WebSocket: admitted, upgraded, opened before the handshake is
/// answered (so a client that saw its 101 is counted and gets every later block).
fn websocket_stream(
    req: &HttpRequest,
    payload: web::Payload,
    ctx: Arc<StreamContext>,
    subscription: Subscription,
) -> HttpResponse {
    let stream = subscription.stream;
    let (mut conn, replay_slot) =
        match url_connection(&ctx, req, "a WebSocket stream", true, &subscription) {
            Ok(parts) => parts,
            Err(response) => return *response,
        };
    let upgraded = match upgrade_websocket(&ctx, req, payload, &conn.queue, Reading::CheckOnly) {
        Ok(upgraded) => upgraded,
        Err(response) => return *response,
    };
    // A live subscriber gets every block published after this: its handshake is answered now.
    let since = ctx.hub.last_published();
    let dialect = match UrlStream::open(&mut conn, subscription, since, replay_slot) {
        Ok(dialect) => dialect,
        Err(refusal) => return subscription_refused(&ctx, &refusal),
    };
    debug!(stream = stream.name(), peer = ?req.peer_addr(), "subscriber connected");
    spawn(conn, dialect, upgraded.link);
    upgraded.response
}

/// `GET /api/v1/streams`: upgrades to a connection of the one-socket channel.
async fn channel(
    req: HttpRequest,
    payload: web::Payload,
    ctx: web::Data<StreamContext>,
) -> HttpResponse {
    let ctx = ctx.into_inner();
    let way = WayIn {
        what: "the stream channel (JSON-RPC or stream-sea)",
        websocket: true,
        subscription: None,
        credential: CredentialNeed::Optional,
    };
    let Admitted { slot, access, .. } = match admit(&ctx, &req, way) {
        Ok(admitted) => admitted,
        Err(response) => return *response,
    };
    let limits = ctx.config.rpc_limits();
    let queue = Arc::new(
        SubscriberQueue::new(limits.queue)
            .with_replay_limits(limits.replay_queue())
            .with_budget(slot.budget().clone()),
    );
    let reading = Reading::Whole {
        max_bytes: ctx.config.max_frame_size,
    };
    let upgraded = match upgrade_websocket(&ctx, &req, payload, &queue, reading) {
        Ok(upgraded) => upgraded,
        Err(response) => return *response,
    };
    let budget = TokenBucket::new(
        f64::from(limits.requests_per_second),
        f64::from(limits.requests_burst),
    );
    let connection_limits = ConnectionLimits {
        max_subscriptions: limits.max_subscriptions,
        max_filter_values: limits.max_filter_values,
    };
    let peer = req.peer_addr().map(|a| a.ip());
    debug!(peer = ?req.peer_addr(), "channel client connected");
    let conn = Connection::new(
        ctx.clone(),
        queue,
        slot,
        peer,
        access,
        connection_limits,
        budget,
    )
    .on_channel(ctx.hub.metrics().rpc_connections.clone());
    spawn(conn, Channel::default(), upgraded.link);
    upgraded.response
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
        "stream paths accept GET (a WebSocket upgrade, or Accept: text/event-stream or application/x-ndjson)",
        None,
    )
}

/// Registers the stream routes on an actix-web app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(crate::dialects::streamsea::schema::configure)
        .service(
            web::resource(VALID_TRANSACTIONS_PATH)
                .route(web::get().to(valid_transactions))
                .route(web::method(actix_web::http::Method::OPTIONS).to(preflight))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource(VALID_BLOCKS_PATH)
                .route(web::get().to(valid_blocks))
                .route(web::method(actix_web::http::Method::OPTIONS).to(preflight))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource(crate::http::STREAMS_PATH)
                .route(web::get().to(channel))
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
