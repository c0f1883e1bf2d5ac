//! The URL streams (Planetmint's `/api/v1/streams/valid_transactions` and `valid_blocks`)
//! as a dialect: one subscription, named by the URL's path and query, opened before the
//! handshake is answered; the frames go out as they are; client messages are only checked;
//! the close reason says `last_height`.

use crate::config::StreamsConfig;
use crate::engine::connection::{SubscribeRefusal, SubscribeRequest};
use crate::engine::{Connection, Dialect, Ending, Farewell, LastHeights, SubscriptionEvent};
use crate::limits::ConnectionSlot;
use crate::subscription::Subscription;

/// A URL stream's one subscription.
#[derive(Debug)]
pub(crate) struct UrlStream {
    key: u64,
    from_height: Option<u64>,
}

impl UrlStream {
    /// Opens the URL's subscription on `conn`. `since` is the last height published when the
    /// handshake is answered: a live subscriber gets every block after it.
    pub(crate) fn open(
        conn: &mut Connection,
        subscription: Subscription,
        since: Option<u64>,
        replay_slot: Option<ConnectionSlot>,
    ) -> Result<Self, SubscribeRefusal> {
        let key = conn.new_key();
        let from_height = subscription.from_height;
        conn.subscribe(
            key,
            SubscribeRequest {
                subscription,
                envelope: None,
                tag: serde_json::Value::Null,
                since,
                replay_slot,
                group: None,
            },
        )?;
        Ok(Self { key, from_height })
    }
}

/// What happened to a URL's one subscription means for its connection (the URL streams and
/// their plain HTTP forms): history it asks for that is not stored ends the connection (4001),
/// anything else the server ends it for ends the connection too.
pub(crate) fn one_subscription(
    from_height: Option<u64>,
    event: SubscriptionEvent,
) -> Result<(), Ending> {
    match event {
        SubscriptionEvent::Refused { lowest, .. }
        | SubscriptionEvent::Ended {
            why: crate::engine::connection::EndReason::HistoryPruned { lowest },
            ..
        } => Err(Ending::HistoryUnavailable {
            from_height,
            lowest,
        }),
        // The URL's credential allowed it when it connected; nothing re-checks it.
        SubscriptionEvent::Ended { .. } => Err(Ending::NotAuthenticated),
        SubscriptionEvent::Accepted { .. } | SubscriptionEvent::UpdatesApplied { .. } => Ok(()),
    }
}

impl Dialect for UrlStream {
    const NAME: &'static str = "url";

    fn on_subscription(
        &mut self,
        _conn: &mut Connection,
        event: SubscriptionEvent,
    ) -> Result<(), Ending> {
        one_subscription(self.from_height, event)
    }

    fn farewell(&self, ending: &Ending, heights: &LastHeights, config: &StreamsConfig) -> Farewell {
        let last_height = heights.get(&self.key).copied().flatten();
        Farewell {
            notice: None,
            close: ending.close_frame(config, last_height),
        }
    }
}
