//! Keep-alive: something to the client every `ping_interval` (a WebSocket ping, an SSE
//! comment) and, where the client must answer (a WebSocket pong), the end of the connection
//! when no answer came within `pong_timeout`.

use std::time::Duration;

use tokio::time::Instant;

/// How long a control frame may wait for room before the socket counts as stuck.
pub(crate) const CONTROL_SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// What the keep-alive timer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Nothing yet (woken early).
    Nothing,
    /// Send a keep-alive now.
    KeepAlive,
    /// The answer to the last ping is overdue.
    NoPong,
}

/// Keep-alive state: the next ping and the pong being waited for.
#[derive(Debug)]
pub(crate) struct KeepAlive {
    interval: Duration,
    /// `None`: the client never answers (plain HTTP streams).
    pong_timeout: Option<Duration>,
    next_ping: Instant,
    pong_deadline: Option<Instant>,
}

impl KeepAlive {
    /// A keep-alive every `interval`; with `pong_timeout`, each must be answered within it.
    pub(crate) fn new(interval: Duration, pong_timeout: Option<Duration>) -> Self {
        Self {
            interval,
            pong_timeout,
            next_ping: Instant::now() + interval,
            pong_deadline: None,
        }
    }

    /// When the next thing is due: a keep-alive, or the end of the wait for a pong.
    pub(crate) fn next_deadline(&self) -> Instant {
        self.pong_deadline
            .map_or(self.next_ping, |d| d.min(self.next_ping))
    }

    /// A pong came: nothing is awaited any more.
    pub(crate) fn pong_received(&mut self) {
        self.pong_deadline = None;
    }

    /// What is due now (called when [`next_deadline`](Self::next_deadline) has passed).
    pub(crate) fn due(&mut self) -> Due {
        let now = Instant::now();
        if self.pong_deadline.is_some_and(|deadline| now >= deadline) {
            return Due::NoPong;
        }
        if now < self.next_ping {
            return Due::Nothing;
        }
        self.next_ping = now + self.interval;
        if let (None, Some(timeout)) = (self.pong_deadline, self.pong_timeout) {
            self.pong_deadline = Some(now + timeout);
        }
        Due::KeepAlive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pings_come_every_interval_and_an_unanswered_one_ends_the_connection() {
        let mut keep_alive = KeepAlive::new(Duration::from_secs(15), Some(Duration::from_secs(20)));
        tokio::time::sleep_until(keep_alive.next_deadline()).await;
        assert_eq!(keep_alive.due(), Due::KeepAlive);
        keep_alive.pong_received();
        tokio::time::sleep_until(keep_alive.next_deadline()).await;
        assert_eq!(
            keep_alive.due(),
            Due::KeepAlive,
            "a second ping, 15 s later"
        );
        // No pong this time: another ping at 45 s, and the end at 50 s.
        tokio::time::sleep_until(keep_alive.next_deadline()).await;
        assert_eq!(keep_alive.due(), Due::KeepAlive);
        tokio::time::sleep_until(keep_alive.next_deadline()).await;
        assert_eq!(keep_alive.due(), Due::NoPong);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_pong_timeout_keep_alives_never_end_the_connection() {
        let mut keep_alive = KeepAlive::new(Duration::from_secs(15), None);
        for _ in 0..10 {
            tokio::time::sleep_until(keep_alive.next_deadline()).await;
            assert_eq!(keep_alive.due(), Due::KeepAlive);
        }
    }
}
