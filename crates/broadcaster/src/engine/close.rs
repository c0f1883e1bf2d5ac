//! How a connection ends, whatever its dialect: the reasons, their metric labels, the close
//! codes, and what each one tells the client (code and JSON reason; the dialect adds where
//! the client can resume: `last_height` on a URL stream, `last_heights` on JSON-RPC).

use std::time::Duration;

use actix_http::error::PayloadError;
use actix_ws::{CloseCode, CloseReason, ProtocolError};
use serde_json::{json, Map, Value};

use crate::config::StreamsConfig;

/// WebSocket close codes the server sends, each with what it means for the client.
pub mod codes {
    /// Normal close (the answer to a client's close).
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down; the reason carries `last_height` to resume from.
    pub const GOING_AWAY: u16 = 1001;
    /// The client broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame from the client was not UTF-8.
    pub const INVALID_TEXT: u16 = 1007;
    /// Policy: a refused or expired token.
    pub const POLICY: u16 = 1008;
    /// A frame from the client was too big.
    pub const TOO_BIG: u16 = 1009;
    /// The subscriber fell behind (or answered no ping); the reason carries `last_height`.
    pub const TOO_SLOW: u16 = 4000;
    /// `from_height` is below the history still stored; the reason carries `lowest_height`.
    pub const HISTORY_UNAVAILABLE: u16 = 4001;

    /// Every code the server sends, with its meaning (for the catalogue and docs).
    pub const ALL: &[(u16, &str)] = &[
        (NORMAL, "normal close"),
        (GOING_AWAY, "server shutting down; reason {\"reason\", \"last_height\"}: reconnect with from_height=last_height"),
        (PROTOCOL_ERROR, "protocol error"),
        (INVALID_TEXT, "a text frame from the client was not UTF-8"),
        (POLICY, "policy: a refused or expired token"),
        (TOO_BIG, "a frame from the client was too big"),
        (TOO_SLOW, "too slow or no pong; reason {\"reason\", \"last_height\"}: reconnect with from_height=last_height"),
        (HISTORY_UNAVAILABLE, "from_height is below the history still stored; reason {\"reason\", \"from_height\", \"lowest_height\"}"),
    ];
}

/// Close code: the subscriber fell behind; the reason carries `last_height`.
pub const CLOSE_TOO_SLOW: u16 = codes::TOO_SLOW;
/// Close code: the history asked for with `from_height` is no longer stored.
pub const CLOSE_HISTORY_UNAVAILABLE: u16 = codes::HISTORY_UNAVAILABLE;
/// Longest wait for the client's close frame after ours (RFC 6455 7.1.1: the server closes
/// TCP after sending and receiving one). A subscriber closed for being slow first reads the
/// blocks queued before our close frame; one that reads nothing at all is dropped by the
/// kernel sooner (`streams.tcp_user_timeout`).
pub const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a connection ended.
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
    /// `from_height` is below what the source still holds.
    HistoryUnavailable {
        /// The `from_height` asked for.
        from_height: Option<u64>,
        /// The lowest height still stored.
        lowest: u64,
    },
    /// The server is shutting down.
    Shutdown,
    /// The token expired (with `auth.close_on_expiry`).
    TokenExpired,
    /// JSON-RPC in signed mode, and the first request was not `authenticate`.
    NotAuthenticated,
    /// The connection is gone (nothing can be sent).
    SocketGone,
}

/// Whether a read error is the client's connection ending without a close frame (it quit,
/// or its network went): counted as `socket`, not as a broken frame. actix-ws passes the
/// connection's end on as the request payload's error.
pub(crate) fn connection_lost(err: &ProtocolError) -> bool {
    let ProtocolError::Io(err) = err else {
        return false;
    };
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<PayloadError>())
        .is_some_and(|payload| matches!(payload, PayloadError::Incomplete(_) | PayloadError::Io(_)))
}

/// What the close frame for an [`Ending`] says, before the channel adds where to resume.
pub(crate) struct Closing {
    /// The close code.
    pub code: CloseCode,
    /// The JSON reason; `None` when the close echoes the client's.
    pub reason: Option<Map<String, Value>>,
    /// Whether the reason also says where to resume (the channel adds `last_height` or
    /// `last_heights`).
    pub resumable: bool,
}

impl Ending {
    /// The `reason` label of `planetmint_streams_disconnects_total`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Ending::ClientClosed(_) => "client",
            Ending::TooSlow => "too_slow",
            Ending::NoPong => "pong_timeout",
            Ending::FrameTooBig => "frame_too_big",
            Ending::ProtocolError(_) => "protocol_error",
            Ending::InvalidText => "invalid_text",
            Ending::HistoryUnavailable { .. } => "history_unavailable",
            Ending::Shutdown => "shutdown",
            Ending::TokenExpired => "token_expired",
            Ending::NotAuthenticated => "not_authenticated",
            Ending::SocketGone => "socket",
        }
    }

    /// How long to wait for the client's close frame after ours; `None`: close at once (the
    /// client closed first, the socket is gone, the client answers nothing (no pong: it will
    /// not answer a close either), or it broke the protocol or its limits, where a prompt
    /// close is what RFC 6455 and the conformance cases ask).
    pub(crate) fn close_handshake_wait(&self, config: &StreamsConfig) -> Option<Duration> {
        match self {
            Ending::TooSlow
            | Ending::HistoryUnavailable { .. }
            | Ending::TokenExpired
            | Ending::NotAuthenticated => Some(CLOSE_HANDSHAKE_TIMEOUT),
            // The server stops after its grace period whatever the clients do.
            Ending::Shutdown => Some(config.shutdown_grace),
            Ending::ClientClosed(_)
            | Ending::NoPong
            | Ending::SocketGone
            | Ending::FrameTooBig
            | Ending::ProtocolError(_)
            | Ending::InvalidText => None,
        }
    }

    /// The close code and JSON reason; `None` when no close frame can be sent.
    pub(crate) fn closing(&self, config: &StreamsConfig) -> Option<Closing> {
        let with = |code: CloseCode, reason: Value, resumable: bool| {
            let reason = match reason {
                Value::Object(fields) => Some(fields),
                _ => None,
            };
            Some(Closing {
                code,
                reason,
                resumable,
            })
        };
        match self {
            Ending::ClientClosed(reason) => with(
                reason.as_ref().map_or(CloseCode::Normal, |r| r.code),
                Value::Null,
                false,
            ),
            Ending::TooSlow => with(
                CloseCode::Other(CLOSE_TOO_SLOW),
                json!({"reason": "too slow"}),
                true,
            ),
            Ending::NoPong => with(
                CloseCode::Other(CLOSE_TOO_SLOW),
                json!({"reason": "no pong"}),
                true,
            ),
            Ending::FrameTooBig => with(
                CloseCode::Size,
                json!({"reason": "frame too big", "max_bytes": config.max_frame_size}),
                false,
            ),
            Ending::ProtocolError(_) => with(
                CloseCode::Protocol,
                json!({"reason": "protocol error"}),
                false,
            ),
            Ending::InvalidText => with(
                CloseCode::Invalid,
                json!({"reason": "text frame is not UTF-8"}),
                false,
            ),
            Ending::HistoryUnavailable {
                from_height,
                lowest,
            } => with(
                CloseCode::Other(CLOSE_HISTORY_UNAVAILABLE),
                json!({
                    "reason": "history not available",
                    "from_height": from_height,
                    "lowest_height": lowest,
                }),
                false,
            ),
            Ending::Shutdown => with(
                CloseCode::Away,
                json!({"reason": "server shutting down"}),
                true,
            ),
            Ending::TokenExpired => {
                with(CloseCode::Policy, json!({"reason": "token expired"}), true)
            }
            Ending::NotAuthenticated => with(
                CloseCode::Policy,
                json!({"reason": "not authenticated"}),
                false,
            ),
            Ending::SocketGone => None,
        }
    }

    /// The close frame of a URL stream, given the last height completely handed to the
    /// socket.
    pub(crate) fn close_frame(
        &self,
        config: &StreamsConfig,
        last_height: Option<u64>,
    ) -> Option<CloseReason> {
        let Closing {
            code,
            reason,
            resumable,
        } = self.closing(config)?;
        let description = reason.map(|mut fields| {
            if resumable {
                fields.insert("last_height".into(), json!(last_height));
            }
            Value::Object(fields).to_string()
        });
        Some(CloseReason { code, description })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn description(ending: &Ending, last_height: Option<u64>) -> Value {
        let frame = ending
            .close_frame(&StreamsConfig::default(), last_height)
            .expect("a close frame");
        serde_json::from_str(&frame.description.expect("a reason")).expect("JSON")
    }

    #[test]
    fn a_url_stream_says_where_to_resume_when_the_client_can() {
        let reason = description(&Ending::TooSlow, Some(7));
        assert_eq!(reason, json!({"reason": "too slow", "last_height": 7}));
        let reason = description(&Ending::Shutdown, None);
        assert_eq!(
            reason,
            json!({"reason": "server shutting down", "last_height": null})
        );
        let reason = description(
            &Ending::HistoryUnavailable {
                from_height: Some(3),
                lowest: 10,
            },
            Some(3),
        );
        assert_eq!(
            reason,
            json!({"reason": "history not available", "from_height": 3, "lowest_height": 10})
        );
    }

    #[test]
    fn only_the_connections_end_counts_as_lost() {
        let io = |inner: PayloadError| ProtocolError::Io(std::io::Error::other(inner));
        assert!(connection_lost(&io(PayloadError::Incomplete(None))));
        assert!(connection_lost(&io(PayloadError::Io(
            std::io::Error::from(std::io::ErrorKind::ConnectionReset)
        ))));
        assert!(!connection_lost(&io(PayloadError::Overflow)));
        assert!(!connection_lost(&ProtocolError::Overflow));
        assert!(!connection_lost(&ProtocolError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not UTF-8"
        ))));
    }

    #[test]
    fn a_client_close_is_echoed_without_reason_and_a_gone_socket_gets_nothing() {
        let config = StreamsConfig::default();
        let echoed = Ending::ClientClosed(None)
            .close_frame(&config, Some(1))
            .expect("a close frame");
        assert_eq!(echoed.code, CloseCode::Normal);
        assert_eq!(echoed.description, None);
        assert!(Ending::SocketGone.close_frame(&config, Some(1)).is_none());
    }
}
