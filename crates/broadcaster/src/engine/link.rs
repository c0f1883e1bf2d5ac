//! The two ways a connection reaches its client, as the driver uses them: a WebSocket (frames
//! both ways: pings and pongs, client messages, a close handshake) or a plain HTTP response
//! streamed to the client (Server-Sent Events, NDJSON: nothing comes back; keep-alives are
//! comments; the end is a last notice and the end of the body).

use std::time::Duration;

use actix_ws::{CloseReason, MessageStream, ProtocolError, Session};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::close::{connection_lost, Ending};
use super::inbound::{is_invalid_utf8, Inbound, Reassembly};
use super::keepalive::CONTROL_SEND_TIMEOUT;

/// Chunks an HTTP stream's control channel holds (a keep-alive and the final notice).
const HTTP_CONTROL_CHUNKS: usize = 4;

/// A client's end of the connection (one per connection, inside its driver's future: the
/// variants' sizes differ, but a box would only add an allocation).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Link {
    /// A WebSocket.
    WebSocket {
        /// actix-ws's sender of control frames.
        session: Session,
        /// Frames from the client.
        inbound: MessageStream,
        /// Client messages put together (or only checked).
        reassembly: Reassembly,
    },
    /// A plain HTTP response streamed to the client.
    Http {
        /// Chunks written between deliveries (keep-alives, the final notice).
        control: mpsc::Sender<Bytes>,
        /// What a keep-alive is on this stream (an SSE comment; empty: none is sent).
        keep_alive: &'static [u8],
        /// Cancelled when the response body is dropped (the client went away).
        gone: CancellationToken,
    },
}

/// The receiving end of an HTTP link's control channel, for the response body.
pub(crate) fn http_control() -> (mpsc::Sender<Bytes>, mpsc::Receiver<Bytes>) {
    mpsc::channel(HTTP_CONTROL_CHUNKS)
}

/// Runs a send on the control path with [`CONTROL_SEND_TIMEOUT`]: a client that reads nothing
/// cannot hold the driver.
async fn timed<E>(
    send: impl std::future::Future<Output = Result<(), E>>,
    stuck: Ending,
) -> Result<(), Ending> {
    match tokio::time::timeout(CONTROL_SEND_TIMEOUT, send).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Ending::SocketGone),
        Err(_) => Err(stuck),
    }
}

impl Link {
    /// Whether the client answers keep-alives (a WebSocket's pong).
    pub(crate) fn answers_keep_alives(&self) -> bool {
        matches!(self, Link::WebSocket { .. })
    }

    /// Waits for the next frame from the client (an HTTP stream has none: it waits until the
    /// client goes away). Called once per token of the client's budget: every frame counts.
    pub(crate) async fn next(&mut self) -> Result<Inbound, Ending> {
        match self {
            Link::WebSocket {
                inbound,
                reassembly,
                ..
            } => match inbound.recv().await {
                Some(Ok(message)) => reassembly.frame(message),
                Some(Err(ProtocolError::Overflow)) => Err(Ending::FrameTooBig),
                Some(Err(ProtocolError::Io(err))) if is_invalid_utf8(&err) => {
                    Err(Ending::InvalidText)
                }
                Some(Err(err)) if connection_lost(&err) => Err(Ending::SocketGone),
                Some(Err(err)) => Err(Ending::ProtocolError(err.to_string())),
                None => Err(Ending::SocketGone),
            },
            Link::Http { gone, .. } => {
                gone.cancelled().await;
                Err(Ending::SocketGone)
            }
        }
    }

    /// Sends a keep-alive: a ping, or the stream's keep-alive comment.
    pub(crate) async fn keep_alive(&mut self) -> Result<(), Ending> {
        match self {
            // The client does not read: its pong will not come either.
            Link::WebSocket { session, .. } => timed(session.ping(b""), Ending::NoPong).await,
            Link::Http {
                control,
                keep_alive,
                ..
            } => {
                if keep_alive.is_empty() {
                    return Ok(());
                }
                let chunk = Bytes::from_static(keep_alive);
                timed(control.send(chunk), Ending::TooSlow).await
            }
        }
    }

    /// Answers the client's ping with a pong carrying its payload.
    pub(crate) async fn pong(&mut self, payload: &[u8]) -> Result<(), Ending> {
        match self {
            // The client does not read what we send.
            Link::WebSocket { session, .. } => timed(session.pong(payload), Ending::TooSlow).await,
            Link::Http { .. } => Ok(()),
        }
    }

    /// Says goodbye: `notice` (a last text message: a WebSocket text frame, or the HTTP
    /// stream's final chunk), then on a WebSocket the close frame. Returns whether the close
    /// frame went out (the handshake may then be awaited).
    pub(crate) async fn farewell(
        &mut self,
        notice: Option<String>,
        close: Option<CloseReason>,
    ) -> bool {
        match self {
            Link::WebSocket { session, .. } => {
                if let Some(notice) = notice {
                    let _ = tokio::time::timeout(CONTROL_SEND_TIMEOUT, session.text(notice)).await;
                }
                let Some(close) = close else {
                    return false;
                };
                let sent =
                    tokio::time::timeout(CONTROL_SEND_TIMEOUT, session.clone().close(Some(close)))
                        .await;
                matches!(sent, Ok(Ok(())))
            }
            Link::Http { control, .. } => {
                if let Some(notice) = notice {
                    let _ = tokio::time::timeout(
                        CONTROL_SEND_TIMEOUT,
                        control.send(Bytes::from(notice)),
                    )
                    .await;
                }
                false
            }
        }
    }

    /// Reads (and drops) what the client sends until its close frame answers ours, the
    /// connection ends, or `wait` is over. The connection is closed only then, so it is never
    /// closed with unread data in it: the kernel would reset it and the client would lose what
    /// it had not read yet (the last blocks, the close frame with where to resume).
    pub(crate) async fn await_client_close(&mut self, wait: Duration) {
        let Link::WebSocket { inbound, .. } = self else {
            return;
        };
        let drain = async {
            while let Some(Ok(message)) = inbound.recv().await {
                if matches!(message, actix_ws::Message::Close(_)) {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(wait, drain).await;
    }
}
