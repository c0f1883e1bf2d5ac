//! One subscriber's connection after the upgrade: catch-up, keep-alive, inbound frames, and
//! the close.
//!
//! A single task per connection waits on whichever comes first: the catch-up finishing (a
//! resume attaches to the live stream only once nothing is missing), the ping timer, a pong
//! deadline, a frame from the client, its queue overflowing, or server shutdown. Blocks do not
//! pass through this task: the hub puts them in the queue and the response body takes them.

use std::sync::Arc;
use std::time::Duration;

use actix_ws::{CloseCode, CloseReason, Item, Message, MessageStream, ProtocolError, Session};
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, warn};

use crate::hub::{Catchup, Selection, SubscriberId};
use crate::limits::{ConnectionSlot, TokenBucket};
use crate::published::PublishedBlock;
use crate::queue::SubscriberQueue;
use crate::subscription::Subscription;
use crate::StreamContext;

/// Close code: the subscriber fell behind; the reason carries `last_height`.
pub const CLOSE_TOO_SLOW: u16 = 4000;
/// Close code: the history asked for with `from_height` is no longer stored.
pub const CLOSE_HISTORY_UNAVAILABLE: u16 = 4001;
/// How long a control frame may wait for room before the socket counts as stuck.
pub(crate) const CONTROL_SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a session ended.
#[derive(Debug)]
pub(crate) enum Ending {
    /// The client sent a close frame.
    ClientClosed(Option<CloseReason>),
    /// The queue overflowed.
    TooSlow,
    /// No pong in time.
    NoPong,
    /// The client sent a frame larger than allowed.
    FrameTooBig,
    /// The client broke the protocol.
    ProtocolError(String),
    /// The client sent text that is not UTF-8.
    InvalidText,
    /// The client sent more frames than allowed.
    Flooding,
    /// `from_height` is below what the source still holds.
    HistoryUnavailable { lowest: u64 },
    /// The server is shutting down.
    Shutdown,
    /// The subscriber's token expired (with `auth.close_on_expiry`).
    TokenExpired,
    /// The connection is gone (nothing can be sent).
    SocketGone,
}

impl Ending {
    fn label(&self) -> &'static str {
        match self {
            Ending::ClientClosed(_) => "client",
            Ending::TooSlow => "too_slow",
            Ending::NoPong => "pong_timeout",
            Ending::FrameTooBig => "frame_too_big",
            Ending::ProtocolError(_) => "protocol_error",
            Ending::InvalidText => "invalid_text",
            Ending::Flooding => "flooding",
            Ending::HistoryUnavailable { .. } => "history_unavailable",
            Ending::Shutdown => "shutdown",
            Ending::TokenExpired => "token_expired",
            Ending::SocketGone => "socket",
        }
    }

    /// The close frame to send, given the last height completely handed to the socket.
    fn close_frame(
        &self,
        ctx: &StreamContext,
        subscription: &Subscription,
        last_height: Option<u64>,
    ) -> Option<CloseReason> {
        let with = |code: CloseCode, json: serde_json::Value| {
            Some(CloseReason {
                code,
                description: Some(json.to_string()),
            })
        };
        match self {
            Ending::ClientClosed(reason) => Some(CloseReason {
                code: reason.as_ref().map_or(CloseCode::Normal, |r| r.code),
                description: None,
            }),
            Ending::TooSlow => with(
                CloseCode::Other(CLOSE_TOO_SLOW),
                serde_json::json!({"reason": "too slow", "last_height": last_height}),
            ),
            Ending::NoPong => with(
                CloseCode::Other(CLOSE_TOO_SLOW),
                serde_json::json!({"reason": "no pong", "last_height": last_height}),
            ),
            Ending::FrameTooBig => with(
                CloseCode::Size,
                serde_json::json!({"reason": "frame too big", "max_bytes": ctx.config.max_frame_size}),
            ),
            Ending::ProtocolError(_) => with(
                CloseCode::Protocol,
                serde_json::json!({"reason": "protocol error"}),
            ),
            Ending::InvalidText => with(
                CloseCode::Invalid,
                serde_json::json!({"reason": "text frame is not UTF-8"}),
            ),
            Ending::Flooding => with(
                CloseCode::Policy,
                serde_json::json!({"reason": "too many frames", "max_per_second": ctx.config.inbound_frames_per_second}),
            ),
            Ending::HistoryUnavailable { lowest } => with(
                CloseCode::Other(CLOSE_HISTORY_UNAVAILABLE),
                serde_json::json!({
                    "reason": "history not available",
                    "from_height": subscription.from_height,
                    "lowest_height": lowest,
                }),
            ),
            Ending::Shutdown => with(
                CloseCode::Away,
                serde_json::json!({"reason": "server shutting down", "last_height": last_height}),
            ),
            Ending::TokenExpired => with(
                CloseCode::Policy,
                serde_json::json!({"reason": "token expired", "last_height": last_height}),
            ),
            Ending::SocketGone => None,
        }
    }
}

/// Keep-alive state: the next ping and the pong being waited for.
pub(crate) struct KeepAlive {
    interval: Duration,
    pong_timeout: Duration,
    next_ping: Instant,
    pub(crate) pong_deadline: Option<Instant>,
}

impl KeepAlive {
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
}

/// UTF-8 check of fragmented text messages from clients (RFC 6455 5.6: the whole message must
/// be UTF-8) without reassembling them: only the up to three bytes of a code point split
/// across fragments are carried over.
#[derive(Debug, Default)]
struct FragmentedText {
    in_text: bool,
    carry: Vec<u8>,
}

impl FragmentedText {
    /// False when the message is not UTF-8.
    fn check(&mut self, item: &Item) -> bool {
        match item {
            Item::FirstText(bytes) => {
                self.in_text = true;
                self.carry.clear();
                self.feed(bytes, false)
            }
            Item::FirstBinary(_) => {
                self.in_text = false;
                true
            }
            Item::Continue(bytes) => !self.in_text || self.feed(bytes, false),
            Item::Last(bytes) => {
                let valid = !self.in_text || self.feed(bytes, true);
                self.in_text = false;
                valid
            }
        }
    }

    fn feed(&mut self, bytes: &[u8], last: bool) -> bool {
        let joined;
        let data: &[u8] = if self.carry.is_empty() {
            bytes
        } else {
            joined = [self.carry.as_slice(), bytes].concat();
            &joined
        };
        match std::str::from_utf8(data) {
            Ok(_) => {
                self.carry.clear();
                true
            }
            // A code point cut at the end of this fragment: the next one completes it.
            Err(err) if err.error_len().is_none() && !last => {
                let tail = data[err.valid_up_to()..].to_vec();
                self.carry = tail;
                true
            }
            Err(_) => false,
        }
    }
}

/// Whether a protocol error is text that is not UTF-8 (1007) rather than a broken frame (1002).
pub(crate) fn is_invalid_utf8(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::InvalidData
        && err
            .get_ref()
            .is_some_and(|inner| inner.is::<std::str::Utf8Error>())
}

/// Answers one frame from the client; `Err` ends the session.
async fn on_inbound(
    message: Option<Result<Message, ProtocolError>>,
    session: &mut Session,
    keep_alive: &mut KeepAlive,
    budget: &mut TokenBucket,
    fragments: &mut FragmentedText,
) -> Result<(), Ending> {
    if matches!(message, Some(Ok(_))) && !budget.take() {
        return Err(Ending::Flooding);
    }
    match message {
        Some(Ok(Message::Ping(payload))) => {
            match tokio::time::timeout(CONTROL_SEND_TIMEOUT, session.pong(&payload)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(Ending::SocketGone),
                Err(_) => Err(Ending::TooSlow),
            }
        }
        Some(Ok(Message::Pong(_))) => {
            keep_alive.pong_deadline = None;
            Ok(())
        }
        Some(Ok(Message::Close(reason))) => Err(Ending::ClientClosed(reason)),
        // The streams are one-way: data from clients is read and ignored (fragmented text is
        // still checked to be UTF-8, as the protocol requires).
        Some(Ok(Message::Continuation(item))) if !fragments.check(&item) => {
            Err(Ending::InvalidText)
        }
        Some(Ok(
            Message::Text(_) | Message::Binary(_) | Message::Continuation(_) | Message::Nop,
        )) => Ok(()),
        Some(Err(ProtocolError::Overflow)) => Err(Ending::FrameTooBig),
        Some(Err(ProtocolError::Io(err))) if is_invalid_utf8(&err) => Err(Ending::InvalidText),
        Some(Err(err)) => Err(Ending::ProtocolError(err.to_string())),
        None => Err(Ending::SocketGone),
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

/// What a session owns: the connection's halves, its queue, its slot, its token's expiry.
pub(crate) struct SessionParts {
    /// actix-ws's sender of control frames.
    pub session: Session,
    /// Frames from the client.
    pub inbound: MessageStream,
    /// The subscriber's queue.
    pub queue: Arc<SubscriberQueue>,
    /// Its place under the connection limits.
    pub slot: ConnectionSlot,
    /// When its token expires, if connections close then.
    pub token_expires: Option<std::time::Instant>,
}

/// Runs a subscriber's session to its end.
pub(crate) async fn run(ctx: Arc<StreamContext>, subscription: Subscription, parts: SessionParts) {
    let SessionParts {
        mut session,
        mut inbound,
        queue,
        slot,
        token_expires,
    } = parts;
    let _slot = slot; // counted as open until this session ends
    let metrics = ctx.hub.metrics().clone();
    let stream = subscription.stream.name();
    metrics.subscribers.with_label_values(&[stream]).inc();
    metrics.connections.with_label_values(&[stream]).inc();
    let selection = Arc::new(Selection::from(&subscription));
    let mut budget = TokenBucket::new(
        f64::from(ctx.config.inbound_frames_per_second),
        f64::from(ctx.config.inbound_frames_burst),
    );
    let mut keep_alive = KeepAlive::new(ctx.config.ping_interval, ctx.config.pong_timeout);
    let mut fragments = FragmentedText::default();

    let token_expiry = token_expires.map(Instant::from_std);
    let far_future = || Instant::now() + Duration::from_secs(86_400 * 365);
    let mut attached: Option<SubscriberId> = None;
    let attach = attach(&ctx, &queue, &selection, subscription.from_height);
    tokio::pin!(attach);
    let mut attaching = true;

    let ending = loop {
        let step = tokio::select! {
            result = &mut attach, if attaching => {
                attaching = false;
                result.map(|id| attached = Some(id))
            }
            _ = sleep_until(keep_alive.next_deadline()) => on_timer(&mut session, &mut keep_alive).await,
            message = inbound.recv() => on_inbound(message, &mut session, &mut keep_alive, &mut budget, &mut fragments).await,
            _ = queue.overflowed() => Err(Ending::TooSlow),
            _ = ctx.shutdown.cancelled() => Err(Ending::Shutdown),
            _ = sleep_until(token_expiry.unwrap_or_else(far_future)), if token_expiry.is_some() => Err(Ending::TokenExpired),
        };
        if let Err(ending) = step {
            break ending;
        }
    };

    if let Some(id) = attached {
        ctx.hub.detach(id);
    }
    let last_height = queue.stop();
    metrics.subscribers.with_label_values(&[stream]).dec();
    metrics
        .disconnects
        .with_label_values(&[ending.label()])
        .inc();
    match &ending {
        Ending::TooSlow | Ending::NoPong => {
            info!(
                stream,
                reason = ending.label(),
                last_height,
                "closing a subscriber that fell behind"
            )
        }
        Ending::ProtocolError(err) => debug!(stream, error = %err, "closing on a protocol error"),
        _ => debug!(
            stream,
            reason = ending.label(),
            last_height,
            "subscriber session ended"
        ),
    }
    if let Some(close) = ending.close_frame(&ctx, &subscription, last_height) {
        let _ = tokio::time::timeout(CONTROL_SEND_TIMEOUT, session.close(Some(close))).await;
    }
}

/// Attaches the subscriber to the live stream, first queueing the history it asked for.
pub(crate) async fn attach(
    ctx: &StreamContext,
    queue: &Arc<SubscriberQueue>,
    selection: &Arc<Selection>,
    from_height: Option<u64>,
) -> Result<SubscriberId, Ending> {
    let Some(mut after) = from_height else {
        return Ok(ctx.hub.attach_live(queue, selection));
    };
    ctx.hub
        .metrics()
        .replay_requests
        .with_label_values(&[selection.stream.name()])
        .inc();
    let mut checked_history = false;
    loop {
        match ctx.hub.catch_up(queue, selection, after) {
            Catchup::Attached(id) => return Ok(id),
            Catchup::NotStarted => {
                ctx.hub.started().await;
            }
            Catchup::FromMemory(blocks) => {
                for block in blocks {
                    if let Some(frames) = selection.frames(&block) {
                        if !queue.push_waiting(frames).await {
                            return Err(Ending::SocketGone);
                        }
                    }
                    after = block.height();
                    ctx.hub
                        .metrics()
                        .replayed_blocks
                        .with_label_values(&["memory"])
                        .inc();
                }
            }
            Catchup::FromSource { after: from, upto } => {
                if !checked_history {
                    if let Some(bounds) = read_with_retry(|| ctx.source.bounds()).await {
                        if from.saturating_add(1) < bounds.lowest {
                            return Err(Ending::HistoryUnavailable {
                                lowest: bounds.lowest,
                            });
                        }
                    }
                    checked_history = true;
                }
                let batch = ctx.config.replay_batch_blocks;
                let read = |after: u64| {
                    read_with_retry(move || ctx.source.blocks_between(after, upto, batch))
                };
                let mut blocks = read(from).await;
                loop {
                    // Nothing returned means nothing is stored in (from, upto].
                    let reached = blocks.last().map_or(upto, |b| b.height);
                    let more = !blocks.is_empty() && reached < upto;
                    // The next batch is read from Tarantool while this one is framed and queued.
                    let next = async {
                        match more {
                            true => Some(read(reached).await),
                            false => None,
                        }
                    };
                    let (queued, next) = futures_util::future::join(
                        queue_history(ctx, queue, selection, blocks),
                        next,
                    )
                    .await;
                    if !queued {
                        return Err(Ending::SocketGone);
                    }
                    after = reached;
                    match next {
                        Some(next_blocks) => blocks = next_blocks,
                        None => break,
                    }
                }
            }
        }
    }
}

/// Frames history blocks for this subscriber and queues them at the pace its socket takes
/// them; false when the connection is gone.
async fn queue_history(
    ctx: &StreamContext,
    queue: &SubscriberQueue,
    selection: &Selection,
    blocks: Vec<planetmint_streams_model::CommittedBlock>,
) -> bool {
    let replayed = ctx
        .hub
        .metrics()
        .replayed_blocks
        .with_label_values(&["source"]);
    for block in blocks {
        let published = PublishedBlock::new(Arc::new(block));
        if let Some(frames) = selection.frames(&published) {
            if !queue.push_waiting(frames).await {
                return false;
            }
        }
        replayed.inc();
    }
    true
}

/// Runs a source read until it succeeds, with backoff; the subscriber stays connected (and
/// pinged) meanwhile.
async fn read_with_retry<T, F, Fut>(read: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, planetmint_streams_model::SourceError>>,
{
    let mut delay = Duration::from_millis(100);
    let mut logged = false;
    loop {
        match read().await {
            Ok(value) => return value,
            Err(err) => {
                if !logged {
                    warn!(error = %err, "replay waits for the source");
                    logged = true;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn run(items: Vec<Item>) -> bool {
        let mut text = FragmentedText::default();
        items.iter().all(|item| text.check(item))
    }

    #[test]
    fn code_points_split_across_fragments_are_valid_and_broken_ones_are_not() {
        let euro = "\u{20ac}".as_bytes(); // three bytes
        let whole = |b: &[u8]| Bytes::copy_from_slice(b);
        assert!(run(vec![
            Item::FirstText(whole(&euro[..1])),
            Item::Continue(whole(&euro[1..2])),
            Item::Last(whole(&euro[2..]))
        ]));
        assert!(run(vec![
            Item::FirstText(whole(b"hello ")),
            Item::Last(whole(b"world"))
        ]));
        // A code point cut short at the end of the message.
        assert!(!run(vec![
            Item::FirstText(whole(b"ok")),
            Item::Last(whole(&euro[..2]))
        ]));
        // An invalid byte in a middle fragment.
        assert!(!run(vec![
            Item::FirstText(whole(b"ok")),
            Item::Continue(whole(&[0xff])),
            Item::Last(whole(b"x"))
        ]));
        // Binary messages are not text.
        assert!(run(vec![
            Item::FirstBinary(whole(&[0xff])),
            Item::Last(whole(&[0xfe]))
        ]));
    }
}
