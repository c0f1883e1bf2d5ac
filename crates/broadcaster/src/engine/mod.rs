//! The connection engine: one driver for every way a client reads a stream.
//!
//! A connection is a [`Link`] to its client (a WebSocket, or a plain HTTP response), a
//! [`Connection`] (its queue, its credential, its subscriptions) and a [`Dialect`] that speaks
//! its protocol. [`drive`] owns the connection's life in one loop: subscriptions starting
//! (history replayed, then attached to the hub), the keep-alive timer, the client's frames read
//! one per token of its budget, its queue overflowing, server shutdown, and its credential's
//! expiry; then the end: every subscription detached, the dialect's farewell (close code and
//! where to resume), the close handshake. Blocks do not pass through the driver: the hub and
//! the replay put each subscription's deliveries into the connection's queue, and the response
//! body ([`body`]) writes them, wrapped by the subscription's envelope.
//!
//! A dialect only turns client messages into the operations [`Connection`] offers, and frames
//! what its client is told (answers, the envelope of each delivery, the farewell). Every safety
//! property is the driver's and the connection's, the same for every dialect.
//!
//! Adding a dialect: implement [`Dialect`] (and, for a WebSocket protocol, an
//! [`Envelope`](crate::envelope::Envelope) for its deliveries), build its [`Connection`] and
//! [`Link`] in an upgrade handler after [`crate::admission`], and `spawn(drive(...))`.

pub mod body;
pub mod close;
pub mod connection;
pub mod inbound;
pub mod keepalive;
pub mod link;
mod start;

use std::time::Duration;

use futures_util::future::Aborted;
use futures_util::StreamExt;
use tokio::time::{sleep, sleep_until, Instant};
use tracing::{debug, info};

pub(crate) use close::Ending;
pub(crate) use connection::{Connection, LastHeights, SubscriptionEvent};
pub(crate) use inbound::ClientMessage;
pub(crate) use link::Link;

use crate::config::StreamsConfig;
use keepalive::{Due, KeepAlive, CONTROL_SEND_TIMEOUT};

/// What a client is told when its connection ends.
#[derive(Debug, Default)]
pub(crate) struct Farewell {
    /// A last message before the end: a text frame on a WebSocket (the JSON-RPC `closing`
    /// notification), the final chunk of a plain HTTP stream (an SSE `close` event, an
    /// NDJSON close line).
    pub notice: Option<String>,
    /// The WebSocket close frame (code and reason); `None`: none is sent.
    pub close: Option<actix_ws::CloseReason>,
}

/// A protocol spoken over a connection.
pub(crate) trait Dialect {
    /// Its name in logs.
    const NAME: &'static str;

    /// A whole message from the client; `Err` ends the connection.
    fn on_message(&mut self, conn: &mut Connection, message: ClientMessage) -> Result<(), Ending> {
        let _ = (conn, message);
        Ok(())
    }

    /// Something happened to one of its subscriptions; `Err` ends the connection.
    fn on_subscription(
        &mut self,
        conn: &mut Connection,
        event: SubscriptionEvent,
    ) -> Result<(), Ending>;

    /// What the client is told as the connection ends with `ending`, given every
    /// subscription's last height completely sent.
    fn farewell(&self, ending: &Ending, heights: &LastHeights, config: &StreamsConfig) -> Farewell;
}

/// A time far enough ahead to stand for "never".
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// Runs a connection to its end.
pub(crate) async fn drive<D: Dialect>(mut conn: Connection, mut dialect: D, mut link: Link) {
    let ctx = conn.ctx.clone();
    let queue = conn.queue.clone();
    let config = &ctx.config;
    let pong_timeout = link.answers_keep_alives().then_some(config.pong_timeout);
    let mut keep_alive = KeepAlive::new(config.ping_interval, pong_timeout);
    let ending = loop {
        // Over its frame budget the client is read more slowly, not cut off.
        let read_in = conn.budget.ready_in();
        let closes_at = conn.closes_at();
        let starting = !conn.starting.is_empty();
        let step = tokio::select! {
            Some(started) = conn.starting.next(), if starting => match started {
                Ok((key, started)) => match conn.started(key, started) {
                    Ok(events) => events
                        .into_iter()
                        .try_for_each(|event| dialect.on_subscription(&mut conn, event)),
                    Err(ending) => Err(ending),
                },
                Err(Aborted) => Ok(()),
            },
            _ = sleep_until(keep_alive.next_deadline()) => match keep_alive.due() {
                Due::Nothing => Ok(()),
                Due::KeepAlive => link.keep_alive().await,
                Due::NoPong => Err(Ending::NoPong),
            },
            input = link.next(), if read_in.is_zero() => {
                // Every frame counts, whatever it is.
                conn.budget.take();
                match input {
                    Ok(inbound::Inbound::Message(message)) => dialect.on_message(&mut conn, message),
                    Ok(inbound::Inbound::Ping(payload)) => link.pong(&payload).await,
                    Ok(inbound::Inbound::Pong) => {
                        keep_alive.pong_received();
                        Ok(())
                    }
                    Ok(inbound::Inbound::Close(reason)) => Err(Ending::ClientClosed(reason)),
                    Ok(inbound::Inbound::Nothing) => Ok(()),
                    Err(ending) => Err(ending),
                }
            }
            _ = sleep(read_in), if !read_in.is_zero() => Ok(()),
            _ = queue.overflowed() => Err(Ending::TooSlow),
            _ = ctx.shutdown.cancelled() => Err(Ending::Shutdown),
            _ = sleep_until(closes_at.unwrap_or_else(far_future)), if closes_at.is_some() => {
                Err(Ending::TokenExpired)
            }
        };
        if let Err(ending) = step {
            break ending;
        }
    };
    finish(conn, &dialect, link, ending).await;
}

/// Ends every subscription, tells the client (the dialect's farewell), completes the close
/// handshake, and lets the response end.
async fn finish<D: Dialect>(mut conn: Connection, dialect: &D, mut link: Link, ending: Ending) {
    let ctx = conn.ctx.clone();
    conn.end_all(ending.label());
    if matches!(ending, Ending::NotAuthenticated) {
        // The refusal is queued: let it out before the close frame.
        let _ = tokio::time::timeout(CONTROL_SEND_TIMEOUT, conn.queue.drained()).await;
    }
    let heights = conn.queue.stop();
    conn.uncount();
    match &ending {
        Ending::TooSlow | Ending::NoPong => info!(
            dialect = D::NAME,
            reason = ending.label(),
            subscriptions = heights.len(),
            "closing a connection that fell behind"
        ),
        Ending::ProtocolError(err) => {
            debug!(dialect = D::NAME, error = %err, "closing on a protocol error")
        }
        _ => debug!(
            dialect = D::NAME,
            reason = ending.label(),
            "connection ended"
        ),
    }
    let farewell = dialect.farewell(&ending, &heights, &ctx.config);
    if link.farewell(farewell.notice, farewell.close).await {
        if let Some(wait) = ending.close_handshake_wait(&ctx.config) {
            link.await_client_close(wait).await;
        }
    }
    drop(link);
    conn.queue.finish();
}
