//! Keep-alive (RFC 6455 ping/pong): a ping every `ping_interval`, and the end of the session
//! when no pong came within `pong_timeout`.

use std::time::Duration;

use actix_ws::Session;
use tokio::time::Instant;

use crate::close::Ending;

/// How long a control frame may wait for room before the socket counts as stuck.
pub(crate) const CONTROL_SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// Keep-alive state: the next ping and the pong being waited for.
pub(crate) struct KeepAlive {
    interval: Duration,
    pong_timeout: Duration,
    next_ping: Instant,
    pong_deadline: Option<Instant>,
}

impl KeepAlive {
    /// Pings every `interval`; a pong must come within `pong_timeout`.
    pub(crate) fn new(interval: Duration, pong_timeout: Duration) -> Self {
        Self {
            interval,
            pong_timeout,
            next_ping: Instant::now() + interval,
            pong_deadline: None,
        }
    }

    /// When the next thing is due: a ping, or the end of the wait for a pong.
    pub(crate) fn next_deadline(&self) -> Instant {
        self.pong_deadline
            .map_or(self.next_ping, |d| d.min(self.next_ping))
    }

    /// A pong came: nothing is awaited any more.
    pub(crate) fn pong_received(&mut self) {
        self.pong_deadline = None;
    }
}

/// Answers the client's ping with a pong carrying its payload.
pub(crate) async fn answer_ping(session: &mut Session, payload: &[u8]) -> Result<(), Ending> {
    match tokio::time::timeout(CONTROL_SEND_TIMEOUT, session.pong(payload)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Ending::SocketGone),
        // The client does not read what we send.
        Err(_) => Err(Ending::TooSlow),
    }
}

/// Sends a ping when one is due; ends the session when a pong is overdue.
pub(crate) async fn on_timer(
    session: &mut Session,
    keep_alive: &mut KeepAlive,
) -> Result<(), Ending> {
    let now = Instant::now();
    if keep_alive
        .pong_deadline
        .is_some_and(|deadline| now >= deadline)
    {
        return Err(Ending::NoPong);
    }
    if now >= keep_alive.next_ping {
        keep_alive.next_ping = now + keep_alive.interval;
        if keep_alive.pong_deadline.is_none() {
            keep_alive.pong_deadline = Some(now + keep_alive.pong_timeout);
        }
        match tokio::time::timeout(CONTROL_SEND_TIMEOUT, session.ping(b"")).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(Ending::SocketGone),
            // The client does not read: its pong will not come either.
            Err(_) => return Err(Ending::NoPong),
        }
    }
    Ok(())
}
