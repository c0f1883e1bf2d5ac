//! The one-socket channel (`/api/v1/streams`) speaks two protocols; the client's first
//! message chooses which for the whole connection: a JSON object with `"action"` is
//! stream-sea ([`super::streamsea`]), anything else JSON-RPC ([`super::rpc`]), whose parser
//! answers what is not a JSON-RPC request.

use serde_json::Value;

use super::rpc::JsonRpc;
use super::streamsea::StreamSea;
use crate::config::StreamsConfig;
use crate::engine::{
    ClientMessage, Connection, Dialect, Ending, Farewell, LastHeights, SubscriptionEvent,
};

/// The channel's dialect, once the first message has chosen it.
#[derive(Debug, Default)]
pub(crate) enum Channel {
    /// No message yet.
    #[default]
    Undecided,
    /// JSON-RPC 2.0.
    JsonRpc(JsonRpc),
    /// stream-sea.
    StreamSea(StreamSea),
}

/// Whether a client's first message is stream-sea's (a JSON object with `action` and no
/// `jsonrpc`).
fn is_stream_sea(message: &ClientMessage) -> bool {
    let ClientMessage::Text(text) = message else {
        return false;
    };
    match serde_json::from_slice::<Value>(text) {
        Ok(Value::Object(object)) => {
            object.contains_key("action") && !object.contains_key("jsonrpc")
        }
        _ => false,
    }
}

impl Dialect for Channel {
    const NAME: &'static str = "channel";

    fn on_message(&mut self, conn: &mut Connection, message: ClientMessage) -> Result<(), Ending> {
        if matches!(self, Channel::Undecided) {
            *self = if is_stream_sea(&message) {
                Channel::StreamSea(StreamSea::default())
            } else {
                Channel::JsonRpc(JsonRpc)
            };
        }
        match self {
            Channel::Undecided => Ok(()),
            Channel::JsonRpc(rpc) => rpc.on_message(conn, message),
            Channel::StreamSea(sea) => sea.on_message(conn, message),
        }
    }

    fn on_subscription(
        &mut self,
        conn: &mut Connection,
        event: SubscriptionEvent,
    ) -> Result<(), Ending> {
        match self {
            Channel::Undecided => Ok(()),
            Channel::JsonRpc(rpc) => rpc.on_subscription(conn, event),
            Channel::StreamSea(sea) => sea.on_subscription(conn, event),
        }
    }

    fn farewell(&self, ending: &Ending, heights: &LastHeights, config: &StreamsConfig) -> Farewell {
        match self {
            // Nothing said yet: only the close frame, in no protocol's words.
            Channel::Undecided => Farewell {
                notice: None,
                ..JsonRpc.farewell(ending, heights, config)
            },
            Channel::JsonRpc(rpc) => rpc.farewell(ending, heights, config),
            Channel::StreamSea(sea) => sea.farewell(ending, heights, config),
        }
    }
}
