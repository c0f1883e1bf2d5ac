//! `update {"subscription", "add", "remove"}`: changes a subscription's filters without
//! losing its place; answered `{"applies_after_height": H}`: blocks up to H were filtered with
//! the old values, later ones with the new. While the subscription is still starting, the
//! answer waits until it is live.

use serde_json::{json, Value};

use super::protocol::{FilterChange, Method, RpcError, LIMIT_REACHED};
use super::{answer_error, lookup, refusal_error};
use crate::engine::connection::{UpdateRefusal, Updated};
use crate::engine::Connection;

/// Applies the change; `Ok(None)`: answered later.
pub(super) fn run(
    conn: &mut Connection,
    request_id: &Value,
    id: &str,
    add: FilterChange,
    remove: FilterChange,
) -> Result<Option<Value>, RpcError> {
    let key = lookup(conn, id)?;
    match conn.update(key, add, remove, request_id.clone()) {
        Ok(Updated::AppliesAfter(after)) => Ok(Some(json!({"applies_after_height": after}))),
        Ok(Updated::Pending) => Ok(None),
        Err(UpdateRefusal::NoSuchSubscription) => Err(RpcError::invalid_params(
            "subscription",
            "no such subscription",
        )),
        Err(UpdateRefusal::WouldEmpty { name }) => Err(RpcError::invalid_params(
            "remove",
            format!("would remove every {name} value, and no {name} filter means every transaction: unsubscribe instead"),
        )),
        Err(UpdateRefusal::Refused(refusal)) => Err(refusal_error(&refusal)),
        Err(UpdateRefusal::TooManyPending { max }) => Err(RpcError::new(
            LIMIT_REACHED,
            format!("at most {max} updates may wait for their subscriptions to start; retry when they are live"),
        )
        .with_data(json!({"limit": "pending_updates", "max": max}))),
    }
}

/// Answers updates that waited for a subscription that ended before they applied.
pub(super) fn drop_pending(conn: &Connection, pending: Vec<Value>) {
    let error = RpcError::invalid_params(
        "subscription",
        "the subscription ended before the update applied",
    );
    for id in pending {
        answer_error(conn, Some(Method::Update), &id, &error);
    }
}
