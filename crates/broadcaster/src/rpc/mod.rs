//! The one-socket JSON-RPC stream channel: `ws(s)://<host>:9985/api/v1/streams`, many
//! subscriptions over one WebSocket, controlled by JSON-RPC 2.0 requests (`authenticate`,
//! `subscribe`, `unsubscribe`, `update`, `describe`), events as `subscription` notifications.
//! The URL streams are unchanged beside it.
//!
//! - [`protocol`]: the messages, the request parser and the error codes;
//! - [`envelope`]: the notification wrapped around each message, copied around the block's
//!   shared serialized payload;
//! - [`limits`]: subscriptions and filter values per connection, request rate;
//! - `session`: one connection's task; `body`: its response body and per-subscription
//!   progress (`last_heights`).
//!
//! Before the upgrade a request is checked like a stream URL's, in this order: a `token` in
//! the URL when signed mode is on (optional here: `authenticate` keeps tokens out of URLs;
//! 401/403 when present and refused), Origin (403), WebSocket handshake (400), connection
//! limits (503, 429; a JSON-RPC connection takes one slot whatever its subscriptions).

pub mod envelope;
pub mod limits;
pub mod protocol;

mod body;
mod session;

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use planetmint_streams_auth::token_from_query;
use tracing::{debug, info};

use crate::metrics::GaugeCount;
use crate::queue::SubscriberQueue;
use crate::server::{admit_upgrade, json_error};
use crate::StreamContext;

/// Path of the JSON-RPC channel on the stream port.
pub const RPC_PATH: &str = planetmint_streams_model::vocabulary::STREAMS_PATH;

/// `GET /api/v1/streams`: upgrades to a JSON-RPC connection.
pub(crate) async fn upgrade(
    req: HttpRequest,
    payload: web::Payload,
    ctx: web::Data<StreamContext>,
) -> HttpResponse {
    let ctx = ctx.into_inner();
    let metrics = ctx.hub.metrics();
    let refuse = |reason: &str, response: HttpResponse| {
        metrics.rejected.with_label_values(&[reason]).inc();
        response
    };
    // A token in the URL authenticates the connection up front; without one, signed mode
    // asks for `authenticate` as the first request.
    let claims = match &ctx.auth {
        None => None,
        Some(authority) => match token_from_query(req.query_string())
            .and_then(|token| token.map(|token| authority.verify(&token)).transpose())
        {
            Ok(claims) => claims,
            Err(err) => {
                // The reason is logged; the token never is (it is a credential).
                info!(peer = ?req.peer_addr(), reason = err.reason(), "JSON-RPC stream URL refused");
                let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::FORBIDDEN);
                return refuse(
                    err.reason(),
                    json_error(status, &err.to_string(), Some(("reason", err.reason()))),
                );
            }
        },
    };
    let slot = match admit_upgrade(&ctx, &req, "the JSON-RPC stream channel") {
        Ok(slot) => slot,
        Err(response) => return *response,
    };
    let (response, ws_session, inbound) = match actix_ws::handle(&req, payload) {
        Ok(parts) => parts,
        Err(err) => {
            return refuse(
                "not_websocket",
                json_error(StatusCode::BAD_REQUEST, &err.to_string(), None),
            )
        }
    };
    let max_frame = ctx.config.max_frame_size;
    let inbound = inbound
        .max_frame_size(max_frame)
        .aggregate_continuations()
        .max_continuation_size(max_frame);
    let limits = ctx.config.rpc_limits();
    let queue = Arc::new(
        SubscriberQueue::new(limits.queue, None).with_replay_limits(limits.replay_queue()),
    );
    let progress = Arc::new(body::Progress::default());
    debug!(peer = ?req.peer_addr(), authenticated = claims.is_some(), "JSON-RPC client connected");
    let (head, control) = response.into_parts();
    let counted = GaugeCount::new(metrics.rpc_connections.clone());
    let body = body::RpcBody::new(control, queue.clone(), progress.clone(), metrics);
    let parts = session::RpcParts {
        session: ws_session,
        inbound,
        queue,
        progress,
        slot,
        claims,
        peer: req.peer_addr().map(|a| a.ip()),
        counted,
    };
    actix_web::rt::spawn(session::run(ctx.clone(), parts));
    head.set_body(body.boxed())
}
