//! One connection's state as its dialect sees it: who it speaks for ([`Access`]), its
//! subscriptions and what each is doing, and the operations a dialect turns client messages
//! into: [`subscribe`](Connection::subscribe), [`unsubscribe`](Connection::unsubscribe),
//! [`update`](Connection::update), [`authenticate`](Connection::authenticate),
//! [`reply`](Connection::reply).
//!
//! Every safety property lives here, the same for every dialect: subscriptions and filter
//! values are bounded per connection and per address ([`crate::limits::AddressBudget`]), a
//! credential bounds every subscription made under it and a new one is checked against every
//! open subscription, replays from the source take a per-address slot, and what changes the
//! hub's index is paid for from the client's frame budget.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use futures_util::future::{AbortHandle, Abortable, LocalBoxFuture};
use futures_util::stream::FuturesUnordered;
use planetmint_streams_auth::{
    unix_now, Access as Grant, AuthError, ConnectionPermit, Credential, Gatekeeper, Requested,
};
use serde_json::Value;
use tokio::time::Instant;
use tracing::debug;

use super::close::Ending;
use super::start::{check, replay, ReplayPlan, Started};
use crate::envelope::Envelope;
use crate::frame::{encode_frame, OPCODE_TEXT};
use crate::hub::{Selection, SubscriberId};
use crate::limits::{AddressRefusal, ConnectionSlot, SubscriptionCharge, TokenBucket};
use crate::metrics::{BroadcastMetrics, GaugeCount};
use crate::queue::{Delivery, Pushed, SubscriberQueue};
use crate::subscription::{Filter, StreamKind, Subscription};
use crate::StreamContext;

/// Most updates of one connection waiting for their subscriptions to start.
pub const MAX_PENDING_UPDATES: usize = 16;
/// Filter values changed in the hub's index per token of the client's frame budget: an update
/// changing many values waits longer before the client's next frame is read.
pub const INDEX_CHANGES_PER_TOKEN: usize = 16;

/// Who a connection speaks for.
#[derive(Debug)]
pub(crate) enum Access {
    /// Open mode: anyone may subscribe to anything.
    Open,
    /// Signed mode, no credential yet.
    Required,
    /// Signed mode with a verified credential: it bounds every subscription.
    Granted {
        /// What it allows.
        grant: Box<Grant>,
        /// When the connection closes for its expiry (`auth.close_on_expiry`).
        closes_at: Option<Instant>,
        /// Its place under a configured client's own connection cap.
        _permit: ConnectionPermit,
    },
}

impl Access {
    /// `grant` as a connection's access: its place under the credential's own connection
    /// cap taken, its expiry scheduled when connections close at expiry.
    pub(crate) fn granted(
        ctx: &StreamContext,
        gatekeeper: &Gatekeeper,
        grant: Grant,
    ) -> Result<Self, AuthError> {
        let permit = gatekeeper.acquire(&grant)?;
        Ok(Self::holding(ctx, grant, permit))
    }

    /// `grant` with its place `permit` already taken.
    fn holding(ctx: &StreamContext, grant: Grant, permit: ConnectionPermit) -> Self {
        let closes_at = if ctx.close_on_expiry {
            grant
                .expires_in(unix_now())
                .map(|left| Instant::now() + left)
        } else {
            None
        };
        Access::Granted {
            grant: Box::new(grant),
            closes_at,
            _permit: permit,
        }
    }
}

/// Limits of one connection (on top of its address's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectionLimits {
    /// Most open subscriptions.
    pub max_subscriptions: usize,
    /// Most filter values over them.
    pub max_filter_values: usize,
}

/// A subscription to open.
pub(crate) struct SubscribeRequest {
    /// What it asks for.
    pub subscription: Subscription,
    /// How the dialect wraps each message.
    pub envelope: Option<Arc<dyn Envelope>>,
    /// The dialect's handle of the request (a JSON-RPC id), handed back when the subscription
    /// is accepted or refused; held against the address's budget meanwhile.
    pub tag: Value,
    /// For a live subscription: the height after which it gets every block (the height when
    /// the client's handshake was answered); `None`: the last published height now.
    pub since: Option<u64>,
    /// A replay slot taken before the upgrade (URL streams, refused there with 429).
    pub replay_slot: Option<ConnectionSlot>,
    /// The consumer group it is a member of (by its key: group id, stream and options); a
    /// member starts live.
    pub group: Option<String>,
}

/// Why a subscription was not opened.
#[derive(Debug)]
pub(crate) enum SubscribeRefusal {
    /// The connection has its most subscriptions.
    Subscriptions {
        /// The limit.
        max: usize,
    },
    /// The connection would pass its most filter values.
    FilterValues {
        /// The limit.
        max: usize,
    },
    /// The address would pass one of its limits.
    Address(AddressRefusal),
    /// The connection's credential does not allow it (or there is none yet).
    NotAllowed(AuthError),
    /// The address has its most replays from the source.
    Replays {
        /// The limit.
        max: usize,
    },
    /// The consumer group has its most members.
    GroupFull {
        /// The limit.
        max: usize,
    },
}

/// Why an update was not applied.
#[derive(Debug)]
pub(crate) enum UpdateRefusal {
    /// No such subscription on this connection.
    NoSuchSubscription,
    /// It would remove every value of dimension `name` (which would mean "every
    /// transaction").
    WouldEmpty {
        /// `public_key`, `asset_id` or `operation`.
        name: &'static str,
    },
    /// A limit of the connection or the address, or the credential (as for subscribe).
    Refused(SubscribeRefusal),
    /// Too many updates already wait for their subscriptions to start.
    TooManyPending {
        /// The limit.
        max: usize,
    },
}

impl From<AddressRefusal> for UpdateRefusal {
    fn from(refusal: AddressRefusal) -> Self {
        UpdateRefusal::Refused(SubscribeRefusal::Address(refusal))
    }
}

/// Filter values to add to or remove from a subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterChange {
    /// `public_key` values.
    pub public_keys: std::collections::HashSet<String>,
    /// `asset_id` values (lower case).
    pub asset_ids: std::collections::HashSet<String>,
    /// `operation` values (upper case).
    pub operations: std::collections::HashSet<String>,
}

impl FilterChange {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.public_keys.len() + self.asset_ids.len() + self.operations.len()
    }

    /// True when nothing is changed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An update's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Updated {
    /// Blocks after this height are filtered with the new values.
    AppliesAfter(u64),
    /// The subscription is still starting: answered with
    /// [`SubscriptionEvent::UpdatesApplied`] once it is live.
    Pending,
}

/// Why the server ended one subscription.
#[derive(Debug, Clone)]
pub(crate) enum EndReason {
    /// The history it was replaying was pruned meanwhile.
    HistoryPruned {
        /// Lowest stored height now.
        lowest: u64,
    },
    /// The connection's new credential does not allow it.
    NotAllowed(AuthError),
    /// Its consumer group filled up before it joined.
    GroupFull,
}

/// What happened to a subscription, for its dialect to tell the client.
#[derive(Debug)]
pub(crate) enum SubscriptionEvent {
    /// Its `from_height` is stored (or it has none): an answer the dialect queues now goes
    /// out before its first delivery; history and live blocks follow.
    Accepted {
        /// Its key.
        key: u64,
        /// The request's tag.
        tag: Value,
    },
    /// Its `from_height` is below the stored history; nothing was sent for it and it is gone.
    Refused {
        /// The request's tag.
        tag: Value,
        /// The `from_height` asked for.
        from_height: Option<u64>,
        /// The lowest height stored.
        lowest: u64,
        /// Updates that were waiting for it (their tags).
        pending: Vec<Value>,
    },
    /// The server ended it; `last_height` is the last height it completely sent.
    Ended {
        /// Its key.
        key: u64,
        /// Why.
        why: EndReason,
        /// Where the client can resume.
        last_height: Option<u64>,
        /// Updates that were waiting for it (their tags).
        pending: Vec<Value>,
    },
    /// Updates that waited for it to start apply after `after`.
    UpdatesApplied {
        /// The updates' tags.
        tags: Vec<Value>,
        /// Blocks after this height are filtered with their values.
        after: u64,
    },
}

/// The outcome of presenting a credential.
#[derive(Debug)]
pub(crate) struct Authenticated {
    /// The streams it opens.
    pub streams: Vec<StreamKind>,
    /// When it expires (unix seconds; `None`: open mode).
    pub expires_at: Option<u64>,
    /// Open subscriptions it does not allow, ended ([`SubscriptionEvent::Ended`] each).
    pub ended: Vec<SubscriptionEvent>,
}

/// Where a subscription is.
enum Phase {
    /// Its `from_height` is being checked; what its replay will need waits here (the
    /// selection it was opened with: updates apply once it is live).
    Checking {
        abort: AbortHandle,
        pending: Vec<Value>,
        tag: Value,
        since: Option<u64>,
        replay_slot: Option<ConnectionSlot>,
        opened_with: Arc<Selection>,
    },
    /// Answered; its history is replayed, then it attaches. Updates wait for it.
    Replaying {
        abort: AbortHandle,
        pending: Vec<Value>,
    },
    /// Attached to the hub.
    Live(SubscriberId),
}

impl Phase {
    /// Updates waiting for the subscription to go live.
    fn pending(&mut self) -> Option<&mut Vec<Value>> {
        match self {
            Phase::Checking { pending, .. } | Phase::Replaying { pending, .. } => Some(pending),
            Phase::Live(_) => None,
        }
    }
}

struct Sub {
    stream: StreamKind,
    /// The selection asked for last (the hub has it once live).
    selection: Arc<Selection>,
    /// Its `from_height` (for a refusal's answer).
    from_height: Option<u64>,
    /// Its consumer group's key.
    group: Option<String>,
    /// Its filter values, counted against the connection's limit.
    values: usize,
    /// Its count in its address's budget.
    charge: SubscriptionCharge,
    phase: Phase,
    /// Its counts in the subscriber gauges.
    _counted: Vec<GaugeCount>,
}

type StartFuture = Abortable<LocalBoxFuture<'static, (u64, Started)>>;

/// One connection: its queue, its access, its subscriptions.
pub(crate) struct Connection {
    pub(crate) ctx: Arc<StreamContext>,
    /// The connection's one queue (every subscription's deliveries and every answer).
    pub(crate) queue: Arc<SubscriberQueue>,
    /// Its place under the connection limits, with its address's budget.
    slot: ConnectionSlot,
    peer: Option<IpAddr>,
    access: Access,
    limits: ConnectionLimits,
    subs: HashMap<u64, Sub>,
    next_key: u64,
    filter_values: usize,
    pending_updates: usize,
    /// Bytes of request tags held while they wait (counted in the address's budget).
    held: usize,
    /// Subscriptions starting (polled by the driver).
    pub(super) starting: FuturesUnordered<StartFuture>,
    /// Frames read from the client, at a rate (and what its requests cost the hub).
    pub(super) budget: TokenBucket,
    /// Its subscriptions also count as the JSON-RPC channel's.
    on_channel: bool,
    metrics: BroadcastMetrics,
    /// Its count in a connection gauge, from the handshake's answer to its end.
    counted: Option<GaugeCount>,
}

/// Filter values of `filter`, counted against the limits.
pub(crate) fn filter_values(filter: &Filter) -> usize {
    filter.public_keys.len() + filter.asset_ids.len() + filter.operations.len()
}

fn requested(stream: StreamKind, filter: &Filter) -> Requested<'_> {
    Requested {
        stream,
        public_keys: &filter.public_keys,
        asset_ids: &filter.asset_ids,
        operations: &filter.operations,
    }
}

impl Connection {
    /// A connection with nothing open yet.
    pub(crate) fn new(
        ctx: Arc<StreamContext>,
        queue: Arc<SubscriberQueue>,
        slot: ConnectionSlot,
        peer: Option<IpAddr>,
        access: Access,
        limits: ConnectionLimits,
        budget: TokenBucket,
    ) -> Self {
        let metrics = ctx.hub.metrics().clone();
        Self {
            ctx,
            queue,
            slot,
            peer,
            access,
            limits,
            subs: HashMap::new(),
            next_key: 1,
            filter_values: 0,
            pending_updates: 0,
            held: 0,
            starting: FuturesUnordered::new(),
            budget,
            on_channel: false,
            metrics,
            counted: None,
        }
    }

    /// Counts the connection in `gauge` until it ends, and its subscriptions as the
    /// channel's.
    pub(crate) fn on_channel(mut self, gauge: prometheus::IntGauge) -> Self {
        self.counted = Some(GaugeCount::new(gauge));
        self.on_channel = true;
        self
    }

    /// The metrics.
    pub(crate) fn metrics(&self) -> &BroadcastMetrics {
        &self.metrics
    }

    /// Who the connection speaks for.
    pub(crate) fn access(&self) -> &Access {
        &self.access
    }

    /// When the connection's credential closes it.
    pub(super) fn closes_at(&self) -> Option<Instant> {
        match &self.access {
            Access::Granted { closes_at, .. } => *closes_at,
            _ => None,
        }
    }

    /// A key for a new subscription (its deliveries carry it).
    pub(crate) fn new_key(&mut self) -> u64 {
        let key = self.next_key;
        self.next_key += 1;
        key
    }

    /// Whether subscription `key` is open.
    pub(crate) fn contains(&self, key: u64) -> bool {
        self.subs.contains_key(&key)
    }

    /// Queues one text message for the client, in order with the deliveries (never waits:
    /// a client that does not read its answers overflows like one that does not read its
    /// events). False when the queue no longer takes it.
    pub(crate) fn reply(&self, text: &str) -> bool {
        self.queue.push(text_delivery(text)) == Pushed::Queued
    }

    /// Holds `tag` while its request waits, in the address's budget.
    fn hold(&mut self, tag: &Value) -> Result<(), AddressRefusal> {
        let bytes = tag_bytes(tag);
        self.slot.budget().hold(bytes)?;
        self.held += bytes;
        Ok(())
    }

    /// Gives back what `tags` held.
    fn release<'a>(&mut self, tags: impl IntoIterator<Item = &'a Value>) {
        let bytes: usize = tags.into_iter().map(tag_bytes).sum();
        self.slot.budget().unqueue(bytes);
        self.held -= bytes.min(self.held);
    }

    /// Whether the connection's credential allows `filter` on `stream`.
    fn allowed(&self, stream: StreamKind, filter: &Filter) -> Result<(), AuthError> {
        match &self.access {
            Access::Open => Ok(()),
            Access::Required => Err(AuthError::Missing),
            Access::Granted { grant, .. } => {
                if let Some(expired_at) = grant.expires_at.filter(|&at| unix_now() >= at) {
                    return Err(AuthError::Expired { expired_at });
                }
                grant.allows(&requested(stream, filter))
            }
        }
    }

    /// Opens subscription `key`: checks every limit and the credential, then starts it (its
    /// history check, the `accepted` answer, replay, attach) in the background.
    pub(crate) fn subscribe(
        &mut self,
        key: u64,
        request: SubscribeRequest,
    ) -> Result<(), SubscribeRefusal> {
        let SubscribeRequest {
            subscription,
            envelope,
            tag,
            since,
            replay_slot,
            group,
        } = request;
        if let Some(group) = &group {
            if self.ctx.groups.members(group) >= crate::groups::MAX_GROUP_MEMBERS {
                return Err(SubscribeRefusal::GroupFull {
                    max: crate::groups::MAX_GROUP_MEMBERS,
                });
            }
        }
        if self.subs.len() >= self.limits.max_subscriptions {
            return Err(SubscribeRefusal::Subscriptions {
                max: self.limits.max_subscriptions,
            });
        }
        let values = filter_values(&subscription.filter);
        if self.filter_values + values > self.limits.max_filter_values {
            return Err(SubscribeRefusal::FilterValues {
                max: self.limits.max_filter_values,
            });
        }
        self.allowed(subscription.stream, &subscription.filter)
            .map_err(SubscribeRefusal::NotAllowed)?;
        let charge = self
            .slot
            .budget()
            .subscribe(values)
            .map_err(SubscribeRefusal::Address)?;
        self.hold(&tag).map_err(SubscribeRefusal::Address)?;
        // Replays that read Tarantool are limited per address.
        let replay_slot = match (replay_slot, subscription.from_height) {
            (Some(slot), _) => Some(slot),
            (None, Some(after)) if self.ctx.hub.needs_source(after) => {
                Some(self.ctx.replay_limiter.acquire(self.peer).map_err(|_| {
                    SubscribeRefusal::Replays {
                        max: self.ctx.config.replay_max_per_ip,
                    }
                })?)
            }
            (None, _) => None,
        };
        let since = since.or_else(|| self.ctx.hub.last_published());
        let selection = Arc::new(Selection::new(&subscription, key, envelope));
        let stream = subscription.stream;
        self.queue.track(key, subscription.from_height.or(since));
        let abort = self.begin(key, check(self.ctx.clone(), subscription.from_height));
        let label = [stream.name()];
        let mut counted = vec![GaugeCount::new(
            self.metrics.subscribers.with_label_values(&label),
        )];
        if self.on_channel {
            counted.push(GaugeCount::new(
                self.metrics.rpc_subscriptions.with_label_values(&label),
            ));
        }
        self.metrics.connections.with_label_values(&label).inc();
        self.subs.insert(
            key,
            Sub {
                stream,
                selection: selection.clone(),
                from_height: subscription.from_height,
                group,
                values,
                charge,
                phase: Phase::Checking {
                    abort,
                    pending: Vec::new(),
                    tag,
                    since,
                    replay_slot,
                    opened_with: selection,
                },
                _counted: counted,
            },
        );
        self.filter_values += values;
        debug!(
            stream = stream.name(),
            key,
            from_height = subscription.from_height,
            "subscription opened"
        );
        Ok(())
    }

    /// Runs `step` of subscription `key`'s start with the connection's other work.
    fn begin(&mut self, key: u64, step: LocalBoxFuture<'static, Started>) -> AbortHandle {
        let (abort, registration) = AbortHandle::new_pair();
        self.starting.push(Abortable::new(
            Box::pin(async move { (key, step.await) }),
            registration,
        ));
        abort
    }

    /// Takes subscription `key` out of the hub (or aborts its start) and out of every count;
    /// counted as a disconnect for `reason`. Returns the tags of updates that waited for it.
    fn remove(&mut self, key: u64, reason: &str) -> Option<Vec<Value>> {
        let sub = self.subs.remove(&key)?;
        let pending = match sub.phase {
            Phase::Checking {
                abort,
                pending,
                tag,
                ..
            } => {
                abort.abort();
                self.release([&tag]);
                self.pending_updates -= pending.len();
                self.release(&pending);
                pending
            }
            Phase::Replaying { abort, pending } => {
                abort.abort();
                self.pending_updates -= pending.len();
                self.release(&pending);
                pending
            }
            Phase::Live(id) => {
                match &sub.group {
                    Some(group) => {
                        self.ctx
                            .groups
                            .leave(&self.ctx.hub, group, id, &self.queue, key)
                    }
                    None => self.ctx.hub.detach(id),
                }
                Vec::new()
            }
        };
        self.filter_values -= sub.values;
        crate::shrink::release_unused(&mut self.subs);
        self.metrics.disconnects.with_label_values(&[reason]).inc();
        Some(pending)
    }

    /// Closes subscription `key` at the client's request: what was already queued for it
    /// still goes out, then nothing more. Returns the tags of updates that waited for it
    /// (`None`: no such subscription).
    pub(crate) fn unsubscribe(&mut self, key: u64) -> Option<Vec<Value>> {
        let pending = self.remove(key, "client")?;
        self.queue.untrack(key);
        Some(pending)
    }

    /// Ends subscription `key` on the server's side: nothing more of it reaches the socket,
    /// not even what was queued, so its last height is exact.
    fn end(&mut self, key: u64, why: EndReason, label: &str) -> Option<SubscriptionEvent> {
        let pending = self.remove(key, label)?;
        self.queue.discard(key);
        let last_height = self.queue.last_sent(key);
        self.queue.untrack(key);
        Some(SubscriptionEvent::Ended {
            key,
            why,
            last_height,
            pending,
        })
    }

    /// Changes the filter values of subscription `key` without losing its place: blocks up
    /// to the returned height are filtered with the old values, later ones with the new.
    pub(crate) fn update(
        &mut self,
        key: u64,
        add: FilterChange,
        remove: FilterChange,
        tag: Value,
    ) -> Result<Updated, UpdateRefusal> {
        let sub = self
            .subs
            .get(&key)
            .ok_or(UpdateRefusal::NoSuchSubscription)?;
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
                return Err(UpdateRefusal::WouldEmpty { name });
            }
        }
        let values = filter_values(&filter);
        if self.filter_values - sub.values + values > self.limits.max_filter_values {
            return Err(UpdateRefusal::Refused(SubscribeRefusal::FilterValues {
                max: self.limits.max_filter_values,
            }));
        }
        self.allowed(sub.stream, &filter)
            .map_err(|err| UpdateRefusal::Refused(SubscribeRefusal::NotAllowed(err)))?;
        let changed = filter
            .public_keys
            .symmetric_difference(&old.public_keys)
            .count()
            + filter
                .asset_ids
                .symmetric_difference(&old.asset_ids)
                .count()
            + filter
                .operations
                .symmetric_difference(&old.operations)
                .count();
        if changed == 0 {
            // Nothing to change in the hub: the old and the new values are the same.
            return Ok(Updated::AppliesAfter(
                self.ctx.hub.last_published().unwrap_or(0),
            ));
        }
        let starting = !matches!(sub.phase, Phase::Live(_));
        if starting && self.pending_updates >= MAX_PENDING_UPDATES {
            return Err(UpdateRefusal::TooManyPending {
                max: MAX_PENDING_UPDATES,
            });
        }
        if starting {
            self.hold(&tag)?;
        }
        let hub = self.ctx.hub.clone();
        let Some(sub) = self.subs.get_mut(&key) else {
            return Err(UpdateRefusal::NoSuchSubscription);
        };
        if let Err(err) = sub.charge.resize(values) {
            if starting {
                self.release([&tag]);
            }
            return Err(err.into());
        }
        // What changes the hub's index is paid for in the client's frame budget.
        self.budget
            .take_n((changed / INDEX_CHANGES_PER_TOKEN) as f64);
        self.filter_values = self.filter_values - sub.values + values;
        sub.values = values;
        let selection = Arc::new(Selection {
            filter,
            ..(*sub.selection).clone()
        });
        sub.selection = selection.clone();
        if let Phase::Live(subscriber) = &sub.phase {
            let after = hub
                .update_selection(*subscriber, &selection)
                .or_else(|| hub.last_published())
                .unwrap_or(0);
            return Ok(Updated::AppliesAfter(after));
        }
        if let Some(pending) = sub.phase.pending() {
            pending.push(tag);
        }
        self.pending_updates += 1;
        Ok(Updated::Pending)
    }

    /// Presents a credential (a stream token, a configured client's secret, a JWT). In open
    /// mode anything is accepted. In signed mode it must verify; it then replaces the
    /// connection's credential, every open subscription is checked against it (those it does
    /// not allow end, with their last heights), and its expiry is the connection's.
    pub(crate) fn authenticate(
        &mut self,
        credential: Credential<'_>,
    ) -> Result<Authenticated, AuthError> {
        let Some(gatekeeper) = self.ctx.auth.clone() else {
            return Ok(Authenticated {
                streams: StreamKind::ALL.to_vec(),
                expires_at: None,
                ended: Vec::new(),
            });
        };
        let grant = gatekeeper.verify(credential).inspect_err(|err| {
            self.metrics
                .credential_refusals
                .with_label_values(&[err.reason()])
                .inc();
        })?;
        let streams = grant.streams.iter().copied().collect();
        let expires_at = grant.expires_at;
        // The same client presenting itself again keeps its place under its cap; another
        // credential takes a place of its own before the old one's is given back.
        let access = match std::mem::replace(&mut self.access, Access::Required) {
            Access::Granted {
                grant: old,
                _permit: permit,
                ..
            } if old.principal == grant.principal => Access::holding(&self.ctx, grant, permit),
            previous => match Access::granted(&self.ctx, &gatekeeper, grant) {
                Ok(access) => access,
                Err(err) => {
                    self.access = previous;
                    return Err(err);
                }
            },
        };
        let refused: Vec<(u64, AuthError)> = match &access {
            Access::Granted { grant, .. } => self
                .subs
                .iter()
                .filter_map(|(&key, sub)| {
                    grant
                        .allows(&requested(sub.stream, &sub.selection.filter))
                        .err()
                        .map(|err| (key, err))
                })
                .collect(),
            _ => Vec::new(),
        };
        let ended = refused
            .into_iter()
            .filter_map(|(key, err)| self.end(key, EndReason::NotAllowed(err), "not_allowed"))
            .collect();
        self.access = access;
        Ok(Authenticated {
            streams,
            expires_at,
            ended,
        })
    }

    /// A subscription's start ended: the event its dialect tells the client about, or the
    /// end of the connection.
    pub(super) fn started(
        &mut self,
        key: u64,
        started: Started,
    ) -> Result<Vec<SubscriptionEvent>, Ending> {
        match started {
            Started::Checked => {
                let Some(sub) = self.subs.get_mut(&key) else {
                    return Ok(Vec::new());
                };
                let Phase::Checking {
                    pending,
                    tag,
                    since,
                    replay_slot,
                    opened_with,
                    ..
                } = &mut sub.phase
                else {
                    return Ok(Vec::new());
                };
                let (pending, tag, since, replay_slot, opened_with) = (
                    std::mem::take(pending),
                    std::mem::take(tag),
                    *since,
                    replay_slot.take(),
                    opened_with.clone(),
                );
                // The replay starts only when the driver next polls it: an answer the dialect
                // queues for this event goes before the subscription's first delivery.
                let plan = ReplayPlan {
                    ctx: self.ctx.clone(),
                    queue: self.queue.clone(),
                    selection: opened_with,
                    from_height: sub.from_height,
                    since,
                    replay_slot,
                    group: sub.group.clone(),
                };
                let abort = self.begin(key, replay(plan));
                if let Some(sub) = self.subs.get_mut(&key) {
                    sub.phase = Phase::Replaying { abort, pending };
                }
                self.release([&tag]);
                Ok(vec![SubscriptionEvent::Accepted { key, tag }])
            }
            Started::Attached(subscriber) => {
                let Some(sub) = self.subs.get_mut(&key) else {
                    self.ctx.hub.detach(subscriber);
                    return Ok(Vec::new());
                };
                let pending = sub.phase.pending().map(std::mem::take).unwrap_or_default();
                sub.phase = Phase::Live(subscriber);
                let selection = sub.selection.clone();
                let mut events = Vec::new();
                if !pending.is_empty() {
                    self.pending_updates -= pending.len();
                    self.release(&pending);
                    let after = self
                        .ctx
                        .hub
                        .update_selection(subscriber, &selection)
                        .unwrap_or(0);
                    events.push(SubscriptionEvent::UpdatesApplied {
                        tags: pending,
                        after,
                    });
                }
                Ok(events)
            }
            Started::Refused { lowest } => {
                let Some(sub) = self.subs.get_mut(&key) else {
                    return Ok(Vec::new());
                };
                let from_height = sub.from_height;
                let tag = match &sub.phase {
                    Phase::Checking { tag, .. } => tag.clone(),
                    _ => Value::Null,
                };
                // Gives back what the tag held.
                let Some(pending) = self.remove(key, "history_unavailable") else {
                    return Ok(Vec::new());
                };
                self.queue.untrack(key);
                Ok(vec![SubscriptionEvent::Refused {
                    tag,
                    from_height,
                    lowest,
                    pending,
                }])
            }
            Started::Pruned { lowest } => Ok(self
                .end(
                    key,
                    EndReason::HistoryPruned { lowest },
                    "history_unavailable",
                )
                .into_iter()
                .collect()),
            Started::GroupFull => Ok(self
                .end(key, EndReason::GroupFull, "group_full")
                .into_iter()
                .collect()),
            Started::Ended(ending) => Err(ending),
        }
    }

    /// Ends every subscription (the connection is closing), each counted as a disconnect for
    /// `reason`. Their last heights stay tracked in the queue for the farewell.
    pub(super) fn end_all(&mut self, reason: &str) {
        let keys: Vec<u64> = self.subs.keys().copied().collect();
        for key in keys {
            self.remove(key, reason);
        }
    }

    /// Stops counting the connection in its gauge.
    pub(super) fn uncount(&mut self) {
        self.counted = None;
    }
}

/// About how many bytes a request's tag holds.
fn tag_bytes(tag: &Value) -> usize {
    match tag {
        Value::String(text) => text.len() + 24,
        _ => 24,
    }
}

/// One text message as a queued delivery of its own.
fn text_delivery(text: &str) -> Delivery {
    let mut frame = Vec::with_capacity(text.len() + 10);
    encode_frame(OPCODE_TEXT, text.as_bytes(), &mut frame);
    Delivery::private(0, frame.into(), 1)
}

/// Every tracked subscription's last height, by key (the farewell's `last_heights`).
pub(crate) type LastHeights = BTreeMap<u64, Option<u64>>;
