//! One admission path for every way in (URL streams, the one-socket channel, plain HTTP
//! streams): the same checks in the same order, the same JSON error bodies and headers
//! whichever protocol refuses, each refusal counted by reason
//! (`planetmint_streams_rejected_connections_total`).
//!
//! In order: the credential (`?token=` or `Authorization: Bearer`; 401 missing or malformed,
//! with `WWW-Authenticate`, 403 refused), the browser's Origin (403), the WebSocket handshake
//! (400, or 426 for another protocol version), the connection limits (503 server full, 429 too
//! many from this address), and for a resume that must read Tarantool, the per-address replay
//! limit (429). A way in that asks for a subscription in its URL has it parsed before (400).

use actix_http::ws::HandshakeError;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use planetmint_streams_auth::{token_from_query, AuthError, Credential, Requested};
use tracing::info;

use crate::engine::connection::{Access, SubscribeRefusal};
use crate::http::{json_error, retry_later};
use crate::limits::{ConnectionSlot, Refusal};
use crate::subscription::Subscription;
use crate::StreamContext;

/// The one WebSocket version the server speaks (RFC 6455).
const WEBSOCKET_VERSION: &str = "13";

/// Whether a way in needs a credential before it connects (in signed mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CredentialNeed {
    /// The URL names a subscription: it needs a credential that allows it.
    Required,
    /// A credential may come later, in the protocol (JSON-RPC `authenticate`).
    Optional,
}

/// What is being admitted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WayIn<'a> {
    /// What the path is, for the client ("a WebSocket stream", ...).
    pub what: &'a str,
    /// Whether it is a WebSocket upgrade (its handshake is checked).
    pub websocket: bool,
    /// The subscription its URL asks for.
    pub subscription: Option<&'a Subscription>,
    /// Whether a credential is needed now.
    pub credential: CredentialNeed,
}

/// What an admitted connection holds.
#[derive(Debug)]
pub(crate) struct Admitted {
    /// Its place under the connection limits (with its address's budget).
    pub slot: ConnectionSlot,
    /// Who it speaks for (and its place under a configured client's own connection cap).
    pub access: Access,
    /// Its place under the per-address replay limit, when its URL's `from_height` reads
    /// the source.
    pub replay_slot: Option<ConnectionSlot>,
}

/// Counts a refusal by `reason` and passes its response on.
pub(crate) fn refuse(ctx: &StreamContext, reason: &str, response: HttpResponse) -> HttpResponse {
    ctx.hub
        .metrics()
        .rejected
        .with_label_values(&[reason])
        .inc();
    response
}

/// The credential a request presents: the `token` query parameter (a stream token), else an
/// `Authorization: Bearer` header (a stream token or a JWT).
fn presented(req: &HttpRequest) -> Result<Option<String>, AuthError> {
    if let Some(token) = token_from_query(req.query_string())? {
        return Ok(Some(token));
    }
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AuthError::Malformed("Authorization header is not text"))?;
    match Credential::from_authorization(Some(value))? {
        Credential::Bearer(bearer) => Ok(Some(bearer.to_owned())),
        _ => Err(AuthError::Malformed(
            "expected Authorization: Bearer <token>",
        )),
    }
}

/// The access a request's credential gives, for `way`.
fn access(ctx: &StreamContext, req: &HttpRequest, way: &WayIn<'_>) -> Result<Access, AuthError> {
    let Some(gatekeeper) = &ctx.auth else {
        return Ok(Access::Open);
    };
    let presented = presented(req)?;
    let credential = presented.as_deref().map(Credential::Bearer);
    let granted = match (way.credential, credential) {
        (CredentialNeed::Required, None) => return Err(AuthError::Missing),
        (CredentialNeed::Optional, None) => return Ok(Access::Required),
        (_, Some(credential)) => gatekeeper.verify(credential)?,
    };
    if let Some(subscription) = way.subscription {
        granted.allows(&Requested {
            stream: subscription.stream,
            public_keys: &subscription.filter.public_keys,
            asset_ids: &subscription.filter.asset_ids,
            operations: &subscription.filter.operations,
        })?;
    }
    Access::granted(ctx, gatekeeper, granted)
}

/// The refusal of a credential.
fn credential_refused(ctx: &StreamContext, req: &HttpRequest, err: &AuthError) -> HttpResponse {
    // The reason is logged; the credential never is.
    info!(path = req.path(), peer = ?req.peer_addr(), reason = err.reason(), "credential refused");
    ctx.hub
        .metrics()
        .credential_refusals
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
    refuse(ctx, err.reason(), response)
}

/// The 403 for a browser Origin that `streams.allowed_origins` does not list.
fn origin_refused(ctx: &StreamContext, req: &HttpRequest) -> Option<HttpResponse> {
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

/// The refusal of a request that is not a WebSocket handshake this server speaks.
fn handshake_refused(what: &str, err: &HandshakeError) -> HttpResponse {
    let message = format!("this is {what}; connect with a WebSocket client ({err})");
    // RFC 6455 4.2.2: a version the server does not speak is answered with the one it does,
    // so that a client can retry with it (426: RFC 9110 15.5.22).
    if matches!(err, HandshakeError::UnsupportedVersion) {
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
    }
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
                None,
            ),
        ),
        Refusal::TooManyFromIp => (
            "too_many_from_ip",
            retry_later(
                StatusCode::TOO_MANY_REQUESTS,
                "too many subscriptions from this address",
                None,
            ),
        ),
    }
}

/// Admits a request to a way in, or answers why not.
pub(crate) fn admit(
    ctx: &StreamContext,
    req: &HttpRequest,
    way: WayIn<'_>,
) -> Result<Admitted, Box<HttpResponse>> {
    let access =
        access(ctx, req, &way).map_err(|err| Box::new(credential_refused(ctx, req, &err)))?;
    if let Some(response) = origin_refused(ctx, req) {
        return Err(Box::new(refuse(ctx, "origin", response)));
    }
    if way.websocket {
        if let Err(err) = actix_http::ws::verify_handshake(req.head()) {
            let response = handshake_refused(way.what, &err);
            return Err(Box::new(refuse(ctx, "not_websocket", response)));
        }
    }
    let peer = req.peer_addr().map(|a| a.ip());
    let slot = ctx.limiter.acquire(peer).map_err(|refusal| {
        let (reason, response) = connection_refused(refusal);
        Box::new(refuse(ctx, reason, response))
    })?;
    // Replays that read Tarantool are limited per address (the read budget limits them all).
    let replay_slot = match way.subscription.and_then(|s| s.from_height) {
        Some(after) if ctx.hub.needs_source(after) => {
            Some(ctx.replay_limiter.acquire(peer).map_err(|_| {
                Box::new(refuse(
                    ctx,
                    "too_many_replays_from_ip",
                    retry_later(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too many subscriptions from this address are replaying history; retry when they have caught up",
                        None,
                    ),
                ))
            })?)
        }
        _ => None,
    };
    Ok(Admitted {
        slot,
        access,
        replay_slot,
    })
}

/// The answer to a URL's subscription its address has no room for (429), counted by the
/// limit it would pass.
pub(crate) fn subscription_refused(
    ctx: &StreamContext,
    refusal: &SubscribeRefusal,
) -> HttpResponse {
    let (reason, limit, message) = match refusal {
        SubscribeRefusal::Address(refusal) => {
            ("address_limit", refusal.label(), refusal.to_string())
        }
        SubscribeRefusal::Replays { max } => (
            "too_many_replays_from_ip",
            "replays_per_address",
            format!("at most {max} subscriptions from one address may replay history at once"),
        ),
        other => ("address_limit", "subscriptions", format!("{other:?}")),
    };
    ctx.hub
        .metrics()
        .address_limit_refusals
        .with_label_values(&[limit])
        .inc();
    refuse(
        ctx,
        reason,
        retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            &message,
            Some(("limit", limit)),
        ),
    )
}
