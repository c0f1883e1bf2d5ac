//! The stream-sea messages, declared once: the dialect reads requests and writes answers with
//! these types, and the catalogue and the AsyncAPI document publish their JSON Schemas.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `authenticate`'s credential.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum AuthenticatePayload {
    /// A client id and secret (a client configured on the node, or a stream token as the
    /// secret).
    Basic {
        /// The client's id.
        #[serde(rename = "clientId")]
        client_id: String,
        /// Its secret.
        #[serde(rename = "clientSecret")]
        client_secret: String,
    },
    /// A JWT of the operator's identity provider.
    Jwt {
        /// The client's id (not signed: logged, not trusted).
        #[serde(rename = "clientId")]
        client_id: String,
        /// The JWT.
        jwt: String,
    },
}

/// A client's request (`id` counts up from 1; `authenticate` first).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Request {
    /// Presents a credential; only as the first message.
    Authenticate {
        /// The request's id.
        id: u64,
        /// The credential.
        payload: AuthenticatePayload,
    },
    /// Opens a subscription.
    Subscribe {
        /// The request's id: every answer and delivery of the subscription carries it.
        id: u64,
        /// The stream's name, optionally followed by the URL stream's query string
        /// (`valid_transactions?public_key=...&from_height=120`).
        payload: String,
        /// A consumer group (an RFC 4122 UUID): each event goes to one of its members.
        #[serde(rename = "groupId")]
        group_id: Option<String>,
    },
    /// Closes a subscription.
    Unsubscribe {
        /// The request's id.
        id: u64,
        /// The id of the subscribe request that opened it.
        payload: u64,
    },
}

/// The server's answer to a request (exactly one per request, before any delivery).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Answer {
    /// The request's id (`null` when it could not be read).
    pub id: Value,
    /// `authenticate`, `subscription` (for a subscribe), `unsubscribe`, or the request's own
    /// action when it was refused unread.
    pub action: Value,
    /// Whether the request was done.
    pub success: bool,
    /// For a subscribe: the stream's name.
    #[serde(rename = "streamName", skip_serializing_if = "Option::is_none")]
    pub stream_name: Option<String>,
    /// A subscribe's id on success; `{"error", "parameter"?, ...}` on failure.
    pub payload: Value,
}

/// One message of a subscription: exactly the JSON object the URL stream with the same
/// options sends. (Written around the block's shared bytes by the subscription's envelope,
/// in this order.)
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Delivery {
    /// The subscribe request's id.
    pub id: u64,
    /// `subscription`.
    pub action: String,
    /// The stream's name.
    #[serde(rename = "streamName")]
    pub stream_name: String,
    /// The URL stream's message.
    pub payload: Value,
}

impl Answer {
    /// The answer as the wire writes it.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_library_s_messages_read_as_requests() {
        let auth: Request = serde_json::from_value(json!({"id": 1, "action": "authenticate",
            "payload": {"type": "basic", "clientId": "abc", "clientSecret": "def123"}}))
        .expect("authenticate");
        assert!(matches!(
            auth,
            Request::Authenticate {
                id: 1,
                payload: AuthenticatePayload::Basic { .. }
            }
        ));
        let subscribe: Request = serde_json::from_value(
            json!({"id": 2, "action": "subscribe", "payload": "valid_blocks"}),
        )
        .expect("subscribe");
        assert!(matches!(
            subscribe,
            Request::Subscribe {
                id: 2,
                group_id: None,
                ..
            }
        ));
    }
}
