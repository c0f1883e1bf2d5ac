//! `unsubscribe {"subscription"}`: closes a subscription; answered `true` after its last
//! notification (what was queued for it still goes out).

use super::protocol::RpcError;
use super::{lookup, update};
use crate::engine::Connection;

/// Closes the subscription `id` names.
pub(super) fn run(conn: &mut Connection, id: &str) -> Result<(), RpcError> {
    let key = lookup(conn, id)?;
    if let Some(pending) = conn.unsubscribe(key) {
        update::drop_pending(conn, pending);
    }
    Ok(())
}
