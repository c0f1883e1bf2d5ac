//! The JetStream tier in the node: wiring (the follower feeds the hub, then the publisher)
//! and the routes it adds to the API port for speedracer's flow and seek by height.
//!
//! Routes (API port):
//! - `GET /api/v1/config`: `{"api_gateway_url", "mas_url", "nats_url", "nats_websocket_url"}`
//!   (speedracer's first request); no client certificate needed.
//! - `GET /api/v1/gateway/jwt`: the gateway. With `tls.client_ca_file` it needs a client
//!   certificate signed by that CA and answers a JWT whose `CN` is the certificate's subject
//!   CN; without TLS client certificates (open mode, development) every call gets a new
//!   anonymous identity (`anonymous-<random>`), so no durable consumer outlives a connection.
//!   `auth.mode = "signed"` without a client CA: refused (no way to tell who asks).
//! - `GET /api/v1/user/jwt/<dataset>` with `Authorization: Bearer <gateway JWT>`: a bearer
//!   NATS user JWT that may read that dataset (one of our subjects) only; no client
//!   certificate needed (the gateway JWT is the proof).
//! - `GET /api/v1/streams/<stream>/jetstream?height=H`: `{"stream", "subject", "sequence",
//!   ...}`, the sequence to start a consumer at to get the events at height H and above.

use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpRequest, HttpResponse};
use anyhow::Context;
use planetmint_streams_api::{peer_certificate, ExtraRoutes, Readiness};
use planetmint_streams_broadcaster::http::json_error as error;
use planetmint_streams_jetstream::credentials::{certificate_cn, unix_now};
use planetmint_streams_jetstream::jwt::JwtError;
use planetmint_streams_jetstream::{Identity, JetStreamTier, SeekError};
use planetmint_streams_model::vocabulary::StreamKind;
use planetmint_streams_model::{BlockSink, BlockSource, SinkFanOut};
use prometheus::{IntCounterVec, Opts, Registry};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// speedracer's configuration document.
pub const CONFIG_PATH: &str = "/api/v1/config";
/// The gateway (identity JWTs).
pub const GATEWAY_PATH: &str = "/api/v1/gateway/jwt";
/// Prefix of the user JWT endpoint (`<prefix><dataset>`).
pub const USER_JWT_PREFIX: &str = "/api/v1/user/jwt/";
/// The paths that answer callers without a client certificate.
pub const CERTIFICATE_OPTIONAL_PATHS: &[&str] = &[CONFIG_PATH, GATEWAY_PATH, USER_JWT_PREFIX];

/// Who the gateway hands identities to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayPolicy {
    /// Everyone, each call a new anonymous identity (no client CA, open mode).
    Anonymous,
    /// Holders of a client certificate signed by `tls.client_ca_file`.
    Certificate,
    /// Nobody: `auth.mode = "signed"` without a client CA.
    Closed,
}

impl GatewayPolicy {
    /// The policy `config` implies.
    pub fn of(config: &Config) -> Self {
        match (config.tls.client_ca_file.is_some(), config.auth.is_signed()) {
            (true, _) => GatewayPolicy::Certificate,
            (false, false) => GatewayPolicy::Anonymous,
            (false, true) => GatewayPolicy::Closed,
        }
    }
}

/// The tier, its sink for the follower, or the hub alone without `[nats]`.
pub fn wire(
    config: &Config,
    source: Arc<dyn BlockSource>,
    registry: &Registry,
    hub: Arc<dyn BlockSink>,
    shutdown: &CancellationToken,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<(Option<JetStreamTier>, Arc<dyn BlockSink>)> {
    let Some(nats) = &config.nats else {
        return Ok((None, hub));
    };
    let (tier, publisher, live) = JetStreamTier::new(nats.clone(), source, registry)
        .context("starting the JetStream tier")?;
    if tier.issuer().is_ephemeral() {
        tracing::info!("nats.account_signing_key_file not set: clients' NATS JWTs are signed with a key made at start (for a nats-server without authentication)");
    }
    tasks.push(tokio::spawn(publisher.run(shutdown.child_token())));
    // The hub first: the publisher's sink only tries a bounded queue, it never waits.
    let fan_out: Arc<dyn BlockSink> = Arc::new(SinkFanOut::new(vec![hub, live]));
    Ok((Some(tier), fan_out))
}

/// `/ready` with the tier: not ready when `nats.ready_max_lag_blocks` is set and the
/// publisher is further behind.
pub fn readiness(mut base: Readiness, tier: Option<&JetStreamTier>) -> Readiness {
    let Some(tier) = tier else {
        return base;
    };
    let max = tier.config().ready_max_lag_blocks;
    if max == 0 || base.reason.is_some() {
        return base;
    }
    let lag = tier.lag_blocks();
    if !tier.is_up() {
        base.ready = false;
        base.reason =
            Some("not connected to NATS JetStream (nats.ready_max_lag_blocks is set)".into());
    } else if lag > max {
        base.ready = false;
        base.reason = Some(format!(
            "JetStream publishing is {lag} blocks behind (nats.ready_max_lag_blocks {max})"
        ));
    }
    base
}

/// What the routes share.
struct JetStreamApi {
    tier: JetStreamTier,
    gateway: GatewayPolicy,
    refused: IntCounterVec,
    issued: IntCounterVec,
}

/// The tier's routes on the API port, their metrics registered in `registry`.
pub fn routes(
    tier: JetStreamTier,
    gateway: GatewayPolicy,
    registry: &Registry,
) -> anyhow::Result<ExtraRoutes> {
    let refused = IntCounterVec::new(
        Opts::new(
            "planetmint_streams_jetstream_credentials_refused_total",
            "Gateway and user JWT requests refused, by reason",
        ),
        &["reason"],
    )?;
    let issued = IntCounterVec::new(
        Opts::new(
            "planetmint_streams_jetstream_jwts_issued_total",
            "JWTs handed out, by kind (gateway, user)",
        ),
        &["kind"],
    )?;
    registry.register(Box::new(refused.clone()))?;
    registry.register(Box::new(issued.clone()))?;
    let api = web::Data::new(JetStreamApi {
        tier,
        gateway,
        refused,
        issued,
    });
    Ok(Arc::new(move |cfg: &mut web::ServiceConfig| {
        // Public documents, read by pages on other origins too (a browser's nats.ws client).
        let public = || DefaultHeaders::new().add((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"));
        cfg.app_data(api.clone())
            .service(
                web::resource(CONFIG_PATH)
                    .wrap(public())
                    .route(web::get().to(config_document)),
            )
            .route(GATEWAY_PATH, web::get().to(gateway_jwt))
            .route(
                &format!("{USER_JWT_PREFIX}{{dataset}}"),
                web::get().to(user_jwt),
            )
            .service(
                web::resource("/api/v1/streams/{stream}/jetstream")
                    .wrap(public())
                    .route(web::get().to(seek_by_height)),
            );
    }))
}

impl JetStreamApi {
    fn refuse(&self, reason: &str, status: StatusCode, message: &str) -> HttpResponse {
        self.refused.with_label_values(&[reason]).inc();
        error(status, message, Some(("reason", reason)))
    }
}

/// `scheme://host` the caller reached us at.
fn base_url(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

async fn config_document(req: HttpRequest, api: web::Data<JetStreamApi>) -> HttpResponse {
    let base = base_url(&req);
    let config = api.tier.config();
    let nats_url = config.server_urls().into_iter().next().unwrap_or_default();
    // speedracer connects over WebSocket by default; without one the client port serves.
    let websocket = if config.websocket_url.is_empty() {
        nats_url.clone()
    } else {
        config.websocket_url.clone()
    };
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .json(serde_json::json!({
            "api_gateway_url": format!("{base}{GATEWAY_PATH}"),
            "mas_url": base,
            "nats_url": nats_url,
            "nats_websocket_url": websocket,
        }))
}

fn jwt_text(token: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/jwt")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(token)
}

async fn gateway_jwt(req: HttpRequest, api: web::Data<JetStreamApi>) -> HttpResponse {
    let identity = match (api.gateway, peer_certificate(&req)) {
        (GatewayPolicy::Closed, _) => {
            return api.refuse(
                "gateway_closed",
                StatusCode::FORBIDDEN,
                "auth.mode is signed but tls.client_ca_file is not set: the gateway cannot tell who you are",
            )
        }
        (GatewayPolicy::Certificate, None) => {
            return api.refuse(
                "no_certificate",
                StatusCode::UNAUTHORIZED,
                "the gateway needs a client certificate signed by the node's client CA",
            )
        }
        (GatewayPolicy::Certificate, Some(certificate)) => match certificate_cn(&certificate) {
            Some(cn) => Identity {
                cn,
                anonymous: false,
            },
            None => {
                return api.refuse(
                    "certificate_without_cn",
                    StatusCode::FORBIDDEN,
                    "the client certificate's subject has no CN",
                )
            }
        },
        (GatewayPolicy::Anonymous, _) => Identity {
            cn: format!("anonymous-{:032x}", rand::random::<u128>()),
            anonymous: true,
        },
    };
    match api.tier.issuer().gateway_jwt(&identity, unix_now()) {
        Ok(token) => {
            api.issued.with_label_values(&["gateway"]).inc();
            tracing::debug!(cn = %identity.cn, "gateway JWT issued");
            jwt_text(token)
        }
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string(), None),
    }
}

async fn user_jwt(
    req: HttpRequest,
    dataset: web::Path<String>,
    api: web::Data<JetStreamApi>,
) -> HttpResponse {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let Some(token) = token else {
        return api.refuse(
            "no_token",
            StatusCode::UNAUTHORIZED,
            "send the gateway's JWT as Authorization: Bearer <jwt>",
        );
    };
    let identity = match api.tier.issuer().verify_gateway_jwt(token, unix_now()) {
        Ok(identity) => identity,
        Err(JwtError::Expired) => {
            return api.refuse(
                "expired_token",
                StatusCode::UNAUTHORIZED,
                "the gateway JWT has expired: ask the gateway for a new one",
            )
        }
        Err(err) => {
            return api.refuse(
                "bad_token",
                StatusCode::FORBIDDEN,
                &format!("not a gateway JWT of this node: {err}"),
            )
        }
    };
    let Some(names) = api.tier.dataset(&dataset) else {
        let known: Vec<&str> = api
            .tier
            .names()
            .iter()
            .map(|n| n.subject.as_str())
            .collect();
        return api.refuse(
            "unknown_dataset",
            StatusCode::NOT_FOUND,
            &format!(
                "no dataset {:?}: the datasets are {}",
                dataset.chars().take(100).collect::<String>(),
                known.join(", ")
            ),
        );
    };
    match api.tier.issuer().user_jwt(&identity, names, unix_now()) {
        Ok(token) => {
            api.issued.with_label_values(&["user"]).inc();
            tracing::debug!(cn = %identity.cn, dataset = %names.subject, "NATS user JWT issued");
            HttpResponse::Ok()
                .content_type("application/jwt")
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .insert_header(("Planetmint-Consumer", identity.consumer()))
                .body(token)
        }
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string(), None),
    }
}

/// `?height=H`.
#[derive(Debug, serde::Deserialize)]
struct HeightQuery {
    height: Option<String>,
}

async fn seek_by_height(
    stream: web::Path<String>,
    query: web::Query<HeightQuery>,
    api: web::Data<JetStreamApi>,
) -> HttpResponse {
    let Ok(kind) = stream.parse::<StreamKind>() else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown stream: expected valid_transactions or valid_blocks",
            Some(("parameter", "stream")),
        );
    };
    let Some(height) = query.height.as_deref().and_then(|h| h.parse::<u64>().ok()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "height must be a block height (a non-negative integer)",
            Some(("parameter", "height")),
        );
    };
    match api.tier.seek(kind, height).await {
        Ok(answer) => HttpResponse::Ok().json(answer),
        Err(SeekError::NotConnected) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not connected to NATS JetStream yet",
            None,
        ),
        Err(err) => error(StatusCode::BAD_GATEWAY, &err.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use planetmint_streams_ingest::memory::MemorySource;
    use planetmint_streams_jetstream::NatsConfig;

    fn tier(ready_max_lag_blocks: u64) -> JetStreamTier {
        let config = NatsConfig {
            url: "nats://127.0.0.1:1".into(),
            ready_max_lag_blocks,
            ..NatsConfig::default()
        };
        let (tier, _publisher, _sink) =
            JetStreamTier::new(config, Arc::new(MemorySource::new()), &Registry::new())
                .expect("tier");
        tier
    }

    fn ready() -> Readiness {
        Readiness {
            ready: true,
            source_reachable: true,
            head_height: 10,
            streamed_height: 10,
            lag_blocks: 0,
            reason: None,
        }
    }

    #[test]
    fn the_tier_makes_the_node_unready_only_when_configured_to() {
        assert!(readiness(ready(), None).ready);
        // Not connected to NATS (the publisher never ran): ignored by default.
        assert!(readiness(ready(), Some(&tier(0))).ready);
        let strict = readiness(ready(), Some(&tier(5)));
        assert!(!strict.ready);
        assert!(
            strict
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("nats.ready_max_lag_blocks")),
            "{strict:?}"
        );
    }

    #[test]
    fn the_gateway_asks_for_certificates_when_a_client_ca_is_set_and_closes_in_signed_mode_without()
    {
        let mut config = Config::default();
        assert_eq!(GatewayPolicy::of(&config), GatewayPolicy::Anonymous);
        config.auth.mode = planetmint_streams_auth::AuthMode::Signed;
        assert_eq!(GatewayPolicy::of(&config), GatewayPolicy::Closed);
        config.tls.client_ca_file = Some("ca.pem".into());
        assert_eq!(GatewayPolicy::of(&config), GatewayPolicy::Certificate);
        config.auth.mode = planetmint_streams_auth::AuthMode::Open;
        assert_eq!(GatewayPolicy::of(&config), GatewayPolicy::Certificate);
    }
}
