//! `authenticate {"token"}`: presents a signed stream token (keeping it out of URLs). It
//! replaces the connection's credential: every open subscription is checked against it and
//! those it does not allow end (a `subscription_error` each, with its `last_height`); its
//! streams and pinned filters bound every later `subscribe` and `update`, and its expiry closes
//! the connection (`auth.close_on_expiry`).

use planetmint_streams_auth::AuthError;
use serde_json::{json, Value};

use super::protocol::{RpcError, NOT_AUTHORIZED};
use crate::engine::{Connection, Dialect};

/// The error for a credential that is refused or does not allow a request.
pub(super) fn auth_error(err: &AuthError) -> RpcError {
    let mut data = json!({"reason": err.reason()});
    if let AuthError::FilterNotAllowed { parameter, .. } = err {
        data["parameter"] = Value::from(*parameter);
    }
    RpcError::new(NOT_AUTHORIZED, err.to_string()).with_data(data)
}

/// Verifies `token` and makes it the connection's credential.
pub(super) fn run(conn: &mut Connection, token: &str) -> Result<Value, RpcError> {
    let authenticated = conn.authenticate(token).map_err(|err| auth_error(&err))?;
    let result = json!({
        "streams": authenticated.streams.iter().map(|s| s.name()).collect::<Vec<_>>(),
        "expires_at": authenticated.expires_at,
    });
    for ended in authenticated.ended {
        // Told before the answer: the client knows what the new token ended.
        let _ = super::JsonRpc.on_subscription(conn, ended);
    }
    Ok(result)
}
