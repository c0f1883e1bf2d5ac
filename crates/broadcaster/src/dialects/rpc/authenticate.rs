//! `authenticate {"token"}` (a stream token or a JWT) or `{"client_id", "client_secret"}` (a
//! client configured on the node): presents a credential (keeping it out of URLs). It
//! replaces the connection's credential: every open subscription is checked against it and
//! those it does not allow end (a `subscription_error` each, with its `last_height`); its
//! streams and pinned filters bound every later `subscribe` and `update`, and its expiry closes
//! the connection (`auth.close_on_expiry`).

use planetmint_streams_auth::{AuthError, Credential};
use serde_json::{json, Value};

use super::protocol::{RpcCredential, RpcError, NOT_AUTHORIZED};
use crate::engine::{Connection, Dialect};

/// The error for a credential that is refused or does not allow a request.
pub(super) fn auth_error(err: &AuthError) -> RpcError {
    let mut data = json!({"reason": err.reason()});
    if let AuthError::FilterNotAllowed { parameter, .. } = err {
        data["parameter"] = Value::from(*parameter);
    }
    RpcError::new(NOT_AUTHORIZED, err.to_string()).with_data(data)
}

/// Verifies `credential` and makes it the connection's.
pub(super) fn run(conn: &mut Connection, credential: &RpcCredential) -> Result<Value, RpcError> {
    let credential = match credential {
        RpcCredential::Token(token) => Credential::Bearer(token),
        RpcCredential::Client { id, secret } => Credential::ClientSecret {
            client_id: id,
            secret,
        },
    };
    let authenticated = conn
        .authenticate(credential)
        .map_err(|err| auth_error(&err))?;
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
