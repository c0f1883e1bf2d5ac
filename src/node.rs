//! Wiring: Tarantool source -> follower -> hub -> stream server, plus the API server; with
//! `[nats]` the follower also feeds the JetStream publisher (after the hub, never waited on).
//!
//! The credentials of every way in are verified by one [`Gatekeeper`] built from `[auth]`
//! ([`gatekeeper`]); a task reloads it on SIGHUP and when a credential file changes
//! ([`crate::reload`]).
//!
//! [`start`] binds both ports, starts every task and returns a [`RunningNode`]; shutting it
//! down cancels one token (every session closes with 1001 and its last height), gives the
//! connections the configured grace to drain, then stops the servers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use planetmint_streams_api::{Advertised, ApiContext, Readiness};
use planetmint_streams_auth::Gatekeeper;
use planetmint_streams_broadcaster::{BroadcastMetrics, Hub, StreamContext};
use planetmint_streams_ingest::tarantool::FailoverSource;
use planetmint_streams_ingest::{Follower, FollowerConfig, IngestStatus};
use planetmint_streams_model::{BlockSource, ConfigProblem};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::Config;

/// Our version, as published in the root document.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A started node.
pub struct RunningNode {
    /// Address the stream server listens on.
    pub streams_addr: SocketAddr,
    /// Address the API listens on.
    pub api_addr: SocketAddr,
    /// Address of the token-issuing admin endpoint, when enabled.
    pub admin_addr: Option<SocketAddr>,
    /// The fan-out point (tests look at its subscriber count).
    pub hub: Arc<Hub>,
    /// What the ingest knows.
    pub status: Arc<IngestStatus>,
    /// The verifier of every credential (stream tokens, configured clients, JWTs), reloaded
    /// on SIGHUP and when a credential file changes.
    pub gatekeeper: Gatekeeper,
    shutdown: CancellationToken,
    grace: Duration,
    streams_server: actix_web::dev::ServerHandle,
    api_server: actix_web::dev::ServerHandle,
    admin_server: Option<actix_web::dev::ServerHandle>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn bind(address: &str, what: &str) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address)
        .with_context(|| format!("cannot listen on {address} ({what})"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Builds the verifier of every credential from `[auth]`, reading the files it names (signing
/// keys, clients file, secret files, JWT keys, JWKS). Errors name the key (and the entry).
pub fn gatekeeper(config: &Config) -> Result<Gatekeeper, ConfigProblem> {
    Gatekeeper::new(&config.auth)
}

/// Starts a node reading from Tarantool as configured.
pub async fn start(config: Config) -> anyhow::Result<RunningNode> {
    config.validate()?;
    let registry = Registry::new();
    let status = Arc::new(IngestStatus::new(&registry)?);
    let source = FailoverSource::new(&config.tarantool, status.source_failovers.clone())
        .await
        .context("starting the Tarantool client")?;
    start_with(config, Arc::new(source), registry, status).await
}

/// Starts a node on any [`BlockSource`] (tests use an in-memory one).
pub async fn start_with_source(
    config: Config,
    source: Arc<dyn BlockSource>,
) -> anyhow::Result<RunningNode> {
    config.validate()?;
    let registry = Registry::new();
    let status = Arc::new(IngestStatus::new(&registry)?);
    start_with(config, source, registry, status).await
}

async fn start_with(
    config: Config,
    source: Arc<dyn BlockSource>,
    registry: Registry,
    status: Arc<IngestStatus>,
) -> anyhow::Result<RunningNode> {
    let streams_listener = bind(&config.streams.bind, "streams.bind")?;
    let api_listener = bind(&config.api.bind, "api.bind")?;
    let streams_addr = streams_listener.local_addr()?;
    let api_addr = api_listener.local_addr()?;

    let metrics = BroadcastMetrics::new(&registry)?;
    crate::nofile::check(config.streams.max_connections, &registry)?;
    crate::allocator::register(&registry)?;
    let hub = Arc::new(
        Hub::new(config.streams.ring_blocks, metrics)
            .with_ring_max_bytes(config.streams.ring_max_bytes),
    );
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();

    let gatekeeper = gatekeeper(&config)?;
    let reload_metrics = crate::reload::ReloadMetrics::new(&registry)?;
    tasks.push(tokio::spawn(crate::reload::run(
        gatekeeper.clone(),
        reload_metrics,
        config.auth.reload_interval,
        shutdown.child_token(),
    )));

    let (jetstream, sink) = crate::jetstream::wire(
        &config,
        source.clone(),
        &registry,
        hub.clone(),
        &shutdown,
        &mut tasks,
    )?;
    let follower = Follower::new(
        source.clone(),
        sink,
        status.clone(),
        FollowerConfig::from(&config.tarantool),
    );
    tasks.push(tokio::spawn(follower.run(shutdown.child_token())));

    // The token endpoint signs with the configured keys.
    let authority = if config.auth.admin.enabled {
        let authority = config.auth.authority()?;
        Some(Arc::new(authority))
    } else {
        None
    };
    let advertised = Advertised {
        scheme: config.advertised_scheme(),
        host: config.streams.advertised_host.clone(),
        port: config
            .streams
            .advertised_port
            .unwrap_or(streams_addr.port()),
    };
    let mut catalogue = crate::catalogue::catalogue(&advertised);
    if let Some(tier) = &jetstream {
        crate::catalogue::add_jetstream(&mut catalogue, tier.config(), tier.names());
    }
    let mut stream_ctx = StreamContext::new(
        hub.clone(),
        source,
        config.streams.clone(),
        shutdown.clone(),
    )
    .with_catalogue(catalogue.clone());
    if config.auth.is_signed() {
        stream_ctx = stream_ctx.with_auth(gatekeeper.clone(), config.auth.close_on_expiry);
    }
    let stream_ctx = Arc::new(stream_ctx);
    let tls = crate::tls::server_config(&config.tls)?;
    // HTTP/2 on the stream port: plain HTTP streams (SSE, NDJSON) may share one connection;
    // WebSocket clients ask for HTTP/1.1 and get it.
    let streams_tls = tls.clone().map(|mut tls| {
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        tls
    });
    let streams_server =
        planetmint_streams_broadcaster::server::build(stream_ctx, streams_listener, streams_tls)?;
    let streams_handle = streams_server.handle();
    tasks.push(tokio::spawn(async move {
        if let Err(err) = streams_server.await {
            tracing::error!(error = %err, "stream server failed");
        }
    }));

    let readiness = {
        let status = status.clone();
        let max_lag = config.api.ready_max_lag_blocks;
        let tier = jetstream.clone();
        Arc::new(move || crate::jetstream::readiness(readiness(&status, max_lag), tier.as_ref()))
    };
    let (extra_routes, certificate_optional_paths, api_tls) = match jetstream {
        Some(tier) => {
            let gateway = crate::jetstream::GatewayPolicy::of(&config);
            let routes = crate::jetstream::routes(tier, gateway, &registry)?;
            // speedracer asks for its configuration and NATS JWTs without a certificate.
            let optional = config.tls.client_ca_file.is_some();
            let api_tls = crate::tls::server_config_with(
                &config.tls,
                crate::tls::ClientCertificates::Optional,
            )?;
            (
                Some(routes),
                optional.then(|| crate::jetstream::CERTIFICATE_OPTIONAL_PATHS.to_vec()),
                api_tls,
            )
        }
        None => (None, None, tls.clone()),
    };
    let api_ctx = Arc::new(ApiContext {
        advertised: advertised.clone(),
        version: VERSION.to_owned(),
        registry,
        readiness,
        config: config.api.clone(),
        catalogue,
        asyncapi: crate::catalogue::asyncapi(&advertised, VERSION),
        extra_routes,
        certificate_optional_paths,
    });
    let admin_tls = tls.clone();
    let api_server = planetmint_streams_api::server::build(api_ctx, api_listener, api_tls)?;
    let api_handle = api_server.handle();
    tasks.push(tokio::spawn(async move {
        if let Err(err) = api_server.await {
            tracing::error!(error = %err, "API server failed");
        }
    }));

    let mut admin_addr = None;
    let mut admin_handle = None;
    if let (true, Some(authority)) = (config.auth.admin.enabled, authority) {
        let secret = config
            .auth
            .admin_secret()?
            .context("auth.admin.enabled needs auth.admin.secret or auth.admin.secret_file")?;
        let listener = bind(&config.auth.admin.bind, "auth.admin.bind")?;
        admin_addr = Some(listener.local_addr()?);
        let admin_ctx = Arc::new(planetmint_streams_api::admin::AdminContext {
            authority,
            secret,
            advertised: advertised.clone(),
        });
        let admin_server = planetmint_streams_api::admin::build(admin_ctx, listener, admin_tls)?;
        admin_handle = Some(admin_server.handle());
        tasks.push(tokio::spawn(async move {
            if let Err(err) = admin_server.await {
                tracing::error!(error = %err, "admin server failed");
            }
        }));
    }

    info!(
        version = VERSION,
        streams = %streams_addr,
        api = %api_addr,
        advertised = %advertised.valid_transactions(),
        tarantool = %config.tarantool.address,
        "planetmint-streams started"
    );
    Ok(RunningNode {
        streams_addr,
        api_addr,
        admin_addr,
        hub,
        status,
        gatekeeper,
        shutdown,
        grace: config.streams.shutdown_grace,
        streams_server: streams_handle,
        api_server: api_handle,
        admin_server: admin_handle,
        tasks,
    })
}

fn readiness(status: &IngestStatus, max_lag: u64) -> Readiness {
    let head = u64::try_from(status.head_height.get()).unwrap_or(0);
    let streamed = u64::try_from(status.streamed_height.get()).unwrap_or(0);
    let lag = status.lag_blocks();
    let reachable = status.is_reachable();
    let reason = if !status.is_started() {
        Some("not connected to Tarantool yet".to_owned())
    } else if !reachable {
        Some("Tarantool is unreachable".to_owned())
    } else if let Some(stalled) = status.stalled_reason() {
        Some(stalled)
    } else if lag > max_lag {
        Some(format!("{lag} blocks behind Tarantool (limit {max_lag})"))
    } else {
        None
    };
    Readiness {
        ready: reason.is_none(),
        source_reachable: reachable,
        head_height: head,
        streamed_height: streamed,
        lag_blocks: lag,
        reason,
    }
}

impl RunningNode {
    /// Graceful shutdown: close every subscriber with 1001, let connections drain for the
    /// configured grace, stop the servers and the ingest.
    pub async fn shutdown(self) {
        info!(
            subscribers = self.hub.subscriber_count(),
            "shutting down: closing every subscriber with 1001"
        );
        self.shutdown.cancel();
        let deadline = tokio::time::Instant::now() + self.grace;
        while self.hub.subscriber_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.streams_server.stop(true).await;
        self.api_server.stop(true).await;
        if let Some(admin) = self.admin_server {
            admin.stop(true).await;
        }
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        info!("stopped");
    }

    /// The token whose cancellation starts the shutdown (for callers that own signals).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}
