//! Routes of the HTTP API, and what guards the port before any route runs.
//!
//! Every connection takes a slot of a [`ConnectionLimiter`] (`api.max_connections` in all,
//! `api.max_connections_per_ip` per client: an IPv4 address or an IPv6 /64) when it is
//! accepted; a connection beyond a limit gets one JSON answer (503 or 429) and is closed.
//! Request targets must be origin-form (start with `/`): `OPTIONS *`, `POST *` and
//! absolute-form targets get a 400 before routing, so nothing is ever forwarded for them.
//! Request bodies are read only when forwarded to Planetmint (drop-in mode, [`proxy`]).
//!
//! Other parts of the node may add routes ([`ApiContext::extra_routes`], the JetStream tier's)
//! and, when client certificates are optional at the TLS handshake, name the paths that
//! answer callers without one ([`ApiContext::certificate_optional_paths`]); every other path
//! then answers them 401. The verified certificate of a connection is in its connection data
//! ([`peer_certificate`]).

pub use planetmint_streams_broadcaster::catalogue::ASYNCAPI_PATH;
use planetmint_streams_broadcaster::http::{json_error_body, STREAMS_PATH};
use std::any::Any;
use std::cell::RefCell;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{self, Extensions, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::{header, StatusCode};
use actix_web::middleware::{from_fn, DefaultHeaders, Next};
use actix_web::web::Bytes;
use actix_web::{web, App, HttpMessage, HttpRequest, HttpResponse, HttpServer};
use futures_util::Stream;
use planetmint_streams_broadcaster::limits::{ConnectionLimiter, ConnectionSlot, Refusal};
use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};
use serde::Serialize;
use tracing::info;

use crate::config::ApiConfig;
use crate::discovery::{api_v1_document, root_document, Advertised};
use crate::proxy::{self, BodyLimits, Upstream};

/// The state `/ready` reports.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Readiness {
    /// Whether the node should receive traffic.
    pub ready: bool,
    /// Whether Tarantool answers.
    pub source_reachable: bool,
    /// Highest committed height in Tarantool, as last read.
    pub head_height: u64,
    /// Last height streamed.
    pub streamed_height: u64,
    /// `head_height - streamed_height`.
    pub lag_blocks: u64,
    /// Why not ready, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What the API's routes share.
pub struct ApiContext {
    /// Where the stream server is published.
    pub advertised: Advertised,
    /// Our version, for the root document.
    pub version: String,
    /// Metrics exported at `/metrics`.
    pub registry: Registry,
    /// Computes the current readiness.
    pub readiness: Arc<dyn Fn() -> Readiness + Send + Sync>,
    /// Settings.
    pub config: ApiConfig,
    /// `GET /api/v1/streams`: the stream catalogue.
    pub catalogue: serde_json::Value,
    /// `GET /api/v1/streams/asyncapi.json`.
    pub asyncapi: serde_json::Value,
    /// Routes other parts of the node add (registered before the built-in ones).
    pub extra_routes: Option<ExtraRoutes>,
    /// `Some` when the TLS handshake accepts clients without a certificate although a client
    /// CA is configured: the path prefixes that answer them; every other path answers 401.
    pub certificate_optional_paths: Option<Vec<&'static str>>,
}

/// Routes added to the API port from outside this crate.
pub type ExtraRoutes = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// The client certificate a connection presented (verified against `tls.client_ca_file` by
/// the handshake), kept in its connection data.
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Option<rustls::pki_types::CertificateDer<'static>>);

/// The verified client certificate of `req`'s connection (leaf first), if it presented one.
pub fn peer_certificate(req: &HttpRequest) -> Option<rustls::pki_types::CertificateDer<'static>> {
    req.conn_data::<PeerCertificate>()
        .and_then(|peer| peer.0.clone())
}

/// The leaf certificate a TLS connection presented, as actix hands it to `on_connect`.
fn presented_certificate(connection: &dyn Any) -> PeerCertificate {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    PeerCertificate(
        connection
            .downcast_ref::<Tls>()
            .and_then(|tls| tls.get_ref().1.peer_certificates())
            .and_then(|chain| chain.first())
            .map(|leaf| leaf.clone().into_owned()),
    )
}

impl ApiContext {
    fn upstream(&self) -> Option<Upstream> {
        self.config
            .upstream
            .as_deref()
            .map(|base| Upstream::new(base, self.config.upstream_timeout))
    }

    fn body_limits(&self) -> BodyLimits {
        BodyLimits {
            max_bytes: self.config.upstream_max_body,
            timeout: self.config.body_timeout,
        }
    }
}

/// Requests the API port refused before routing, by reason: `server_full`,
/// `too_many_from_ip`, `bad_target`, `no_client_certificate`.
#[derive(Clone)]
struct Refused(IntCounterVec);

/// `Retry-After` of the 503 and 429 answers to connections over a limit.
const RETRY_AFTER_SECONDS: &str = "5";

/// Metric name of [`Refused`].
pub const REFUSED_METRIC: &str = "planetmint_streams_api_refused_total";

/// What a connection learnt when it was accepted: its slot, or why it has none.
struct ConnectionAdmission(Result<ConnectionSlot, Refusal>);

/// The peer's address of a plain or TLS connection, as actix hands it to `on_connect`.
fn peer_ip(connection: &dyn Any) -> Option<IpAddr> {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    let tcp = connection
        .downcast_ref::<actix_web::rt::net::TcpStream>()
        .or_else(|| connection.downcast_ref::<Tls>().map(|tls| tls.get_ref().0));
    tcp.and_then(|stream| stream.peer_addr().ok())
        .map(|addr| addr.ip())
}

/// Before routing: connections over a limit and request targets that are not a path are
/// answered here, and closed; their bodies are never read.
async fn gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let refused = req.app_data::<web::Data<Refused>>().cloned();
    let count = |reason: &str| {
        if let Some(refused) = &refused {
            refused.0.with_label_values(&[reason]).inc();
        }
    };
    let admission = req
        .conn_data::<ConnectionAdmission>()
        .and_then(|admission| admission.0.as_ref().err().copied());
    let (status, message, retry) = match admission {
        Some(Refusal::Full) => {
            count("server_full");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many connections to this node; retry later",
                true,
            )
        }
        Some(Refusal::TooManyFromIp) => {
            count("too_many_from_ip");
            (
                StatusCode::TOO_MANY_REQUESTS,
                "too many connections from your address; close some and retry",
                true,
            )
        }
        None => {
            let uri = req.uri();
            let origin_form =
                uri.scheme().is_none() && uri.authority().is_none() && uri.path().starts_with('/');
            if origin_form && !lacks_required_certificate(&req) {
                return route_holding_the_body(req, next)
                    .await
                    .map(ServiceResponse::map_into_left_body);
            }
            if origin_form {
                count("no_client_certificate");
                let (http_req, payload) = req.into_parts();
                let answer = proxy::closing_json(
                    StatusCode::UNAUTHORIZED,
                    &json_error_body(
                        401,
                        "this path needs a client certificate signed by the node's client CA",
                        &[("path", http_req.path())],
                    ),
                    Some(payload),
                );
                return Ok(ServiceResponse::new(http_req, answer).map_into_right_body());
            }
            count("bad_target");
            info!(peer = ?req.peer_addr(), method = %req.method(), "request target is not a path: refused");
            (
                StatusCode::BAD_REQUEST,
                "the request target must be a path starting with / (no *, no absolute URL)",
                false,
            )
        }
    };
    // The request's body stays unread and the connection is closed after the answer.
    let (http_req, payload) = req.into_parts();
    let mut answer = proxy::closing_json(
        status,
        &json_error_body(status.as_u16(), message, &[]),
        Some(payload),
    );
    if retry {
        answer.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
        );
    }
    Ok(ServiceResponse::new(http_req, answer).map_into_right_body())
}

/// Whether `req` came without a client certificate to a path that needs one (only when
/// certificates are optional at the handshake).
fn lacks_required_certificate(req: &ServiceRequest) -> bool {
    let Some(open) = req
        .app_data::<web::Data<ApiContext>>()
        .and_then(|ctx| ctx.certificate_optional_paths.clone())
    else {
        return false;
    };
    let presented = req
        .conn_data::<PeerCertificate>()
        .is_some_and(|peer| peer.0.is_some());
    let path = req.path();
    !presented && !open.iter().any(|prefix| path.starts_with(prefix))
}

/// The request's body as the routes see it: read through to the original, which stays with
/// the gate ([`HeldBody`]).
struct SharedPayload(Rc<RefCell<Option<dev::Payload>>>);

impl Stream for SharedPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.0.borrow_mut().as_mut() {
            Some(payload) => Pin::new(payload).poll_next(cx),
            None => Poll::Ready(None),
        }
    }
}

/// A response body that keeps the request's original body alive until the response is
/// written: when a route did not read the whole body (`POST /health`, a 404 without an
/// upstream, a refusal), actix-http then closes the connection after the response instead of
/// reading and discarding a chunked body for as long as the client sends it.
struct HeldBody {
    body: BoxBody,
    _request_body: Rc<RefCell<Option<dev::Payload>>>,
}

impl MessageBody for HeldBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}

/// Runs the routes with the body behind a [`SharedPayload`] and answers with a [`HeldBody`].
async fn route_holding_the_body(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<HeldBody>, actix_web::Error> {
    let original = Rc::new(RefCell::new(Some(req.take_payload())));
    let shared: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
        Box::pin(SharedPayload(original.clone()));
    req.set_payload(dev::Payload::from(shared));
    let response = next.call(req).await?;
    Ok(response.map_body(|_, body| HeldBody {
        body: body.boxed(),
        _request_body: original,
    }))
}

fn json_error(status: StatusCode, message: &str, path: &str) -> HttpResponse {
    HttpResponse::build(status).json(json_error_body(status.as_u16(), message, &[("path", path)]))
}

async fn root(ctx: web::Data<ApiContext>, client: web::Data<awc::Client>) -> HttpResponse {
    if let Some(upstream) = ctx.upstream() {
        if let Some(document) = proxy::root_document("/", &upstream, &client, &ctx.advertised).await
        {
            return HttpResponse::Ok().json(document);
        }
    }
    HttpResponse::Ok().json(root_document(&ctx.advertised, &ctx.version))
}

async fn api_v1(ctx: web::Data<ApiContext>, client: web::Data<awc::Client>) -> HttpResponse {
    if let Some(upstream) = ctx.upstream() {
        if let Some(document) =
            proxy::root_document("/api/v1/", &upstream, &client, &ctx.advertised).await
        {
            return HttpResponse::Ok().json(document);
        }
    }
    HttpResponse::Ok().json(api_v1_document(&ctx.advertised))
}

async fn stream_catalogue(ctx: web::Data<ApiContext>) -> HttpResponse {
    HttpResponse::Ok().json(&ctx.catalogue)
}

async fn asyncapi(ctx: web::Data<ApiContext>) -> HttpResponse {
    HttpResponse::Ok().json(&ctx.asyncapi)
}

async fn health(ctx: web::Data<ApiContext>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok", "version": ctx.version}))
}

async fn ready(ctx: web::Data<ApiContext>) -> HttpResponse {
    let readiness = (ctx.readiness)();
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    HttpResponse::build(status).json(readiness)
}

async fn metrics(ctx: web::Data<ApiContext>) -> HttpResponse {
    let encoder = TextEncoder::new();
    let mut buffer = Vec::new();
    match encoder.encode(&ctx.registry.gather(), &mut buffer) {
        Ok(()) => HttpResponse::Ok()
            .content_type(encoder.format_type())
            .body(buffer),
        Err(err) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &err.to_string(),
            "/metrics",
        ),
    }
}

/// Everything else: forwarded to Planetmint in drop-in mode, else 404 without reading the
/// body (the connection is closed when one was sent).
async fn fallback(
    req: HttpRequest,
    payload: web::Payload,
    ctx: web::Data<ApiContext>,
    client: web::Data<awc::Client>,
) -> HttpResponse {
    match ctx.upstream() {
        Some(upstream) => proxy::forward(req, payload, &upstream, ctx.body_limits(), &client).await,
        None => {
            let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
                || req
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .is_some_and(|v| v.as_bytes() != b"0");
            if has_body {
                proxy::closing_json(
                    StatusCode::NOT_FOUND,
                    &json_error_body(404, "no such path", &[("path", req.path())]),
                    Some(payload.into_inner()),
                )
            } else {
                json_error(StatusCode::NOT_FOUND, "no such path", req.path())
            }
        }
    }
}

/// Registers the API routes on an actix-web app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // Discovery documents are public and read by pages on other origins (wallet web apps), as
    // with Planetmint's API.
    let public = || DefaultHeaders::new().add((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"));
    let get = |path: &'static str| web::resource(path).wrap(public());
    cfg.service(get("/").route(web::get().to(root)))
        .service(get("/api/v1/").route(web::get().to(api_v1)))
        .service(get("/api/v1").route(web::get().to(api_v1)))
        .service(get(STREAMS_PATH).route(web::get().to(stream_catalogue)))
        .service(get("/api/v1/streams/").route(web::get().to(stream_catalogue)))
        .service(get(ASYNCAPI_PATH).route(web::get().to(asyncapi)))
        .service(get("/ready").route(web::get().to(ready)))
        .route("/health", web::get().to(health))
        .route("/metrics", web::get().to(metrics))
        .configure(crate::explorer::configure)
        // stream-sea's schemas (its client asks the host and port it streams from, which may
        // be this one too).
        .configure(planetmint_streams_broadcaster::dialects::streamsea::schema::configure)
        .default_service(web::to(fallback));
}

/// Builds the API server on an already bound listener.
pub fn build(
    ctx: Arc<ApiContext>,
    listener: std::net::TcpListener,
    tls: Option<rustls::ServerConfig>,
) -> std::io::Result<actix_web::dev::Server> {
    let workers = ctx.config.workers.max(1);
    let limiter = Arc::new(ConnectionLimiter::new(
        ctx.config.max_connections,
        ctx.config.max_connections_per_ip,
    ));
    let refused = IntCounterVec::new(
        Opts::new(
            REFUSED_METRIC,
            "Requests the API port refused before routing, by reason",
        ),
        &["reason"],
    )
    .map_err(std::io::Error::other)?;
    ctx.registry
        .register(Box::new(refused.clone()))
        .map_err(std::io::Error::other)?;
    let refused = web::Data::new(Refused(refused));
    // Above the limiter's cap a connection still gets its 503; far above it (this cap on
    // every worker) actix stops accepting until connections end.
    let accept_cap = ctx.config.max_connections.saturating_add(workers);
    let extra_routes = ctx.extra_routes.clone();
    let data = web::Data::from(ctx);
    let server = HttpServer::new(move || {
        let extra_routes = extra_routes.clone();
        App::new()
            .app_data(data.clone())
            .app_data(refused.clone())
            .app_data(web::Data::new(proxy::client()))
            .configure(move |cfg| {
                if let Some(extra) = &extra_routes {
                    extra(cfg);
                }
            })
            .configure(configure)
            .wrap(from_fn(gate))
    })
    .on_connect(move |connection, extensions: &mut Extensions| {
        extensions.insert(ConnectionAdmission(limiter.acquire(peer_ip(connection))));
        extensions.insert(presented_certificate(connection));
    })
    .max_connections(accept_cap)
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(2);
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}
