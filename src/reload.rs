//! Replacing credentials without a restart: on SIGHUP, and when the modification time of a
//! credential file changes (the clients file, the clients' secret files, JWT key files, the
//! JWKS file; looked at every `auth.reload_interval`), the node calls
//! [`Gatekeeper::reload`]. The outcome is logged and counted in
//! `planetmint_streams_auth_reloads_total{result="ok"|"error"}`; a bad file keeps the
//! credentials already in place (the log line names the entry and key).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use planetmint_streams_auth::Gatekeeper;
use prometheus::{IntCounterVec, Opts, Registry};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The counter of reloads, by `result` (`ok`, `error`).
#[derive(Clone)]
pub struct ReloadMetrics {
    reloads: IntCounterVec,
}

impl ReloadMetrics {
    /// Registers `planetmint_streams_auth_reloads_total` with both results at zero.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let reloads = IntCounterVec::new(
            Opts::new(
                "planetmint_streams_auth_reloads_total",
                "Reloads of the credential files (SIGHUP or a changed file), by result",
            ),
            &["result"],
        )?;
        registry.register(Box::new(reloads.clone()))?;
        for result in ["ok", "error"] {
            reloads.with_label_values(&[result]);
        }
        Ok(Self { reloads })
    }
}

/// What a watched file looked like: its modification time, size and inode (a file replaced by
/// a rename, as Kubernetes does with mounted secrets, gets another inode).
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamps(files: &[PathBuf]) -> Vec<Stamp> {
    files
        .iter()
        .map(|path| {
            let metadata = std::fs::metadata(path).ok()?;
            #[cfg(unix)]
            let inode = std::os::unix::fs::MetadataExt::ino(&metadata);
            #[cfg(not(unix))]
            let inode = 0;
            Some((metadata.modified().ok()?, metadata.len(), inode))
        })
        .collect()
}

/// Reloads once and says how it went.
async fn reload(gatekeeper: &Gatekeeper, metrics: &ReloadMetrics, cause: &'static str) {
    let worker = gatekeeper.clone();
    let outcome = tokio::task::spawn_blocking(move || worker.reload()).await;
    match outcome {
        Ok(Ok(outcome)) => {
            metrics.reloads.with_label_values(&["ok"]).inc();
            info!(
                cause,
                clients = outcome.clients,
                jwt_keys = outcome.jwt_keys,
                "credentials reloaded"
            );
        }
        Ok(Err(problem)) => {
            metrics.reloads.with_label_values(&["error"]).inc();
            warn!(cause, error = %problem, "credentials not reloaded: keeping the ones in place");
        }
        Err(err) => {
            metrics.reloads.with_label_values(&["error"]).inc();
            warn!(cause, error = %err, "credentials not reloaded: the reload task failed");
        }
    }
}

/// Runs until `shutdown`: reloads on SIGHUP, and every `interval` (`0`: never) when a watched
/// file changed.
pub async fn run(
    gatekeeper: Gatekeeper,
    metrics: ReloadMetrics,
    interval: Duration,
    shutdown: CancellationToken,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => Some(hangup),
        Err(err) => {
            warn!(error = %err, "cannot listen for SIGHUP: credentials reload on file changes only");
            None
        }
    };
    let files = gatekeeper.watched_files();
    let mut seen = stamps(&files);
    let watching = !interval.is_zero() && !files.is_empty();
    let mut ticks = tokio::time::interval(if watching {
        interval
    } else {
        Duration::from_secs(3600)
    });
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(hangup) => hangup.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                seen = stamps(&files);
                reload(&gatekeeper, &metrics, "SIGHUP").await;
            }
            _ = ticks.tick(), if watching => {
                let now = stamps(&files);
                if now != seen {
                    seen = now;
                    reload(&gatekeeper, &metrics, "file changed").await;
                }
            }
        }
    }
}
