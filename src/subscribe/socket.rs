//! The WebSocket side both `subscribe` modes share: connecting (to the URL the mode found),
//! reading frames until the connection ends (answering pings, closing normally when the
//! subscriber is stopped or has printed enough, turning the node's close frame into a
//! reconnect or an exit), and reconnecting with backoff between connections.
//!
//! Each mode keeps only what differs (the [`Subscription`] it implements): where it connects,
//! what a text message means (a stream message, or a JSON-RPC answer or notification), which
//! close code ends the subscriber for good (4001 in URL mode, 1008 in RPC mode), and where it
//! resumes.

use std::time::Duration;

use anyhow::Context;
use awc::error::WsProtocolError;
use awc::ws::{CloseCode, Frame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};

use planetmint_streams_model::backoff::Backoff;

use super::stop_on_signal;

/// First wait before reconnecting (and again after a session that printed something).
const RECONNECT_MIN: Duration = Duration::from_millis(250);
/// Longest wait between reconnects.
const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// Largest frame read from the node (a whole block of transactions in one message).
const MAX_FRAME_BYTES: usize = 64 << 20;
/// The close code reported when the node's close frame carries none (RFC 6455 "no status").
const NO_STATUS: u16 = 1005;

/// Why a connection ended.
pub(super) enum Ended {
    /// Reconnect (after a pause).
    Retry(String),
    /// Stop for good.
    Done,
}

/// A WebSocket connection to the node, as `awc` gives it.
pub(super) trait Socket:
    Stream<Item = Result<Frame, WsProtocolError>> + Sink<Message, Error = WsProtocolError> + Unpin
{
}

impl<T> Socket for T where
    T: Stream<Item = Result<Frame, WsProtocolError>>
        + Sink<Message, Error = WsProtocolError>
        + Unpin
{
}

/// One connection: finds the URL, connects (saying so on stderr) and lets the mode follow
/// it. A failure to find the URL or to connect is worth a reconnect.
async fn session(
    subscriber: &mut impl Subscription,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Ended> {
    let url = match subscriber.url().await {
        Ok(url) => url,
        Err(err) => return Ok(Ended::Retry(format!("discovery failed: {err}"))),
    };
    let connected = subscriber
        .client()
        .ws(url.as_str())
        .max_frame_size(MAX_FRAME_BYTES)
        .connect()
        .await;
    let mut socket = match connected {
        Ok((_, socket)) => socket,
        Err(err) => return Ok(Ended::Retry(format!("cannot connect to {url}: {err}"))),
    };
    eprintln!("connected to {url}");
    subscriber.follow(&mut socket, &url, shutdown).await
}

/// Closes the connection normally (1000); the node may already be gone.
async fn close(socket: &mut impl Socket) {
    let _ = socket
        .send(Message::Close(Some(CloseCode::Normal.into())))
        .await;
}

/// Reads `socket` until the connection ends.
///
/// Each text message goes to `on_text`; when it returns an ending (the limit is reached, or
/// the mode wants a reconnect) the connection is closed normally and that is the result. A
/// close frame from the node ends in a reconnect, unless `fatal` turns its code and
/// description into an error (a close that reconnecting would not help). A stop request
/// (`shutdown`) closes normally and ends for good; a broken or lost connection reconnects.
pub(super) async fn read_until_end(
    socket: &mut impl Socket,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    mut on_text: impl FnMut(&str) -> anyhow::Result<Option<Ended>>,
    fatal: impl Fn(u16, &str) -> Option<anyhow::Error>,
) -> anyhow::Result<Ended> {
    loop {
        let frame = tokio::select! {
            frame = socket.next() => frame,
            _ = shutdown.changed() => {
                close(socket).await;
                return Ok(Ended::Done);
            }
        };
        match frame {
            Some(Ok(Frame::Text(bytes))) => {
                let text = std::str::from_utf8(&bytes).context("a text frame that is not UTF-8")?;
                if let Some(ended) = on_text(text)? {
                    close(socket).await;
                    return Ok(ended);
                }
            }
            Some(Ok(Frame::Ping(payload))) => {
                let _ = socket.send(Message::Pong(payload)).await;
            }
            Some(Ok(Frame::Close(reason))) => {
                let code = reason.as_ref().map(|r| u16::from(r.code));
                let description = reason.and_then(|r| r.description).unwrap_or_default();
                if let Some(err) = code.and_then(|code| fatal(code, &description)) {
                    return Err(err);
                }
                return Ok(Ended::Retry(format!(
                    "closed by the node ({}) {description}",
                    code.unwrap_or(NO_STATUS)
                )));
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => return Ok(Ended::Retry(format!("stream error: {err}"))),
            None => return Ok(Ended::Retry("connection lost".into())),
        }
    }
}

/// One mode of the subscriber, as the reconnect loop sees it.
pub(super) trait Subscription {
    /// Events printed so far (a session that printed something resets the backoff).
    fn printed(&self) -> u64;
    /// Where the next connection resumes, as it ends the line "reconnecting in 1.0s from …".
    fn resumes_from(&self) -> String;
    /// The HTTP client it connects with.
    fn client(&self) -> &awc::Client;
    /// The URL of the next connection (found in the node's API unless given); an error says
    /// why there is none yet.
    async fn url(&self) -> Result<String, String>;
    /// Follows one connection to `url` until it ends (see [`read_until_end`]).
    async fn follow(
        &mut self,
        socket: &mut impl Socket,
        url: &str,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<Ended>;
}

/// Runs a subscriber until it is stopped (SIGTERM/SIGINT), is done, or fails: every ended
/// session is followed by a pause (growing while sessions print nothing) and a new one.
/// `start` builds it inside the runtime.
pub(super) fn run_reconnecting<S: Subscription>(start: impl FnOnce() -> S) -> anyhow::Result<()> {
    let system = actix_web::rt::System::new();
    system.block_on(async move {
        let mut stop_rx = stop_on_signal();
        let mut subscriber = start();
        let mut backoff = Backoff::new(RECONNECT_MIN, RECONNECT_MAX);
        loop {
            let printed_before = subscriber.printed();
            match session(&mut subscriber, &mut stop_rx).await? {
                Ended::Done => return Ok(()),
                Ended::Retry(reason) => {
                    if subscriber.printed() > printed_before {
                        backoff.reset();
                    }
                    let delay = backoff.next_delay();
                    eprintln!(
                        "{reason}; reconnecting in {:.1}s from {}",
                        delay.as_secs_f64(),
                        subscriber.resumes_from()
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop_rx.changed() => return Ok(()),
                    }
                }
            }
        }
    })
}
