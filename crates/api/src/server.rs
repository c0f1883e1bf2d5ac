//! Routes of the HTTP API.

use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use prometheus::{Encoder, Registry, TextEncoder};
use serde::Serialize;

use crate::config::ApiConfig;
use crate::discovery::{api_v1_document, root_document, Advertised};
use crate::proxy::{self, Upstream};

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
}

impl ApiContext {
    fn upstream(&self) -> Option<Upstream> {
        self.config
            .upstream
            .as_deref()
            .map(|base| Upstream::new(base, self.config.upstream_timeout))
    }
}

fn json_error(status: StatusCode, message: &str, path: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({
        "error": message,
        "status": status.as_u16(),
        "path": path,
    }))
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

/// The live page: self-contained HTML and JavaScript (no CDN), connects to the advertised
/// stream URL found in `/api/v1/`.
const EXPLORER_HTML: &str = include_str!("../assets/explorer.html");

/// The page runs only its own inline script and style and talks only to this node's API and
/// its streams.
const EXPLORER_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                            img-src 'self' data:; connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'";

async fn explorer() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("cache-control", "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, EXPLORER_CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(EXPLORER_HTML)
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

/// Everything else: forwarded to Planetmint in drop-in mode, else 404.
async fn fallback(
    req: HttpRequest,
    body: web::Bytes,
    ctx: web::Data<ApiContext>,
    client: web::Data<awc::Client>,
) -> HttpResponse {
    match ctx.upstream() {
        Some(upstream) => proxy::forward(req, body, &upstream, &client).await,
        None => json_error(StatusCode::NOT_FOUND, "no such path", req.path()),
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
        .service(get("/api/v1/streams").route(web::get().to(stream_catalogue)))
        .service(get("/api/v1/streams/").route(web::get().to(stream_catalogue)))
        .service(get("/api/v1/streams/asyncapi.json").route(web::get().to(asyncapi)))
        .service(get("/ready").route(web::get().to(ready)))
        .route("/health", web::get().to(health))
        .route("/metrics", web::get().to(metrics))
        .route("/explorer", web::get().to(explorer))
        .default_service(web::to(fallback));
}

/// Builds the API server on an already bound listener.
pub fn build(
    ctx: Arc<ApiContext>,
    listener: std::net::TcpListener,
    tls: Option<rustls::ServerConfig>,
) -> std::io::Result<actix_web::dev::Server> {
    let workers = ctx.config.workers.max(1);
    let max_body = ctx.config.upstream_max_body;
    let data = web::Data::from(ctx);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::Data::new(proxy::client()))
            .app_data(web::PayloadConfig::new(max_body))
            .configure(configure)
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(2);
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}
