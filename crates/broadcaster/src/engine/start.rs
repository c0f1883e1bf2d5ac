//! How a subscription starts, in two steps the driver polls with the connection's other
//! work: its `from_height` checked against the stored history ([`check`]; the dialect answers
//! then: accepted, or refused with the lowest stored height), then history replayed and the
//! live stream attached ([`replay`], see [`crate::replay`]), so every guarantee of the URL
//! streams holds for every subscription of every dialect.

use std::sync::Arc;

use futures_util::future::LocalBoxFuture;

use super::close::Ending;
use crate::hub::{Selection, SubscriberId};
use crate::limits::ConnectionSlot;
use crate::queue::SubscriberQueue;
use crate::replay::ReplayError;
use crate::StreamContext;

/// Where a subscription's start got to.
#[derive(Debug)]
pub(crate) enum Started {
    /// Its `from_height` is stored (or it has none): it may be answered, then replayed.
    Checked,
    /// `from_height` is below the stored history, which starts at `lowest`: nothing was
    /// queued for it.
    Refused {
        /// Lowest stored height.
        lowest: u64,
    },
    /// Attached to the live stream (history, if asked for, queued before).
    Attached(SubscriberId),
    /// The history was pruned while it was replayed (only this subscription ends).
    Pruned {
        /// Lowest stored height.
        lowest: u64,
    },
    /// Its consumer group has its most members.
    GroupFull,
    /// The connection cannot go on (its queue closed).
    Ended(Ending),
}

/// Checks that the history above `from_height` is still stored. Waits for the source while it
/// is unreachable, as a replay does (the stored range is read through the shared history, so
/// a herd of subscribes asks Tarantool once).
pub(crate) fn check(
    ctx: Arc<StreamContext>,
    from_height: Option<u64>,
) -> LocalBoxFuture<'static, Started> {
    Box::pin(async move {
        let Some(from) = from_height else {
            return Started::Checked;
        };
        if !ctx.hub.needs_source(from) {
            return Started::Checked;
        }
        match ctx.replay.history().bounds().await {
            Some(bounds) if from.saturating_add(1) < bounds.lowest => Started::Refused {
                lowest: bounds.lowest,
            },
            _ => Started::Checked,
        }
    })
}

/// What a replay needs.
pub(crate) struct ReplayPlan {
    pub ctx: Arc<StreamContext>,
    pub queue: Arc<SubscriberQueue>,
    pub selection: Arc<Selection>,
    /// Replay every block above this height first.
    pub from_height: Option<u64>,
    /// For a live subscription: the height after which it gets every block (`None`: the
    /// ingest has not started; it gets what comes once attached).
    pub since: Option<u64>,
    /// Its place under the per-address replay limit, held while it replays from the source.
    pub replay_slot: Option<ConnectionSlot>,
    /// The consumer group it joins instead (live, no history).
    pub group: Option<String>,
}

/// Queues history (if asked for) at the socket's pace, then attaches to the live stream at
/// the seam, nothing missed or repeated.
pub(crate) fn replay(plan: ReplayPlan) -> LocalBoxFuture<'static, Started> {
    Box::pin(async move {
        let ReplayPlan {
            ctx,
            queue,
            selection,
            from_height,
            since,
            replay_slot,
            group,
        } = plan;
        if let Some(group) = group {
            return match ctx.groups.join(&ctx.hub, &group, &queue, &selection) {
                Ok(id) => Started::Attached(id),
                Err(_) => Started::GroupFull,
            };
        }
        let attached = match from_height {
            Some(_) => ctx.replay.attach(&queue, &selection, from_height).await,
            None => {
                ctx.replay
                    .attach_live_since(&queue, &selection, since)
                    .await
            }
        };
        drop(replay_slot); // caught up: no longer replaying from the source
        match attached {
            Ok(id) => Started::Attached(id),
            Err(ReplayError::HistoryUnavailable { lowest }) => Started::Pruned { lowest },
            Err(ReplayError::QueueClosed) => Started::Ended(Ending::SocketGone),
        }
    })
}
