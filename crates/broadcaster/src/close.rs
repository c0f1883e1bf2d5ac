//! How a subscriber's session ends: the reasons, their metric labels, and the close frame
//! each one sends (code and JSON reason, with the last height the client can resume from).

use std::time::Duration;

use actix_ws::{CloseCode, CloseReason};

use crate::config::StreamsConfig;

use crate::subscription::Subscription;
use crate::StreamContext;

/// Close code: the subscriber fell behind; the reason carries `last_height`.
pub const CLOSE_TOO_SLOW: u16 = planetmint_streams_model::vocabulary::close::TOO_SLOW;
/// Close code: the history asked for with `from_height` is no longer stored.
pub const CLOSE_HISTORY_UNAVAILABLE: u16 =
    planetmint_streams_model::vocabulary::close::HISTORY_UNAVAILABLE;
/// Longest wait for the client's close frame after ours (RFC 6455 7.1.1: the server closes
/// TCP after sending and receiving one). A subscriber closed for being slow first reads the
/// blocks queued before our close frame; one that reads nothing at all is dropped by the
/// kernel sooner (`streams.tcp_user_timeout`).
pub const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a session ended.
#[derive(Debug)]
pub(crate) enum Ending {
    /// The client sent a close frame.
    ClientClosed(Option<CloseReason>),
    /// The queue overflowed.
    TooSlow,
    /// No pong in time.
    NoPong,
    /// The client sent a frame larger than allowed.
    FrameTooBig,
    /// The client broke the protocol.
    ProtocolError(String),
    /// The client sent text that is not UTF-8.
    InvalidText,
    /// The client sent more frames than allowed.
    Flooding,
    /// `from_height` is below what the source still holds.
    HistoryUnavailable { lowest: u64 },
    /// The server is shutting down.
    Shutdown,
    /// The subscriber's token expired (with `auth.close_on_expiry`).
    TokenExpired,
    /// The connection is gone (nothing can be sent).
    SocketGone,
}

impl Ending {
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Ending::ClientClosed(_) => "client",
            Ending::TooSlow => "too_slow",
            Ending::NoPong => "pong_timeout",
            Ending::FrameTooBig => "frame_too_big",
            Ending::ProtocolError(_) => "protocol_error",
            Ending::InvalidText => "invalid_text",
            Ending::Flooding => "flooding",
            Ending::HistoryUnavailable { .. } => "history_unavailable",
            Ending::Shutdown => "shutdown",
            Ending::TokenExpired => "token_expired",
            Ending::SocketGone => "socket",
        }
    }

    /// How long to wait for the client's close frame after ours; `None`: close at once (the
    /// client closed first, the socket is gone, the client answers nothing (no pong: it will
    /// not answer a close either), or it broke the protocol or its limits, where a prompt
    /// close is what RFC 6455 and the conformance cases ask).
    pub(crate) fn close_handshake_wait(&self, config: &StreamsConfig) -> Option<Duration> {
        match self {
            Ending::TooSlow | Ending::HistoryUnavailable { .. } | Ending::TokenExpired => {
                Some(CLOSE_HANDSHAKE_TIMEOUT)
            }
            // The server stops after its grace period whatever the clients do.
            Ending::Shutdown => Some(config.shutdown_grace),
            Ending::ClientClosed(_)
            | Ending::NoPong
            | Ending::SocketGone
            | Ending::FrameTooBig
            | Ending::ProtocolError(_)
            | Ending::InvalidText
            | Ending::Flooding => None,
        }
    }

    /// The close frame to send, given the last height completely handed to the socket.
    pub(crate) fn close_frame(
        &self,
        ctx: &StreamContext,
        subscription: &Subscription,
        last_height: Option<u64>,
    ) -> Option<CloseReason> {
        let with = |code: CloseCode, json: serde_json::Value| {
            Some(CloseReason {
                code,
                description: Some(json.to_string()),
            })
        };
        match self {
            Ending::ClientClosed(reason) => Some(CloseReason {
                code: reason.as_ref().map_or(CloseCode::Normal, |r| r.code),
                description: None,
            }),
            Ending::TooSlow => with(
                CloseCode::Other(CLOSE_TOO_SLOW),
                serde_json::json!({"reason": "too slow", "last_height": last_height}),
            ),
            Ending::NoPong => with(
                CloseCode::Other(CLOSE_TOO_SLOW),
                serde_json::json!({"reason": "no pong", "last_height": last_height}),
            ),
            Ending::FrameTooBig => with(
                CloseCode::Size,
                serde_json::json!({"reason": "frame too big", "max_bytes": ctx.config.max_frame_size}),
            ),
            Ending::ProtocolError(_) => with(
                CloseCode::Protocol,
                serde_json::json!({"reason": "protocol error"}),
            ),
            Ending::InvalidText => with(
                CloseCode::Invalid,
                serde_json::json!({"reason": "text frame is not UTF-8"}),
            ),
            Ending::Flooding => with(
                CloseCode::Policy,
                serde_json::json!({"reason": "too many frames", "max_per_second": ctx.config.inbound_frames_per_second}),
            ),
            Ending::HistoryUnavailable { lowest } => with(
                CloseCode::Other(CLOSE_HISTORY_UNAVAILABLE),
                serde_json::json!({
                    "reason": "history not available",
                    "from_height": subscription.from_height,
                    "lowest_height": lowest,
                }),
            ),
            Ending::Shutdown => with(
                CloseCode::Away,
                serde_json::json!({"reason": "server shutting down", "last_height": last_height}),
            ),
            Ending::TokenExpired => with(
                CloseCode::Policy,
                serde_json::json!({"reason": "token expired", "last_height": last_height}),
            ),
            Ending::SocketGone => None,
        }
    }
}
