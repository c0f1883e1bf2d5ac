//! Opening a tarantool-rs connection that works with Tarantool 2.6 as well as 2.10+.

use std::sync::Arc;
use std::time::Duration;

use tarantool_rs::{Connection, ReconnectInterval};

use super::relay::{Relay, RelayConfig, RelayState};

/// A tarantool-rs connection and the relay it goes through (kept alive together).
pub struct TarantoolConnection {
    /// The tarantool-rs connection; cheap to clone.
    pub conn: Connection,
    relay: Relay,
}

impl TarantoolConnection {
    /// Connection state as seen by the relay (sessions, reachability, server version).
    pub fn relay_state(&self) -> &Arc<RelayState> {
        self.relay.state()
    }
}

impl std::fmt::Debug for TarantoolConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarantoolConnection")
            .field("relay", &self.relay.local_addr())
            .finish()
    }
}

/// Starts a relay to `address` and connects tarantool-rs through it. Waits (without limit)
/// while Tarantool is unreachable: wrap it in a timeout where that matters.
pub async fn connect(
    address: &str,
    credentials: Option<(&str, Option<&str>)>,
    connect_timeout: Duration,
    backoff: (Duration, Duration),
) -> Result<TarantoolConnection, tarantool_rs::Error> {
    let relay = Relay::start(RelayConfig {
        upstream: address.to_owned(),
        connect_timeout,
        backoff,
    })
    .await?;
    let conn = connect_through(&relay, credentials).await?;
    Ok(TarantoolConnection { conn, relay })
}

/// Connects tarantool-rs to an already running relay.
pub(crate) async fn connect_through(
    relay: &Relay,
    credentials: Option<(&str, Option<&str>)>,
) -> Result<Connection, tarantool_rs::Error> {
    let mut builder = Connection::builder();
    if let Some((user, password)) = credentials {
        builder.auth(user, password);
    }
    // The relay paces reconnects with backoff and logs them; tarantool-rs only needs to retry
    // the loopback connect, and a fixed interval keeps its exponential mode's debug dump out
    // of stderr.
    builder.reconnect_interval(ReconnectInterval::fixed(Duration::from_millis(50)));
    builder.build(relay.local_addr().to_string()).await
}
