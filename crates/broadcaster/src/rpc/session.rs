//! One JSON-RPC connection after the upgrade: its requests, its subscriptions, and its close.
//!
//! A single task per connection waits on whichever comes first: a request, a subscription
//! finishing its start (history replayed, attached to the live stream), the ping timer, the
//! connection's queue overflowing, server shutdown, or the token's expiry. Blocks do not pass
//! through this task: the hub puts each subscription's notifications into the connection's
//! one queue and the response body takes them. Answers go through the same queue, so they
//! are ordered with the notifications: a `subscribe` answer comes before the subscription's
//! first notification, an `unsubscribe` answer after its last, an `update` answer after
//! every notification filtered with the old filters.
//!
//! A subscription starts in a future of its own ([`start`]): it checks that `from_height` is
//! still stored (else `-32003`), answers with the subscription's id, replays history and
//! attaches to the live stream exactly like a URL subscriber (`crate::replay`), so every
//! guarantee of the URL streams holds for it. `unsubscribe` aborts that future; an `update`
//! arriving meanwhile is applied the moment it attaches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_ws::Session;
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseReason, ProtocolError};
use futures_util::future::{AbortHandle, Abortable, Aborted, LocalBoxFuture};
use futures_util::stream::{FuturesUnordered, StreamExt};
use planetmint_streams_auth::{unix_now, AuthError, Claims, Requested};
use serde_json::{json, Value};
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info};

use super::body::Progress;
use super::envelope::Envelope;
use super::limits::RpcLimits;
use super::protocol::{
    error_message, notification_message, parse_request, result_message, Call, FilterChange, Method,
    RpcError, CLOSING_METHOD, HISTORY_UNAVAILABLE, INVALID_REQUEST, LIMIT_REACHED,
    METHOD_NOT_FOUND, NOT_AUTHORIZED, SUBSCRIPTION_ERROR_METHOD,
};
use crate::close::{connection_lost, Closing, Ending};
use crate::frame::{encode_frame, OPCODE_TEXT};
use crate::hub::{Selection, SubscriberId};
use crate::keepalive::{answer_ping, on_timer, KeepAlive, CONTROL_SEND_TIMEOUT};
use crate::limits::{ConnectionSlot, TokenBucket};
use crate::metrics::{BroadcastMetrics, GaugeCount};
use crate::queue::{Pushed, QueuedBlock, SubscriberQueue};
use crate::replay::ReplayError;
use crate::subscription::{Filter, StreamKind, Subscription};
use crate::StreamContext;

/// Longest reason a close frame can carry (RFC 6455 5.5: a 125-byte payload, 2 of them the
/// code). A longer `last_heights` is only in the `closing` notification sent before it.
const MAX_CLOSE_REASON: usize = 123;

/// What a connection owns: its halves, its queue, its progress record, its slot, and the
/// claims of a token given in its URL.
pub(crate) struct RpcParts {
    /// actix-ws's sender of control frames.
    pub session: Session,
    /// Messages from the client, continuations reassembled.
    pub inbound: AggregatedMessageStream,
    /// The connection's one queue.
    pub queue: Arc<SubscriberQueue>,
    /// How far each subscription got.
    pub progress: Arc<Progress>,
    /// Its place under the connection limits.
    pub slot: ConnectionSlot,
    /// The verified claims of a `token` in the URL (signed mode).
    pub claims: Option<Claims>,
    /// The client's address.
    pub peer: Option<std::net::IpAddr>,
    /// Its count in `planetmint_streams_rpc_connections`, from the handshake's answer to its end.
    pub counted: GaugeCount,
}

/// Who the connection speaks for.
enum Access {
    /// Open mode: anyone may subscribe to anything.
    Open,
    /// Signed mode, no token yet: only `authenticate` is accepted.
    Required,
    /// Signed mode with a verified token: it bounds every subscribe and update.
    Token(Claims),
}

/// Where a subscription is.
enum Phase {
    /// Its start future runs (history check, answer, replay); updates wait for it.
    Starting {
        abort: AbortHandle,
        waiting_updates: Vec<Value>,
    },
    /// Attached to the hub.
    Live(SubscriberId),
}

struct Sub {
    stream: StreamKind,
    /// The selection asked for last (the hub has it once live).
    selection: Arc<Selection>,
    /// Its filter values, counted against the connection's limit.
    values: usize,
    phase: Phase,
}

/// How a subscription's start ended.
enum Started {
    /// Attached to the live stream.
    Attached(SubscriberId),
    /// Refused (`-32003` already answered).
    Refused,
    /// The replay ended it (history gone meanwhile) or the connection.
    Ended(Ending),
}

type StartFuture = Abortable<LocalBoxFuture<'static, (u64, Started)>>;

struct Connection {
    ctx: Arc<StreamContext>,
    queue: Arc<SubscriberQueue>,
    progress: Arc<Progress>,
    metrics: BroadcastMetrics,
    limits: RpcLimits,
    access: Access,
    subscriptions: HashMap<u64, Sub>,
    next_key: u64,
    filter_values: usize,
    starting: FuturesUnordered<StartFuture>,
    token_expiry: Option<Instant>,
    /// The client's address (for the per-address replay limit).
    peer: Option<std::net::IpAddr>,
    /// Its count in `planetmint_streams_rpc_connections`, dropped when it ends.
    counted: GaugeCount,
}

/// Puts one text message into the connection's queue (never waits: a client that does not
/// read its answers overflows like one that does not read its notifications).
fn push_text(queue: &SubscriberQueue, text: &str) -> bool {
    let mut frame = Vec::with_capacity(text.len() + 10);
    encode_frame(OPCODE_TEXT, text.as_bytes(), &mut frame);
    queue.push(QueuedBlock {
        height: 0,
        frames: frame.into(),
        messages: 1,
        received_at: None,
        subscription: None,
    }) == Pushed::Queued
}

fn count(metrics: &BroadcastMetrics, method: Option<Method>, code: Option<i64>) {
    let code = code.map_or_else(|| "ok".to_owned(), |c| c.to_string());
    metrics
        .rpc_requests
        .with_label_values(&[method.map_or("none", Method::name), &code])
        .inc();
}

fn auth_error(err: &AuthError) -> RpcError {
    let mut data = json!({"reason": err.reason()});
    if let AuthError::FilterNotAllowed { parameter, .. } = err {
        data["parameter"] = Value::from(*parameter);
    }
    RpcError::new(NOT_AUTHORIZED, err.to_string()).with_data(data)
}

fn filter_values(filter: &Filter) -> usize {
    filter.public_keys.len() + filter.asset_ids.len() + filter.operations.len()
}

/// `Some(lowest)` when `from` is below the history the source still holds. Waits for the
/// source while it is unreachable, as a URL subscriber's replay does (the stored range is
/// read through the shared history, so a herd of subscribes asks Tarantool once).
async fn history_missing(ctx: &StreamContext, from: u64) -> Option<u64> {
    if !ctx.hub.needs_source(from) {
        return None;
    }
    ctx.replay
        .history()
        .bounds()
        .await
        .map(|b| b.lowest)
        .filter(|&lowest| from.saturating_add(1) < lowest)
}

/// A subscription's start: history check, the answer with its id, then replay and attach.
fn start(
    ctx: Arc<StreamContext>,
    queue: Arc<SubscriberQueue>,
    selection: Arc<Selection>,
    from_height: Option<u64>,
    key: u64,
    request_id: Value,
    replay_slot: Option<ConnectionSlot>,
) -> LocalBoxFuture<'static, (u64, Started)> {
    Box::pin(async move {
        let metrics = ctx.hub.metrics();
        if let Some(from) = from_height {
            if let Some(lowest) = history_missing(&ctx, from).await {
                let error = RpcError::new(
                    HISTORY_UNAVAILABLE,
                    format!("from_height {from} is below the stored history, which starts at height {lowest}"),
                )
                .with_data(json!({"lowest_height": lowest, "from_height": from}));
                count(metrics, Some(Method::Subscribe), Some(HISTORY_UNAVAILABLE));
                push_text(&queue, &error_message(&request_id, &error));
                return (key, Started::Refused);
            }
        }
        count(metrics, Some(Method::Subscribe), None);
        if !push_text(&queue, &result_message(&request_id, json!(key.to_string()))) {
            return (key, Started::Ended(Ending::TooSlow));
        }
        let attached = ctx.replay.attach(&queue, &selection, from_height).await;
        drop(replay_slot); // caught up: no longer replaying from the source
        match attached {
            Ok(id) => (key, Started::Attached(id)),
            Err(ReplayError::HistoryUnavailable { lowest }) => (
                key,
                Started::Ended(Ending::HistoryUnavailable {
                    from_height,
                    lowest,
                }),
            ),
            Err(ReplayError::QueueClosed) => (key, Started::Ended(Ending::SocketGone)),
        }
    })
}

impl Connection {
    fn answer(&self, method: Method, id: &Value, result: Value) {
        count(&self.metrics, Some(method), None);
        push_text(&self.queue, &result_message(id, result));
    }

    fn answer_error(&self, method: Option<Method>, id: &Value, error: &RpcError) {
        count(&self.metrics, method, Some(error.code));
        push_text(&self.queue, &error_message(id, error));
    }

    /// Answers a request sent before `authenticate` in signed mode with -32001; the
    /// connection then ends with 1008.
    fn refuse_unauthenticated(&self, method: Option<Method>, id: &Value) -> Ending {
        let error = RpcError::new(
            NOT_AUTHORIZED,
            "this server requires a signed stream token: send authenticate first",
        )
        .with_data(json!({"reason": "missing_token"}));
        self.answer_error(method, id, &error);
        Ending::NotAuthenticated
    }

    /// Handles one request; `Err` ends the connection.
    fn on_request(&mut self, text: &[u8]) -> Result<(), Ending> {
        let request = match parse_request(text) {
            Ok(request) => request,
            Err(refused) => {
                // Before `authenticate`, any other method (an unknown one too) ends the
                // connection; a request too malformed to name a method does not.
                let other_method = refused.error.code == METHOD_NOT_FOUND
                    || refused.method.is_some_and(|m| m != Method::Authenticate);
                if matches!(self.access, Access::Required) && other_method {
                    return Err(self.refuse_unauthenticated(refused.method, &refused.id));
                }
                self.answer_error(refused.method, &refused.id, &refused.error);
                return Ok(());
            }
        };
        let method = request.call.method();
        let id = request.id;
        if matches!(self.access, Access::Required) && method != Method::Authenticate {
            return Err(self.refuse_unauthenticated(Some(method), &id));
        }
        let outcome = match request.call {
            Call::Authenticate { token } => self.authenticate(&token).map(Some),
            Call::Subscribe(subscription) => self.subscribe(&id, subscription).map(|()| None),
            Call::Unsubscribe { subscription } => self
                .unsubscribe(&subscription)
                .map(|()| Some(Value::Bool(true))),
            Call::Update {
                subscription,
                add,
                remove,
            } => self.update(&id, &subscription, add, remove),
            Call::Describe { stream } => Ok(Some(self.describe(stream))),
        };
        match outcome {
            Ok(Some(result)) => self.answer(method, &id, result),
            // Answered later (subscribe by its start, update once attached).
            Ok(None) => {}
            Err(error) => self.answer_error(Some(method), &id, &error),
        }
        Ok(())
    }

    fn authenticate(&mut self, token: &str) -> Result<Value, RpcError> {
        let Some(authority) = &self.ctx.auth else {
            // Open mode: nothing to check, everything is allowed.
            return Ok(json!({
                "streams": StreamKind::ALL.map(StreamKind::name),
                "expires_at": null,
            }));
        };
        let claims = authority.verify(token).map_err(|err| auth_error(&err))?;
        let result = json!({
            "streams": claims.streams.iter().map(|s| s.name()).collect::<Vec<_>>(),
            "expires_at": claims.expires_at,
        });
        if self.ctx.close_on_expiry {
            self.token_expiry = Some(Instant::now() + claims.expires_in(unix_now()));
        }
        self.access = Access::Token(claims);
        Ok(result)
    }

    /// Whether the connection's token allows `filter` on `stream`.
    fn check_allowed(&self, stream: StreamKind, filter: &Filter) -> Result<(), RpcError> {
        let Access::Token(claims) = &self.access else {
            return Ok(());
        };
        if unix_now() >= claims.expires_at {
            return Err(auth_error(&AuthError::Expired {
                expired_at: claims.expires_at,
            }));
        }
        claims
            .allows(&Requested {
                stream,
                public_keys: &filter.public_keys,
                asset_ids: &filter.asset_ids,
                operations: &filter.operations,
            })
            .map_err(|err| auth_error(&err))
    }

    fn check_values(&self, total: usize) -> Result<(), RpcError> {
        let max = self.limits.max_filter_values;
        if total > max {
            return Err(RpcError::new(
                LIMIT_REACHED,
                format!(
                    "at most {max} filter values per connection (streams.rpc_max_filter_values)"
                ),
            )
            .with_data(json!({"limit": "filter_values", "max": max})));
        }
        Ok(())
    }

    fn subscribe(&mut self, id: &Value, subscription: Subscription) -> Result<(), RpcError> {
        let max = self.limits.max_subscriptions;
        if self.subscriptions.len() >= max {
            return Err(RpcError::new(
                LIMIT_REACHED,
                format!(
                    "at most {max} subscriptions per connection (streams.rpc_max_subscriptions)"
                ),
            )
            .with_data(json!({"limit": "subscriptions", "max": max})));
        }
        let values = filter_values(&subscription.filter);
        self.check_values(self.filter_values + values)?;
        self.check_allowed(subscription.stream, &subscription.filter)?;
        // Replays that read Tarantool are limited per address, as on URL streams.
        let replay_slot = match subscription.from_height {
            Some(after) if self.ctx.hub.needs_source(after) => {
                let max = self.ctx.config.replay_max_per_ip;
                let slot = self.ctx.replay_limiter.acquire(self.peer).map_err(|_| {
                    RpcError::new(
                        LIMIT_REACHED,
                        format!("at most {max} subscriptions from one address may replay history from the database at once (streams.replay_max_per_ip); retry when they have caught up"),
                    )
                    .with_data(json!({"limit": "replays_per_address", "max": max}))
                })?;
                Some(slot)
            }
            _ => None,
        };

        let key = self.next_key;
        self.next_key += 1;
        let selection = Arc::new(Selection {
            envelope: Some(Arc::new(Envelope::new(key))),
            ..Selection::from(&subscription)
        });
        let stream = subscription.stream;
        self.progress.insert(
            key,
            stream,
            subscription
                .from_height
                .or_else(|| self.ctx.hub.last_published()),
        );
        let (abort, registration) = AbortHandle::new_pair();
        self.starting.push(Abortable::new(
            start(
                self.ctx.clone(),
                self.queue.clone(),
                selection.clone(),
                subscription.from_height,
                key,
                id.clone(),
                replay_slot,
            ),
            registration,
        ));
        self.subscriptions.insert(
            key,
            Sub {
                stream,
                selection,
                values,
                phase: Phase::Starting {
                    abort,
                    waiting_updates: Vec::new(),
                },
            },
        );
        self.filter_values += values;
        let label = [stream.name()];
        self.metrics.subscribers.with_label_values(&label).inc();
        self.metrics
            .rpc_subscriptions
            .with_label_values(&label)
            .inc();
        self.metrics.connections.with_label_values(&label).inc();
        debug!(
            stream = stream.name(),
            key,
            from_height = subscription.from_height,
            "rpc subscription"
        );
        Ok(())
    }

    /// The key of the subscription with id `id` on this connection.
    fn lookup(&self, id: &str) -> Result<u64, RpcError> {
        id.parse::<u64>()
            .ok()
            .filter(|key| key.to_string() == id && self.subscriptions.contains_key(key))
            .ok_or_else(|| {
                RpcError::invalid_params("subscription", "no such subscription on this connection")
            })
    }

    /// Ends a subscription: out of the hub (or its start aborted), out of the counts.
    fn remove(&mut self, key: u64, reason: &str) {
        let Some(sub) = self.subscriptions.remove(&key) else {
            return;
        };
        match sub.phase {
            Phase::Starting {
                abort,
                waiting_updates,
            } => {
                abort.abort();
                let error = RpcError::invalid_params(
                    "subscription",
                    "the subscription ended before the update applied",
                );
                for id in waiting_updates {
                    self.answer_error(Some(Method::Update), &id, &error);
                }
            }
            Phase::Live(id) => self.ctx.hub.detach(id),
        }
        self.progress.remove(key);
        self.filter_values -= sub.values;
        let label = [sub.stream.name()];
        self.metrics.subscribers.with_label_values(&label).dec();
        self.metrics
            .rpc_subscriptions
            .with_label_values(&label)
            .dec();
        self.metrics.disconnects.with_label_values(&[reason]).inc();
    }

    fn unsubscribe(&mut self, id: &str) -> Result<(), RpcError> {
        let key = self.lookup(id)?;
        self.remove(key, "client");
        Ok(())
    }

    fn update(
        &mut self,
        request_id: &Value,
        id: &str,
        add: FilterChange,
        remove: FilterChange,
    ) -> Result<Option<Value>, RpcError> {
        let key = self.lookup(id)?;
        let Some(sub) = self.subscriptions.get(&key) else {
            return Err(RpcError::invalid_params(
                "subscription",
                "no such subscription",
            ));
        };
        let old = &sub.selection.filter;
        let mut filter = old.clone();
        for (name, values, added, removed, was) in [
            (
                "public_key",
                &mut filter.public_keys,
                add.public_keys,
                &remove.public_keys,
                &old.public_keys,
            ),
            (
                "asset_id",
                &mut filter.asset_ids,
                add.asset_ids,
                &remove.asset_ids,
                &old.asset_ids,
            ),
            (
                "operation",
                &mut filter.operations,
                add.operations,
                &remove.operations,
                &old.operations,
            ),
        ] {
            values.extend(added);
            values.retain(|v| !removed.contains(v));
            if values.is_empty() && !was.is_empty() {
                // An empty dimension means "any": removing the last key of a wallet's
                // subscription would send it the whole chain.
                return Err(RpcError::invalid_params(
                    "remove",
                    format!("would remove every {name} value, and no {name} filter means every transaction: unsubscribe instead"),
                ));
            }
        }
        let values = filter_values(&filter);
        self.check_values(self.filter_values - sub.values + values)?;
        self.check_allowed(sub.stream, &filter)?;
        let selection = Arc::new(Selection {
            filter,
            ..(*sub.selection).clone()
        });
        let hub = self.ctx.hub.clone();
        let Some(sub) = self.subscriptions.get_mut(&key) else {
            return Err(RpcError::invalid_params(
                "subscription",
                "no such subscription",
            ));
        };
        self.filter_values = self.filter_values - sub.values + values;
        sub.values = values;
        sub.selection = selection.clone();
        match &mut sub.phase {
            Phase::Live(subscriber) => {
                let after = hub
                    .update_selection(*subscriber, &selection)
                    .or_else(|| hub.last_published())
                    .unwrap_or(0);
                Ok(Some(json!({"applies_after_height": after})))
            }
            Phase::Starting {
                waiting_updates, ..
            } => {
                waiting_updates.push(request_id.clone());
                Ok(None)
            }
        }
    }

    fn describe(&self, stream: StreamKind) -> Value {
        self.ctx
            .catalogue
            .as_ref()
            .and_then(|catalogue| {
                catalogue["streams"]
                    .as_array()?
                    .iter()
                    .find(|entry| entry["name"] == stream.name())
                    .cloned()
            })
            .unwrap_or_else(|| json!({"name": stream.name()}))
    }

    /// A subscription's start ended; `Err` ends the connection.
    fn on_started(&mut self, key: u64, started: Started) -> Result<(), Ending> {
        match started {
            Started::Attached(subscriber) => {
                let Some(sub) = self.subscriptions.get_mut(&key) else {
                    self.ctx.hub.detach(subscriber);
                    return Ok(());
                };
                let waiting = match std::mem::replace(&mut sub.phase, Phase::Live(subscriber)) {
                    Phase::Starting {
                        waiting_updates, ..
                    } => waiting_updates,
                    Phase::Live(_) => Vec::new(),
                };
                if !waiting.is_empty() {
                    let after = self
                        .ctx
                        .hub
                        .update_selection(subscriber, &sub.selection)
                        .unwrap_or(0);
                    for id in waiting {
                        self.answer(Method::Update, &id, json!({"applies_after_height": after}));
                    }
                }
                Ok(())
            }
            Started::Refused => {
                self.remove(key, "history_unavailable");
                Ok(())
            }
            Started::Ended(Ending::HistoryUnavailable { lowest, .. }) => {
                // The history was pruned between the check and the replay: only this
                // subscription ends.
                let error = RpcError::new(
                    HISTORY_UNAVAILABLE,
                    format!("the history this subscription replays is no longer stored; it starts at height {lowest}"),
                )
                .with_data(json!({"lowest_height": lowest}));
                push_text(
                    &self.queue,
                    &notification_message(
                        SUBSCRIPTION_ERROR_METHOD,
                        json!({"subscription": key.to_string(), "error": error.to_json()}),
                    ),
                );
                self.remove(key, "history_unavailable");
                Ok(())
            }
            Started::Ended(ending) => Err(ending),
        }
    }

    /// Answers one message from the client; `Err` ends the connection.
    async fn on_inbound(
        &mut self,
        message: Option<Result<AggregatedMessage, ProtocolError>>,
        session: &mut Session,
        keep_alive: &mut KeepAlive,
        budget: &mut TokenBucket,
    ) -> Result<(), Ending> {
        if matches!(message, Some(Ok(_))) {
            budget.take();
        }
        match message {
            Some(Ok(AggregatedMessage::Text(text))) => self.on_request(text.as_bytes()),
            Some(Ok(AggregatedMessage::Binary(_))) => {
                self.answer_error(
                    None,
                    &Value::Null,
                    &RpcError::new(INVALID_REQUEST, "requests are JSON in text frames"),
                );
                Ok(())
            }
            Some(Ok(AggregatedMessage::Ping(payload))) => answer_ping(session, &payload).await,
            Some(Ok(AggregatedMessage::Pong(_))) => {
                keep_alive.pong_received();
                Ok(())
            }
            Some(Ok(AggregatedMessage::Close(reason))) => Err(Ending::ClientClosed(reason)),
            Some(Err(ProtocolError::Overflow)) => Err(Ending::FrameTooBig),
            Some(Err(err)) if message_too_big(&err) => Err(Ending::FrameTooBig),
            Some(Err(ProtocolError::Io(err))) if err.kind() == std::io::ErrorKind::InvalidData => {
                Err(Ending::InvalidText)
            }
            Some(Err(err)) if connection_lost(&err) => Err(Ending::SocketGone),
            Some(Err(err)) => Err(Ending::ProtocolError(err.to_string())),
            None => Err(Ending::SocketGone),
        }
    }

    /// Ends every subscription and closes the connection with `ending`.
    /// Detaches every subscription and sends the close frame; returns how long to wait for
    /// the client's close frame (`None`: no close frame went out, or none is awaited).
    async fn finish(mut self, ending: Ending, mut session: Session) -> Option<Duration> {
        let label = ending.label();
        let keys: Vec<u64> = self.subscriptions.keys().copied().collect();
        for key in keys {
            // Still tracked in `progress`: their last heights go into the close reason.
            let Some(sub) = self.subscriptions.remove(&key) else {
                continue;
            };
            match sub.phase {
                Phase::Starting { abort, .. } => abort.abort(),
                Phase::Live(id) => self.ctx.hub.detach(id),
            }
            let stream = [sub.stream.name()];
            self.metrics.subscribers.with_label_values(&stream).dec();
            self.metrics
                .rpc_subscriptions
                .with_label_values(&stream)
                .dec();
            self.metrics.disconnects.with_label_values(&[label]).inc();
        }
        if matches!(ending, Ending::NotAuthenticated) {
            // The refusal is queued: let it out before the close frame.
            let _ = tokio::time::timeout(CONTROL_SEND_TIMEOUT, self.queue.drained()).await;
        }
        self.queue.stop();
        let last_heights = self.progress.last_heights();
        drop(self.counted);
        match &ending {
            Ending::TooSlow | Ending::NoPong => info!(
                reason = label,
                subscriptions = last_heights.len(),
                "closing a JSON-RPC connection that fell behind"
            ),
            Ending::ProtocolError(err) => debug!(error = %err, "closing on a protocol error"),
            _ => debug!(reason = label, "JSON-RPC connection ended"),
        }
        let Closing {
            code,
            reason,
            resumable,
        } = ending.closing(&self.ctx.config)?;
        let mut description = None;
        if let Some(mut fields) = reason {
            if resumable {
                let heights = json!(last_heights);
                let mut notice = fields.clone();
                notice.insert("code".into(), u16::from(code).into());
                notice.insert("last_heights".into(), heights.clone());
                let notice = notification_message(CLOSING_METHOD, Value::Object(notice));
                let _ = tokio::time::timeout(CONTROL_SEND_TIMEOUT, session.text(notice)).await;
                let short = Value::Object(fields.clone()).to_string();
                fields.insert("last_heights".into(), heights);
                let full = Value::Object(fields).to_string();
                description = Some(if full.len() <= MAX_CLOSE_REASON {
                    full
                } else {
                    short
                });
            } else {
                description = Some(Value::Object(fields).to_string());
            }
        }
        let close = CloseReason { code, description };
        let sent = tokio::time::timeout(CONTROL_SEND_TIMEOUT, session.close(Some(close))).await;
        match sent {
            Ok(Ok(())) => ending.close_handshake_wait(&self.ctx.config),
            _ => None,
        }
    }
}

/// Whether the client's fragmented message went over `max_frame_size` in all (1009, as for one
/// frame too big). actix-ws's aggregation gives this only as an I/O error with its own text, so
/// that text is matched here; hostile_e2e checks the close code, so a change in actix-ws shows.
fn message_too_big(err: &ProtocolError) -> bool {
    matches!(err, ProtocolError::Io(err)
        if err.kind() == std::io::ErrorKind::Other
            && err.to_string().contains("maximum continuation size"))
}

/// Reads (and drops) what the client sends until its close frame answers ours, the
/// connection ends, or `wait` is over: the connection is never closed with unread data in it
/// (the kernel would reset it and the client would lose the `closing` notice and the close
/// frame with its `last_heights`).
async fn await_client_close(inbound: &mut AggregatedMessageStream, wait: Duration) {
    let drain = async {
        while let Some(Ok(message)) = inbound.recv().await {
            if matches!(message, AggregatedMessage::Close(_)) {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(wait, drain).await;
}

/// Runs a JSON-RPC connection to its end.
pub(crate) async fn run(ctx: Arc<StreamContext>, parts: RpcParts) {
    let RpcParts {
        mut session,
        mut inbound,
        queue,
        progress,
        slot,
        claims,
        peer,
        counted,
    } = parts;
    let _slot = slot; // counted as open until this connection ends
    let metrics = ctx.hub.metrics().clone();
    let limits = ctx.config.rpc_limits();
    let token_expiry = match &claims {
        Some(claims) if ctx.close_on_expiry => Some(Instant::now() + claims.expires_in(unix_now())),
        _ => None,
    };
    let access = match (&ctx.auth, claims) {
        (None, _) => Access::Open,
        (Some(_), Some(claims)) => Access::Token(claims),
        (Some(_), None) => Access::Required,
    };
    let mut budget = TokenBucket::new(
        f64::from(limits.requests_per_second),
        f64::from(limits.requests_burst),
    );
    let mut keep_alive = KeepAlive::new(ctx.config.ping_interval, ctx.config.pong_timeout);
    let mut connection = Connection {
        ctx: ctx.clone(),
        queue: queue.clone(),
        progress,
        metrics,
        limits,
        access,
        subscriptions: HashMap::new(),
        next_key: 1,
        filter_values: 0,
        starting: FuturesUnordered::new(),
        token_expiry,
        peer,
        counted,
    };
    let far_future = || Instant::now() + Duration::from_secs(86_400 * 365);

    let ending = loop {
        let expiry = connection.token_expiry;
        let starting = !connection.starting.is_empty();
        // Over its request budget the client is read more slowly, not cut off.
        let read_in = budget.ready_in();
        let step = tokio::select! {
            Some(started) = connection.starting.next(), if starting => match started {
                Ok((key, started)) => connection.on_started(key, started),
                Err(Aborted) => Ok(()),
            },
            _ = sleep_until(keep_alive.next_deadline()) => {
                on_timer(&mut session, &mut keep_alive).await
            }
            message = inbound.recv(), if read_in.is_zero() => {
                connection.on_inbound(message, &mut session, &mut keep_alive, &mut budget).await
            }
            _ = tokio::time::sleep(read_in), if !read_in.is_zero() => Ok(()),
            _ = queue.overflowed() => Err(Ending::TooSlow),
            _ = ctx.shutdown.cancelled() => Err(Ending::Shutdown),
            _ = sleep_until(expiry.unwrap_or_else(far_future)), if expiry.is_some() => {
                Err(Ending::TokenExpired)
            }
        };
        if let Err(ending) = step {
            break ending;
        }
    };
    if let Some(wait) = connection.finish(ending, session).await {
        await_client_close(&mut inbound, wait).await;
    }
    queue.finish();
}
