//! One subscriber's connection after the upgrade: the task that owns its socket's concerns.
//!
//! A single task per connection waits on whichever comes first: the replay finishing (a
//! resume attaches to the live stream only once nothing is missing; see [`crate::replay`]),
//! the ping timer ([`crate::keepalive`]), a frame from the client, its queue overflowing,
//! server shutdown or its token expiring, and then closes it ([`crate::close`]). Blocks do not
//! pass through this task: the hub and the replay put them in the queue and the response
//! body takes them.

use std::sync::Arc;
use std::time::Duration;

use actix_ws::{Message, MessageStream, ProtocolError, Session};
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info};

use crate::close::{connection_lost, Ending};
use crate::hub::{Selection, SubscriberId};
use crate::keepalive::{answer_ping, on_timer, KeepAlive, CONTROL_SEND_TIMEOUT};
use crate::limits::{ConnectionSlot, TokenBucket};
use crate::metrics::GaugeCount;
use crate::queue::SubscriberQueue;
use crate::replay::ReplayError;
use crate::subscription::Subscription;
use crate::utf8::{is_invalid_utf8, FragmentedText};
use crate::StreamContext;

/// Answers one frame from the client; `Err` ends the session.
async fn on_inbound(
    message: Option<Result<Message, ProtocolError>>,
    session: &mut Session,
    keep_alive: &mut KeepAlive,
    budget: &mut TokenBucket,
    fragments: &mut FragmentedText,
) -> Result<(), Ending> {
    if matches!(message, Some(Ok(_))) {
        budget.take();
    }
    match message {
        Some(Ok(Message::Ping(payload))) => answer_ping(session, &payload).await,
        Some(Ok(Message::Pong(_))) => {
            keep_alive.pong_received();
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
        Some(Err(err)) if connection_lost(&err) => Err(Ending::SocketGone),
        Some(Err(err)) => Err(Ending::ProtocolError(err.to_string())),
        None => Err(Ending::SocketGone),
    }
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
    /// Its place under the per-address replay limit, while it replays from the source.
    pub replay_slot: Option<ConnectionSlot>,
    /// Its count in `planetmint_streams_subscribers`, from the handshake's answer to its end.
    pub counted: GaugeCount,
    /// The last height published when the handshake was answered: a live subscriber gets
    /// every block after it, however late this task starts.
    pub connected_after: Option<u64>,
}

/// Runs a subscriber's session to its end.
pub(crate) async fn run(ctx: Arc<StreamContext>, subscription: Subscription, parts: SessionParts) {
    let SessionParts {
        mut session,
        mut inbound,
        queue,
        slot,
        token_expires,
        replay_slot,
        counted,
        connected_after,
    } = parts;
    let _slot = slot; // counted as open until this session ends
    let metrics = ctx.hub.metrics().clone();
    let stream = subscription.stream.name();
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
    let attach = async {
        let attached = match subscription.from_height {
            Some(_) => {
                ctx.replay
                    .attach(&queue, &selection, subscription.from_height)
                    .await
            }
            None => {
                ctx.replay
                    .attach_live_since(&queue, &selection, connected_after)
                    .await
            }
        };
        drop(replay_slot); // caught up: no longer replaying from the source
        attached.map_err(|err| match err {
            ReplayError::HistoryUnavailable { lowest } => Ending::HistoryUnavailable {
                from_height: subscription.from_height,
                lowest,
            },
            ReplayError::QueueClosed => Ending::SocketGone,
        })
    };
    tokio::pin!(attach);
    let mut attaching = true;

    let ending = loop {
        // Over its frame budget the client is read more slowly, not cut off.
        let read_in = budget.ready_in();
        let step = tokio::select! {
            result = &mut attach, if attaching => {
                attaching = false;
                result.map(|id| attached = Some(id))
            }
            _ = sleep_until(keep_alive.next_deadline()) => on_timer(&mut session, &mut keep_alive).await,
            message = inbound.recv(), if read_in.is_zero() => on_inbound(message, &mut session, &mut keep_alive, &mut budget, &mut fragments).await,
            _ = tokio::time::sleep(read_in), if !read_in.is_zero() => Ok(()),
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
    drop(counted);
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
    if let Some(close) = ending.close_frame(&ctx.config, last_height) {
        let sent = tokio::time::timeout(CONTROL_SEND_TIMEOUT, session.close(Some(close))).await;
        if matches!(sent, Ok(Ok(()))) {
            if let Some(wait) = ending.close_handshake_wait(&ctx.config) {
                await_client_close(&mut inbound, wait).await;
            }
        }
    }
    queue.finish();
}

/// Reads (and drops) what the client sends until its close frame answers ours, the
/// connection ends, or `wait` is over. The connection is closed only then, so it is never
/// closed with unread data in it: the kernel would reset it and the client would lose the
/// blocks and the close frame (with `last_height`) it had not read yet.
async fn await_client_close(inbound: &mut MessageStream, wait: Duration) {
    let drain = async {
        while let Some(Ok(message)) = inbound.recv().await {
            if matches!(message, Message::Close(_)) {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(wait, drain).await;
}
