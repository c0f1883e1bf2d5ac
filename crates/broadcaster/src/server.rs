//! The HTTP side of the stream port: routes, checks before the upgrade, JSON errors.

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use tracing::debug;

use crate::body::StreamBody;
use crate::queue::SubscriberQueue;
use crate::session;
use crate::subscription::{StreamKind, Subscription};
use crate::StreamContext;

/// Path of the transactions stream.
pub const VALID_TRANSACTIONS_PATH: &str = "/api/v1/streams/valid_transactions";
/// Path of the blocks stream.
pub const VALID_BLOCKS_PATH: &str = "/api/v1/streams/valid_blocks";

/// A JSON error response `{"error": message, ...extra}`.
pub fn json_error(status: StatusCode, message: &str, extra: Option<(&str, &str)>) -> HttpResponse {
    let mut body = serde_json::Map::new();
    body.insert("error".into(), message.into());
    body.insert("status".into(), status.as_u16().into());
    if let Some((key, value)) = extra {
        body.insert(key.into(), value.into());
    }
    HttpResponse::build(status).json(serde_json::Value::Object(body))
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
    let subscription =
        match Subscription::parse(stream, req.query_string(), &ctx.config.param_limits()) {
            Ok(subscription) => subscription,
            Err(err) => {
                metrics.rejected.with_label_values(&["bad_parameter"]).inc();
                return json_error(
                    StatusCode::BAD_REQUEST,
                    &err.message,
                    Some(("parameter", &err.parameter)),
                );
            }
        };
    if let Err(err) = actix_http::ws::verify_handshake(req.head()) {
        metrics.rejected.with_label_values(&["not_websocket"]).inc();
        return json_error(
            StatusCode::BAD_REQUEST,
            &format!("this is a WebSocket stream; connect with a WebSocket client ({err})"),
            None,
        );
    }
    let (response, session, inbound) = match actix_ws::handle(&req, payload) {
        Ok(parts) => parts,
        Err(err) => {
            metrics.rejected.with_label_values(&["not_websocket"]).inc();
            return json_error(StatusCode::BAD_REQUEST, &err.to_string(), None);
        }
    };
    let inbound = inbound.max_frame_size(ctx.config.max_frame_size);
    let queue = Arc::new(SubscriberQueue::new(
        ctx.config.queue_limits(),
        subscription
            .from_height
            .or_else(|| ctx.hub.last_published()),
    ));
    debug!(
        stream = stream.name(),
        peer = ?req.peer_addr(),
        from_height = subscription.from_height,
        "subscriber connected"
    );
    let (head, control) = response.into_parts();
    let body = StreamBody::new(control, queue.clone(), stream, metrics);
    actix_web::rt::spawn(session::run(
        ctx.clone(),
        subscription,
        session,
        inbound,
        queue,
    ));
    head.set_body(body.boxed())
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
    .default_service(web::to(not_found));
}

/// Builds the stream server on an already bound listener; the caller runs (awaits) it and
/// stops it through its handle.
pub fn build(
    ctx: Arc<StreamContext>,
    listener: std::net::TcpListener,
) -> std::io::Result<actix_web::dev::Server> {
    let workers = match ctx.config.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let grace = ctx.config.shutdown_grace.as_secs().max(1);
    let data = web::Data::from(ctx);
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(configure))
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(grace)
        .listen(listener)?
        .run();
    Ok(server)
}
