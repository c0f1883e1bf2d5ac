//! The URL streams over plain HTTP, for clients that cannot hold a WebSocket: the same URL
//! and options, chosen by `Accept` instead of an upgrade.
//!
//! - `text/event-stream`: Server-Sent Events. Each message is one event (`event: <stream>`,
//!   `data: <the JSON the WebSocket sends>`); the last event of each block carries
//!   `id: <height>`, so `Last-Event-ID` always names the last complete block and a request
//!   carrying it resumes after it exactly as `from_height` does; a `: keep-alive` comment
//!   every `streams.ping_interval`; when the server ends the stream, a last `close` event with
//!   `{"reason", "last_height"}` and `id: <last_height>`.
//! - `application/x-ndjson`: one message per line; a last line `{"close": {"reason",
//!   "last_height"}}` when the server ends the stream. Resume with `from_height`.
//!
//! One subscription, like a URL stream: every option, limit and guarantee is the same (the
//! same queue: a reader that stops is ended as too slow, never holding others back).

use serde_json::{json, Value};

use crate::config::StreamsConfig;
use crate::engine::connection::{SubscribeRefusal, SubscribeRequest};
use crate::engine::{Connection, Dialect, Ending, Farewell, LastHeights, SubscriptionEvent};
use crate::envelope::{Envelope, Message};
use crate::limits::ConnectionSlot;
use crate::subscription::Subscription;

/// The media type of Server-Sent Events.
pub const EVENT_STREAM: &str = "text/event-stream";
/// The media type of newline-delimited JSON.
pub const NDJSON: &str = "application/x-ndjson";
/// The comment an SSE stream sends to keep proxies from closing an idle response.
pub const SSE_KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// Which plain HTTP format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Server-Sent Events.
    ServerSentEvents,
    /// Newline-delimited JSON.
    Ndjson,
}

impl Format {
    /// The format an `Accept` header asks for, if any (Server-Sent Events first).
    pub fn from_accept(accept: &str) -> Option<Self> {
        let types: Vec<String> = accept
            .split(',')
            .filter_map(|item| item.split(';').next())
            .map(|media| media.trim().to_ascii_lowercase())
            .collect();
        if types.iter().any(|t| t == EVENT_STREAM) {
            Some(Format::ServerSentEvents)
        } else if types.iter().any(|t| t == NDJSON) {
            Some(Format::Ndjson)
        } else {
            None
        }
    }

    /// The response's content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::ServerSentEvents => "text/event-stream; charset=utf-8",
            Format::Ndjson => NDJSON,
        }
    }

    /// What a keep-alive is (none on NDJSON: every line is a message).
    pub fn keep_alive(self) -> &'static [u8] {
        match self {
            Format::ServerSentEvents => SSE_KEEP_ALIVE,
            Format::Ndjson => b"",
        }
    }

    /// What the client is told is their way in.
    pub fn describe(self) -> &'static str {
        match self {
            Format::ServerSentEvents => "a Server-Sent Events stream",
            Format::Ndjson => "an NDJSON stream",
        }
    }
}

/// Each message as one Server-Sent Event.
#[derive(Debug)]
struct SseEnvelope {
    /// `event: <stream>\n`.
    event: String,
}

impl Envelope for SseEnvelope {
    fn wrap(&self, message: Message<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(self.event.as_bytes());
        if message.last_in_block {
            out.extend_from_slice(format!("id: {}\n", message.height).as_bytes());
        }
        // The JSON is written compact: it holds no line break, so one `data:` line carries it.
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(message.payload);
        out.extend_from_slice(b"\n\n");
    }

    fn overhead(&self) -> usize {
        self.event.len() + 36
    }
}

/// Each message as one line.
#[derive(Debug)]
struct NdjsonEnvelope;

impl Envelope for NdjsonEnvelope {
    fn wrap(&self, message: Message<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(message.payload);
        out.push(b'\n');
    }

    fn overhead(&self) -> usize {
        1
    }
}

/// A plain HTTP stream's one subscription.
#[derive(Debug)]
pub(crate) struct PlainHttpStream {
    format: Format,
    key: u64,
    from_height: Option<u64>,
}

impl PlainHttpStream {
    /// Opens the URL's subscription on `conn`; `since` is the last height published when the
    /// response started.
    pub(crate) fn open(
        conn: &mut Connection,
        format: Format,
        subscription: Subscription,
        since: Option<u64>,
        replay_slot: Option<ConnectionSlot>,
    ) -> Result<Self, SubscribeRefusal> {
        let key = conn.new_key();
        let from_height = subscription.from_height;
        let envelope: std::sync::Arc<dyn Envelope> = match format {
            Format::ServerSentEvents => std::sync::Arc::new(SseEnvelope {
                event: format!("event: {}\n", subscription.stream.name()),
            }),
            Format::Ndjson => std::sync::Arc::new(NdjsonEnvelope),
        };
        conn.subscribe(
            key,
            SubscribeRequest {
                subscription,
                envelope: Some(envelope),
                tag: Value::Null,
                since,
                replay_slot,
                group: None,
            },
        )?;
        Ok(Self {
            format,
            key,
            from_height,
        })
    }
}

/// The `Last-Event-ID` of a resuming `EventSource`: the height to resume after.
pub fn last_event_id(value: &str) -> Option<u64> {
    value.trim().parse().ok()
}

impl Dialect for PlainHttpStream {
    const NAME: &'static str = "http";

    fn on_subscription(
        &mut self,
        _conn: &mut Connection,
        event: SubscriptionEvent,
    ) -> Result<(), Ending> {
        super::url::one_subscription(self.from_height, event)
    }

    fn farewell(&self, ending: &Ending, heights: &LastHeights, config: &StreamsConfig) -> Farewell {
        // A client that closed or vanished is told nothing.
        let Some(closing) = ending
            .closing(config)
            .filter(|_| !matches!(ending, Ending::ClientClosed(_) | Ending::SocketGone))
        else {
            return Farewell::default();
        };
        let last_height = heights.get(&self.key).copied().flatten();
        let mut reason = closing.reason.unwrap_or_default();
        if closing.resumable {
            reason.insert("last_height".into(), json!(last_height));
        }
        let reason = Value::Object(reason);
        let notice = match self.format {
            Format::ServerSentEvents => {
                let id = last_height.map_or(String::new(), |h| format!("id: {h}\n"));
                format!("event: close\n{id}data: {reason}\n\n")
            }
            Format::Ndjson => format!("{}\n", json!({ "close": reason })),
        };
        Farewell {
            notice: Some(notice),
            close: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_choose_the_format() {
        for (accept, format) in [
            ("text/event-stream", Some(Format::ServerSentEvents)),
            (
                "Text/Event-Stream; charset=utf-8",
                Some(Format::ServerSentEvents),
            ),
            (
                "application/json, application/x-ndjson;q=0.9",
                Some(Format::Ndjson),
            ),
            (
                "application/x-ndjson, text/event-stream",
                Some(Format::ServerSentEvents),
            ),
            ("*/*", None),
            ("text/html", None),
            ("", None),
        ] {
            assert_eq!(Format::from_accept(accept), format, "{accept}");
        }
    }

    #[test]
    fn the_last_event_of_a_block_names_its_height() {
        let envelope = SseEnvelope {
            event: "event: valid_transactions\n".into(),
        };
        let mut out = Vec::new();
        for (payload, last) in [(&b"{\"a\":1}"[..], false), (&b"{\"b\":2}"[..], true)] {
            envelope.wrap(
                Message {
                    payload,
                    height: 42,
                    last_in_block: last,
                },
                &mut out,
            );
        }
        assert_eq!(
            String::from_utf8(out).expect("text"),
            "event: valid_transactions\ndata: {\"a\":1}\n\nevent: valid_transactions\nid: 42\ndata: {\"b\":2}\n\n"
        );
    }
}
