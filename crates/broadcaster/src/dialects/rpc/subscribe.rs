//! `subscribe {"stream", ...options}`: opens a subscription; answered with its id once its
//! `from_height` is known to be stored (before its first notification), or with `-32003`.

use serde_json::Value;

use super::protocol::RpcError;
use super::{refusal_error, shared_envelope};
use crate::engine::connection::SubscribeRequest;
use crate::engine::Connection;
use crate::subscription::Subscription;

/// Opens the subscription; the answer follows when its start is checked.
pub(super) fn run(
    conn: &mut Connection,
    id: &Value,
    subscription: Subscription,
) -> Result<(), RpcError> {
    let key = conn.new_key();
    conn.subscribe(
        key,
        SubscribeRequest {
            subscription,
            envelope: Some(shared_envelope(key)),
            tag: id.clone(),
            since: None,
            replay_slot: None,
            group: None,
        },
    )
    .map_err(|refusal| refusal_error(&refusal))
}
