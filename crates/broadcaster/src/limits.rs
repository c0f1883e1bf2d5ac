//! Limits of what clients may hold: a total and a per-IP count of open connections
//! (enforced before the upgrade), the budget each address has across all its connections
//! whatever their protocol ([`AddressBudget`]: subscriptions, filter values, queued private
//! bytes), and a token bucket for what each client may send.
//!
//! "Per IP" means per client group ([`client_group`]): one IPv4 address, or one IPv6 /64 (the
//! smallest network a provider hands out, so one subscriber can use a whole /64 of addresses).
//! The API port counts its connections with the same [`ConnectionLimiter`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `streams.max_connections` subscriptions are open (HTTP 503).
    Full,
    /// This IP has `streams.max_connections_per_ip` open (HTTP 429).
    TooManyFromIp,
}

/// Leading bits of an IPv6 address that name one client for the per-IP limits.
pub const IPV6_CLIENT_PREFIX_BITS: u32 = 64;

/// The key per-IP limits count under: an IPv4 address as is (also when it arrives as an
/// IPv4-mapped IPv6 address, `::ffff:a.b.c.d`), an IPv6 address reduced to its /64
/// ([`IPV6_CLIENT_PREFIX_BITS`]), since a single host or subscriber line is usually given a
/// whole /64 and could otherwise open the per-IP limit again from every address in it.
pub fn client_group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mask = u128::MAX << (128 - IPV6_CLIENT_PREFIX_BITS);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        },
    }
}

/// What one address may hold across all its connections, whatever their protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressLimits {
    /// Most open subscriptions (a URL stream is one; a JSON-RPC connection has several).
    pub max_subscriptions: usize,
    /// Most filter values (`public_key`, `asset_id`, `operation`) over those subscriptions.
    pub max_filter_values: usize,
    /// Most bytes queued for its sockets that only its connections hold (answers, frames
    /// built for its filters, the bookkeeping of each queued block); a block's frames shared
    /// with other subscribers are not counted here.
    pub max_queued_bytes: usize,
}

impl AddressLimits {
    /// No limit (the API port, tests).
    pub const UNLIMITED: AddressLimits = AddressLimits {
        max_subscriptions: usize::MAX,
        max_filter_values: usize::MAX,
        max_queued_bytes: usize::MAX,
    };
}

/// Which of an address's limits a request would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddressRefusal {
    /// `streams.max_subscriptions_per_ip`.
    #[error("at most {max} subscriptions from one address (streams.max_subscriptions_per_ip)")]
    Subscriptions {
        /// The limit.
        max: usize,
    },
    /// `streams.max_filter_values_per_ip`.
    #[error("at most {max} filter values over the subscriptions of one address (streams.max_filter_values_per_ip)")]
    FilterValues {
        /// The limit.
        max: usize,
    },
    /// `streams.max_queued_bytes_per_ip`: requests waiting for an answer hold too much.
    #[error("at most {max} bytes held for the connections of one address (streams.max_queued_bytes_per_ip); read what the server sends")]
    QueuedBytes {
        /// The limit.
        max: usize,
    },
}

impl AddressRefusal {
    /// The `limit` label of `planetmint_streams_address_limit_refusals_total`.
    pub fn label(&self) -> &'static str {
        match self {
            AddressRefusal::Subscriptions { .. } => "subscriptions",
            AddressRefusal::FilterValues { .. } => "filter_values",
            AddressRefusal::QueuedBytes { .. } => "queued_bytes",
        }
    }

    /// The limit.
    pub fn max(&self) -> usize {
        match self {
            AddressRefusal::Subscriptions { max }
            | AddressRefusal::FilterValues { max }
            | AddressRefusal::QueuedBytes { max } => *max,
        }
    }
}

/// What one address holds across all its connections (shared by them).
#[derive(Debug)]
pub struct AddressBudget {
    limits: AddressLimits,
    subscriptions: AtomicUsize,
    filter_values: AtomicUsize,
    queued_bytes: AtomicUsize,
    /// Counts pushes refused for want of queued bytes.
    queue_refusals: Option<prometheus::IntCounter>,
}

/// Adds `n` to `counter` unless that would pass `max`.
fn try_add(counter: &AtomicUsize, n: usize, max: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            held.checked_add(n).filter(|&total| total <= max)
        })
        .is_ok()
}

fn sub(counter: &AtomicUsize, n: usize) {
    let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
        Some(held.saturating_sub(n))
    });
}

impl AddressBudget {
    /// An empty budget with `limits`.
    pub fn new(limits: AddressLimits) -> Self {
        Self {
            limits,
            subscriptions: AtomicUsize::new(0),
            filter_values: AtomicUsize::new(0),
            queued_bytes: AtomicUsize::new(0),
            queue_refusals: None,
        }
    }

    /// Counts in `counter` every push refused for want of queued bytes.
    pub fn counting_refusals(mut self, counter: prometheus::IntCounter) -> Self {
        self.queue_refusals = Some(counter);
        self
    }

    /// The limits.
    pub fn limits(&self) -> AddressLimits {
        self.limits
    }

    /// Takes one subscription with `values` filter values; given back when the charge drops.
    pub fn subscribe(
        self: &Arc<Self>,
        values: usize,
    ) -> Result<SubscriptionCharge, AddressRefusal> {
        if !try_add(&self.subscriptions, 1, self.limits.max_subscriptions) {
            return Err(AddressRefusal::Subscriptions {
                max: self.limits.max_subscriptions,
            });
        }
        if !try_add(&self.filter_values, values, self.limits.max_filter_values) {
            sub(&self.subscriptions, 1);
            return Err(AddressRefusal::FilterValues {
                max: self.limits.max_filter_values,
            });
        }
        Ok(SubscriptionCharge {
            budget: self.clone(),
            values,
        })
    }

    /// Counts `bytes` as queued unless that would pass the limit.
    pub fn try_queue(&self, bytes: usize) -> bool {
        let queued = try_add(&self.queued_bytes, bytes, self.limits.max_queued_bytes);
        if !queued {
            if let Some(counter) = &self.queue_refusals {
                counter.inc();
            }
        }
        queued
    }

    /// Holds `bytes` of a request waiting for its answer, unless that would pass the limit
    /// (given back with [`unqueue`](Self::unqueue)).
    pub fn hold(&self, bytes: usize) -> Result<(), AddressRefusal> {
        if try_add(&self.queued_bytes, bytes, self.limits.max_queued_bytes) {
            Ok(())
        } else {
            Err(AddressRefusal::QueuedBytes {
                max: self.limits.max_queued_bytes,
            })
        }
    }

    /// Counts `bytes` as queued whatever the limit (a replay, which waits for room in its own
    /// queue, stays within that queue's bounds).
    pub fn force_queue(&self, bytes: usize) {
        self.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
    }

    /// `bytes` left the queue.
    pub fn unqueue(&self, bytes: usize) {
        sub(&self.queued_bytes, bytes);
    }

    /// Open subscriptions, filter values and queued bytes now held.
    pub fn held(&self) -> (usize, usize, usize) {
        (
            self.subscriptions.load(Ordering::Acquire),
            self.filter_values.load(Ordering::Acquire),
            self.queued_bytes.load(Ordering::Acquire),
        )
    }
}

/// One subscription counted in its address's budget; given back when dropped.
#[derive(Debug)]
pub struct SubscriptionCharge {
    budget: Arc<AddressBudget>,
    values: usize,
}

impl SubscriptionCharge {
    /// Changes the subscription's filter values to `values` (an update), unless the address
    /// would pass its limit.
    pub fn resize(&mut self, values: usize) -> Result<(), AddressRefusal> {
        if values > self.values {
            let more = values - self.values;
            if !try_add(
                &self.budget.filter_values,
                more,
                self.budget.limits.max_filter_values,
            ) {
                return Err(AddressRefusal::FilterValues {
                    max: self.budget.limits.max_filter_values,
                });
            }
        } else {
            sub(&self.budget.filter_values, self.values - values);
        }
        self.values = values;
        Ok(())
    }
}

impl Drop for SubscriptionCharge {
    fn drop(&mut self) {
        sub(&self.budget.subscriptions, 1);
        sub(&self.budget.filter_values, self.values);
    }
}

#[derive(Debug)]
struct AddressEntry {
    connections: usize,
    budget: Arc<AddressBudget>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<Option<IpAddr>, AddressEntry>,
}

/// Counts open connections, and keeps each address's [`AddressBudget`] while it has one.
#[derive(Debug)]
pub struct ConnectionLimiter {
    max_total: usize,
    max_per_ip: usize,
    address_limits: AddressLimits,
    /// Given to every address's budget (see [`AddressBudget::counting_refusals`]).
    queue_refusals: Option<prometheus::IntCounter>,
    counts: Mutex<Counts>,
}

/// One counted connection; released when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    limiter: Arc<ConnectionLimiter>,
    ip: Option<IpAddr>,
    budget: Arc<AddressBudget>,
}

impl ConnectionSlot {
    /// The budget of this connection's address (shared with its other connections).
    pub fn budget(&self) -> &Arc<AddressBudget> {
        &self.budget
    }
}

impl ConnectionLimiter {
    /// A limiter allowing `max_total` connections, `max_per_ip` from one address, with no
    /// limit on what each address holds.
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self::with_address_limits(max_total, max_per_ip, AddressLimits::UNLIMITED)
    }

    /// A limiter whose addresses each get a budget of `address_limits`.
    pub fn with_address_limits(
        max_total: usize,
        max_per_ip: usize,
        address_limits: AddressLimits,
    ) -> Self {
        Self {
            max_total,
            max_per_ip,
            address_limits,
            queue_refusals: None,
            counts: Mutex::new(Counts::default()),
        }
    }

    /// Counts in `counter` every push an address's budget refuses.
    pub fn counting_queue_refusals(mut self, counter: prometheus::IntCounter) -> Self {
        self.queue_refusals = Some(counter);
        self
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for a connection from `ip`, or says why not. `ip` is counted under its
    /// [`client_group`].
    pub fn acquire(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<ConnectionSlot, Refusal> {
        let ip = ip.map(client_group);
        let mut counts = self.counts();
        if counts.total >= self.max_total {
            return Err(Refusal::Full);
        }
        let limits = self.address_limits;
        let refusals = self.queue_refusals.clone();
        let entry = counts.by_ip.entry(ip).or_insert_with(|| {
            let budget = AddressBudget::new(limits);
            AddressEntry {
                connections: 0,
                budget: Arc::new(match refusals {
                    Some(counter) => budget.counting_refusals(counter),
                    None => budget,
                }),
            }
        });
        // Connections of unknown address (not over TCP) are not limited per address.
        if ip.is_some() && entry.connections >= self.max_per_ip {
            return Err(Refusal::TooManyFromIp);
        }
        entry.connections += 1;
        let budget = entry.budget.clone();
        counts.total += 1;
        Ok(ConnectionSlot {
            limiter: self.clone(),
            ip,
            budget,
        })
    }

    /// Open subscriptions.
    pub fn open(&self) -> usize {
        self.counts().total
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.limiter.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(entry) = counts.by_ip.get_mut(&self.ip) {
            entry.connections = entry.connections.saturating_sub(1);
            if entry.connections == 0 {
                counts.by_ip.remove(&self.ip);
                crate::shrink::release_unused(&mut counts.by_ip);
            }
        }
    }
}

/// A token bucket: `rate` tokens per second, holding at most `burst`. A session reads its
/// client's next frame only when a token is ready, so a client that sends faster is read more
/// slowly (TCP pushes back on it) instead of being cut off.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
    }

    /// How long until a token is ready (zero: one is).
    pub fn ready_in(&mut self) -> Duration {
        self.refill();
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }

    /// Takes one token (a frame was read); the bucket never holds less than none.
    pub fn take(&mut self) {
        self.take_n(1.0);
    }

    /// Takes `n` tokens (a request that costs more than a frame); the bucket may go below
    /// none, so that what it cost is paid for in waiting before the next frame is read.
    pub fn take_n(&mut self, n: f64) {
        self.refill();
        self.tokens = if n <= 1.0 {
            (self.tokens - n).max(0.0)
        } else {
            (self.tokens - n).max(-self.burst)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_and_per_ip_counts_are_enforced_and_released() {
        let limiter = Arc::new(ConnectionLimiter::new(3, 2));
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let s1 = limiter.acquire(Some(a)).expect("first");
        let _s2 = limiter.acquire(Some(a)).expect("second");
        assert_eq!(limiter.acquire(Some(a)).err(), Some(Refusal::TooManyFromIp));
        let _s3 = limiter.acquire(Some(b)).expect("other ip");
        assert_eq!(limiter.acquire(Some(b)).err(), Some(Refusal::Full));
        drop(s1);
        assert_eq!(limiter.open(), 2);
        let _s4 = limiter.acquire(Some(a)).expect("slot released");
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        let limiter = Arc::new(ConnectionLimiter::new(100, 2));
        let ip = |text: &str| -> IpAddr { text.parse().expect("ip") };
        let _a = limiter.acquire(Some(ip("2001:db8:1:2::1"))).expect("first");
        let _b = limiter
            .acquire(Some(ip("2001:db8:1:2:ffff:ffff:ffff:fffe")))
            .expect("same /64, second");
        assert_eq!(
            limiter.acquire(Some(ip("2001:db8:1:2:abcd::9"))).err(),
            Some(Refusal::TooManyFromIp),
            "a third address of the same /64 counts against the same limit"
        );
        let _c = limiter
            .acquire(Some(ip("2001:db8:1:3::1")))
            .expect("the neighbouring /64 is another client");
        let _d = limiter.acquire(Some(ip("10.0.0.1"))).expect("v4");
        let _e = limiter
            .acquire(Some(ip("::ffff:10.0.0.1")))
            .expect("mapped");
        assert_eq!(
            limiter.acquire(Some(ip("10.0.0.1"))).err(),
            Some(Refusal::TooManyFromIp),
            "an IPv4-mapped address is the same client as the IPv4 address"
        );
        assert_eq!(
            client_group(ip("2001:db8:1:2:abcd::9")),
            ip("2001:db8:1:2::")
        );
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let mut bucket = TokenBucket::new(0.01, 3.0);
        for _ in 0..3 {
            assert_eq!(bucket.ready_in(), Duration::ZERO);
            bucket.take();
        }
        let wait = bucket.ready_in();
        assert!(
            wait > Duration::from_secs(90) && wait <= Duration::from_secs(100),
            "burst used up: the next token in 100 s at 0.01/s, not {wait:?}"
        );
    }
}
